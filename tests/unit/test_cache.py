"""Cache keys, eligibility, the in-process LRU and the Redis codec."""

from __future__ import annotations

import dataclasses
from typing import Any

from quorum.server.cache import CachedAnswer, MemoryAnswerStore, ResponseCache
from quorum.server.config import CacheConfig
from quorum.server.domain import (
    Classification,
    Completion,
    Difficulty,
    GenerationParams,
    Hints,
    Message,
    Priority,
    Role,
    RouteRequest,
    Sensitivity,
    Strategy,
    Tool,
    ToolCall,
    ToolChoice,
    ToolChoiceMode,
    Usage,
)


def cache(**config: Any) -> ResponseCache:
    cfg = CacheConfig(enabled=True, **config)
    return ResponseCache(cfg, MemoryAnswerStore(cfg.max_entries, cfg.max_memory_bytes))


def req(text: str = "What is 2 + 2?", **hints: Any) -> RouteRequest:
    hints.setdefault("allow_cache", True)
    return RouteRequest("id-1", (Message(Role.USER, text),), hints=Hints(**hints))


def answer(content: str = "4") -> CachedAnswer:
    return CachedAnswer(
        completion=Completion(content, (ToolCall("c1", "f", "{}"),), "stop", Usage(10, 2), -0.1),
        model="flash",
        provider="sim",
        strategy=Strategy.SINGLE,
        classification=Classification("math", Difficulty.LOW, 0.9, "rules", "", ("a", "b")),
        stored_at=1.5,
        simulated=True,
    )


def test_keys_normalise_text_and_ignore_the_request_id() -> None:
    c = cache()
    key = c.key("acme", req())
    assert key is not None and key.startswith("quorum:cache:acme:")
    assert c.key("acme", req("  What is 2 + 2?\r\n")) == key
    assert c.key("acme", dataclasses.replace(req(), request_id="other")) == key
    assert c.key("globex", req()) != key
    assert c.key("acme", req("What is 2 + 3?")) != key
    assert c.key("acme", req(priority=Priority.QUALITY)) != key


def test_eligibility() -> None:
    c = cache()
    assert c.key("a", req(allow_cache=False)) is None
    assert cache(default_allow=True).key("a", req(allow_cache=False)) is not None
    warm = dataclasses.replace(req(), params=GenerationParams(temperature=0.5))
    assert c.key("a", warm) is None
    assert cache(cache_nonzero_temperature=True).key("a", warm) is not None
    cold = dataclasses.replace(req(), params=GenerationParams(temperature=0.0))
    assert c.key("a", cold) is not None
    tools = dataclasses.replace(req(), params=GenerationParams(tools=(Tool("f"),)))
    assert c.key("a", tools) is None
    assert cache(cache_tool_calls=True).key("a", tools) is not None
    assert c.key("a", req(sensitivity=Sensitivity.RESTRICTED)) is None
    assert c.key("a", req(sensitivity=Sensitivity.INTERNAL)) is not None
    assert ResponseCache(CacheConfig(), MemoryAnswerStore(1, 1024)).key("a", req()) is None


async def test_lru_bounded_by_entries_and_bytes_with_expiry() -> None:
    now = [0.0]
    store = MemoryAnswerStore(max_entries=2, max_bytes=1000, clock=lambda: now[0])
    await store.put("a", answer("a"), 100, ttl_s=10)
    await store.put("b", answer("b"), 100, ttl_s=10)
    assert await store.get("a") is not None  # a is now the most recent
    await store.put("c", answer("c"), 100, ttl_s=10)
    assert await store.get("b") is None and len(store) == 2
    await store.put("big", answer("big"), 950, ttl_s=10)
    assert await store.get("a") is None and await store.get("c") is None
    now[0] = 11
    assert await store.get("big") is None and len(store) == 0


def test_codec_round_trips() -> None:
    original = answer()
    assert CachedAnswer.decode(original.encode()) == original


def test_keys_tell_tool_choices_apart() -> None:
    # A forced call and a free choice are different questions (cache_tool_calls on).
    c = cache(cache_tool_calls=True)
    tools = (Tool("get_weather"), Tool("get_time"))

    def asking(choice: ToolChoice) -> RouteRequest:
        return dataclasses.replace(req(), params=GenerationParams(tools=tools, tool_choice=choice))

    keys = {
        c.key("a", asking(ToolChoice())),
        c.key("a", asking(ToolChoice(ToolChoiceMode.REQUIRED))),
        c.key("a", asking(ToolChoice(ToolChoiceMode.TOOL, "get_weather"))),
        c.key("a", asking(ToolChoice(ToolChoiceMode.TOOL, "get_time"))),
    }
    assert len(keys) == 4 and None not in keys

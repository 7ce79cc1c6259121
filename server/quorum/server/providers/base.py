"""The one provider interface every vendor adapter implements.

An adapter turns a :class:`ProviderRequest` into the vendor's wire format, calls it
and turns the answer back into a :class:`~quorum.server.domain.Completion` (unary) or a
stream of :class:`StreamDelta` (streaming). Adapters raise only
:class:`~quorum.server.errors.ProviderError` subclasses; they never retry, fail over or
touch breakers — the executor does that, the same way for every vendor.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import AsyncIterator
from typing import Protocol

import orjson

from quorum.server.domain import Completion, GenerationParams, Message, ToolCall, Usage
from quorum.server.errors import ProviderBadResponse, echo
from quorum.server.values import value_type

# More tokens than any model reads or writes in one call: a count beyond it (or below
# zero) is a broken answer, never something to bill or to put in an account.
MAX_PLAUSIBLE_TOKENS = 100_000_000

# The most an answer may hold: its text and its tool calls' arguments, in UTF-8 bytes.
# The RouteResponse that carries it (with its attempts, usage and metadata) must fit a
# default gRPC client's 4 MiB receive limit: a larger answer is one the caller cannot
# even receive, so it is a bad response (failed over, never billed as a success). It is
# also far more than any model writes in one turn (about 750,000 tokens).
MAX_ANSWER_BYTES = 3 * 1024 * 1024

# How far above 0 a log-probability may be and still be read as 0 (certainty): servers
# computing them in float32 (vLLM, llama.cpp) may report a certain token as +1e-7.
LOGPROB_ROUNDING = 1e-4


def certain_at_most(logprob: float) -> float:
    """``logprob`` as a log-probability: rounding just above 0 read as 0; ValueError for
    a value that is not finite or clearly above 0 (no probability is over 1)."""
    if not math.isfinite(logprob) or logprob > LOGPROB_ROUNDING:
        raise ValueError(f"logprob {logprob!r} is not a finite number at most 0")
    return min(logprob, 0.0)


# Tool call ids OpenAI (at most 40 characters) and Anthropic (letters, digits, _ and -)
# both accept.
_PORTABLE_CALL_ID = re.compile(r"[A-Za-z0-9_-]{1,40}")


@value_type
class ProviderRequest:
    """One upstream call: the provider's model id, the conversation and its time limits.

    ``timeout_s`` is the provider's time limit (the executor passes the smaller of the
    caller's time left and the provider's ``timeout_s``). A unary call's whole answer
    comes within it. A stream's silences do — the wait for its first chunk and every
    wait for the next — but not its length: ``stream_total_s`` bounds a stream as a
    whole (the executor passes the caller's time left); ``None``: a stream may go on
    as long as it keeps answering (its consumer bounds it). Unary calls ignore it.
    """

    model_id: str
    messages: tuple[Message, ...]
    params: GenerationParams
    timeout_s: float
    stream_total_s: float | None = None


@value_type
class StreamDelta:
    """One streamed piece. The last delta of a stream carries ``usage`` and ``finish_reason``."""

    text: str = ""
    tool_call: ToolCall | None = None
    finish_reason: str = ""
    usage: Usage | None = None


class Provider(Protocol):
    """A vendor adapter bound to one configured provider."""

    @property
    def name(self) -> str:
        """The configured provider name (used for breakers, metrics and errors)."""
        ...

    @property
    def kind(self) -> str:
        """The vendor kind: "openai", "anthropic", "gemini" or "simulated"."""
        ...

    async def complete(self, request: ProviderRequest) -> Completion:
        """Run one non-streaming call; it ends within ``request.timeout_s`` (raising
        :class:`ProviderTimeout`), which the contract suite holds every adapter to, so
        the caller sets no timer of its own around it."""
        ...

    def stream(self, request: ProviderRequest) -> AsyncIterator[StreamDelta]:
        """Run one streaming call; closing the iterator cancels the upstream request.

        A stream whose provider sends nothing for longer than ``request.timeout_s``
        (before its first chunk or between two) raises :class:`ProviderTimeout`; so does
        one still going after ``request.stream_total_s``, when set. A stream that keeps
        answering may take longer than ``timeout_s`` in all. The contract suite holds
        every adapter to this.
        """
        ...

    async def close(self) -> None:
        """Release resources (the shared HTTP session is closed by its owner)."""
        ...


def checked_usage(provider: str, usage: Usage) -> Usage:
    """``usage`` as reported by ``provider``, if it is plausible; else a bad response."""
    for name, count in (("input", usage.input_tokens), ("output", usage.output_tokens)):
        if not 0 <= count <= MAX_PLAUSIBLE_TOKENS:
            raise ProviderBadResponse(
                f"{provider}: implausible usage: {count} {name} tokens", provider=provider
            )
    cache = (usage.cached_input_tokens, usage.cache_write_tokens)
    if min(cache) < 0 or sum(cache) > usage.input_tokens:
        raise ProviderBadResponse(
            f"{provider}: implausible usage: {cache[0]} cached and {cache[1]} cache-written "
            f"of {usage.input_tokens} input tokens",
            provider=provider,
        )
    return usage


def text_field(value: object, what: str) -> str:
    """A text field of a vendor's answer (content, a delta's text): a string, or nothing
    (``None``: no text). Anything else raises TypeError, which every adapter reports as
    a bad response: an object turned into text with ``str()`` would be returned to the
    caller as the model's answer."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    raise TypeError(f"{what} is a {type(value).__name__}, not a string")


def utf8_size(text: str) -> int:
    """``text``'s size in UTF-8 bytes (an ASCII text's without encoding it)."""
    if text.isascii():
        return len(text)
    return len(text.encode("utf-8", "surrogatepass"))


def answer_too_large(provider: str, what: str) -> ProviderBadResponse:
    """The error for an answer over :data:`MAX_ANSWER_BYTES`; ``what`` says how big."""
    return ProviderBadResponse(
        f"{provider}: answer too large: {what}, over the {MAX_ANSWER_BYTES}-byte limit",
        provider=provider,
    )


class AnswerSize:
    """A stream's answer so far, in UTF-8 bytes of text and tool-call arguments: adding
    a piece that takes it over :data:`MAX_ANSWER_BYTES` raises a bad response."""

    __slots__ = ("provider", "size")

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self.size = 0

    def add(self, piece: str) -> None:
        self.size += utf8_size(piece)
        if self.size > MAX_ANSWER_BYTES:
            raise answer_too_large(self.provider, f"{self.size} bytes streamed")


def checked_tool_call(provider: str, call: ToolCall, *, cut_off: bool = False) -> ToolCall:
    """``call`` as ``provider`` made it, if a caller can send it back in its next turn (an
    id, a name, arguments that are a JSON object, as Quorum's own request validation
    wants them); else a bad response, for the executor to fail over.

    With ``cut_off`` (the answer stopped at the token limit, finish reason ``length``)
    the arguments are not judged: cut short at the caller's ``max_tokens``, they are
    what the caller asked for, not the provider's fault, as the vendors return them."""
    problem = ""
    if not call.id:
        problem = "no id"
    elif not call.name:
        problem = "no name"
    elif call.arguments_json and not cut_off:  # none at all: no arguments, as requests send
        try:
            arguments = orjson.loads(call.arguments_json)
        except orjson.JSONDecodeError:
            problem = f"arguments are not valid JSON: {echo(call.arguments_json)}"
        else:
            if not isinstance(arguments, dict):
                problem = f"arguments are not a JSON object: {echo(call.arguments_json)}"
    if problem:
        raise ProviderBadResponse(
            f"{provider}: malformed tool call {echo(call.name)}: {problem}", provider=provider
        )
    return call


def checked_completion(provider: str, completion: Completion) -> Completion:
    """``completion`` as ``provider`` answered it, if every tool call is well formed
    (:func:`checked_tool_call`) and it is within :data:`MAX_ANSWER_BYTES`; else a bad
    response."""
    size = utf8_size(completion.content)
    cut_off = completion.finish_reason == "length"
    for call in completion.tool_calls:
        checked_tool_call(provider, call, cut_off=cut_off)
        size += utf8_size(call.arguments_json)
    if size > MAX_ANSWER_BYTES:
        raise answer_too_large(provider, f"{size} bytes")
    return completion


def portable_call_id(call_id: str) -> str:
    """``call_id`` as a vendor that checks ids accepts it: unchanged when it already is,
    else a digest of it. Calls and their results map alike, so they still pair up; this
    is what lets a conversation started on one vendor (Gemini's ids carry a thought
    signature) go on with another."""
    if _PORTABLE_CALL_ID.fullmatch(call_id):
        return call_id
    return "call_" + hashlib.blake2b(call_id.encode(), digest_size=16).hexdigest()

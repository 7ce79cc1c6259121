"""CPU per request of each step of Quorum's request path, in one process.

    .venv/bin/python -m bench.hot_path [--requests 20000] [--profile out.html]

Builds the server's RouteService over the benchmark config (single strategy, rules
classifier) with the real OpenAI adapter, whose HTTP call is replaced by a canned
chat-completion body, so what is timed is Quorum's own Python: decode, validate,
classify, plan, execute bookkeeping, encode the upstream body and parse its answer,
build and serialise the response, the decision log. Each step is also timed alone.
``--profile`` writes a pyinstrument report of the whole loop (pyinstrument must be
installed).

Steps run in this process's event loop; numbers are CPU seconds (``time.process_time``)
divided by requests, so other load on the machine barely moves them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, NamedTuple

from bench.peers import PROMPT, quorum_config
from quorum.route.v1 import types_pb2 as pb
from quorum.server.config import parse_config
from quorum.server.observability.logs import configure_logging
from quorum.server.providers import sse
from quorum.server.providers.openai import OpenAIProvider, _completion
from quorum.server.router import Router
from quorum.server.service import convert
from quorum.server.service.admission import Admission
from quorum.server.service.gateway import SERVICE, Gateway
from quorum.server.service.route_service import RouteService, route_service_handlers

ANSWER = {
    "id": "chatcmpl-bench",
    "object": "chat.completion",
    "created": 1_700_000_000,
    "model": "ok",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello: the answer is 42."},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 6, "completion_tokens": 7, "total_tokens": 13},
}
RAW_ANSWER = json.dumps(ANSWER).encode()


class CallDetails(NamedTuple):
    """What grpc hands a generic handler for each call."""

    method: str
    invocation_metadata: tuple[tuple[str, str], ...]


class FakeContext:
    """The bits of a grpc.aio ServicerContext the service reads."""

    def time_remaining(self) -> float:
        return 30.0

    async def abort_with_status(self, status: Any) -> None:
        raise RuntimeError(f"aborted: {status}")

    def invocation_metadata(self) -> tuple[()]:
        return ()


def canned_post(raw: bytes) -> Callable[..., Awaitable[Any]]:
    async def post_json(*args: Any, **kwargs: Any) -> Any:
        sse._encode(args[3])  # the adapter's body is encoded as on the wire
        return sse.decode_json(args[1], raw)

    return post_json


def cpu_per_call(fn: Callable[[], object], n: int) -> float:
    t0 = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - t0) / n * 1e6


async def acpu_per_call(fn: Callable[[], Awaitable[object]], n: int) -> float:
    t0 = time.process_time()
    for _ in range(n):
        await fn()
    return (time.process_time() - t0) / n * 1e6


async def run(n: int, profile: str | None, log_level: str) -> None:
    # The decision log writes a line per request to stdout (its default sink), as in a
    # deployment; here stdout goes to /dev/null and the report to stderr.
    report = sys.stderr
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115, ASYNC230 - for the whole process
    configure_logging(log_level)
    config = parse_config(quorum_config("http://127.0.0.1:9/v1"))
    router = Router(config, secrets={})
    provider = router.providers["upstream"]
    assert isinstance(provider, OpenAIProvider)
    sse_post = sse.post_json
    sse.post_json = canned_post(RAW_ANSWER)  # type: ignore[assignment]
    service = RouteService(router)
    context = FakeContext()
    wire = pb.RouteRequest(messages=[pb.Message(role=pb.ROLE_USER, content=PROMPT)])
    data = wire.SerializeToString()
    try:
        admission = Admission(config, router.metrics)
        gateway = Gateway(
            route_service_handlers(service),
            router.guardrails.tenants,
            admission,
            router.metrics,
            router.tracing,
        )
        details = CallDetails(f"/{SERVICE}/Route", ())

        async def whole() -> None:
            request = pb.RouteRequest.FromString(data)
            handler = gateway.service(details)  # type: ignore[arg-type]
            assert handler is not None
            assert handler.unary_unary is not None
            response = await handler.unary_unary(request, context)  # type: ignore[arg-type]
            response.SerializeToString()

        async def bare_service() -> None:
            request = pb.RouteRequest.FromString(data)
            response = await service.Route(request, context)  # type: ignore[arg-type]
            response.SerializeToString()

        for _ in range(500):
            await whole()
        routed = service._request(wire)
        classification = await router.classifier.classify(routed)
        result = await router.route(routed)
        decided = result.plan
        steps: dict[str, float] = {}
        steps["Route via the gateway (no I/O)"] = await acpu_per_call(whole, n)
        steps["Route, servicer alone (no I/O)"] = await acpu_per_call(bare_service, n)
        steps["decode RouteRequest"] = cpu_per_call(lambda: pb.RouteRequest.FromString(data), n)
        steps["validate + convert request"] = cpu_per_call(lambda: service._request(wire), n)
        steps["classify (rules)"] = await acpu_per_call(
            lambda: router.classifier.classify(routed), n
        )
        from quorum.server.plan import plan

        snapshot = router.snapshot()
        steps["state snapshot"] = cpu_per_call(router.snapshot, n)
        steps["plan"] = cpu_per_call(
            lambda: plan(routed, classification, router.catalog, router.policy, snapshot), n
        )
        steps["router.route (classify..account)"] = await acpu_per_call(
            lambda: router.route(routed), n
        )
        from quorum.server.providers.base import ProviderRequest

        preq = ProviderRequest("ok", routed.messages, routed.params, 30.0)
        steps["upstream body + encode"] = cpu_per_call(
            lambda: sse._encode(provider._body(preq, stream=False)), n
        )
        steps["upstream answer decode"] = cpu_per_call(
            lambda: _completion(json.loads(RAW_ANSWER)), n
        )
        steps["response build + serialise"] = cpu_per_call(
            lambda: convert.route_response_pb(result).SerializeToString(), n
        )
        steps["decision log record"] = cpu_per_call(
            lambda: router.decisions.record(routed, result), n // 4
        )
        print(f"{'step':38} {'CPU µs/request':>15}", file=report)
        for name, us in steps.items():
            print(f"{name:38} {us:15.1f}", file=report)
        print(f"(plan: {decided.strategy.value}, {len(decided.stages)} stage(s))", file=report)
        if profile:
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.0002, async_mode="disabled")
            profiler.start()
            for _ in range(n):
                await whole()
            profiler.stop()
            Path(profile).write_text(profiler.output_html())  # noqa: ASYNC240
            print(profiler.output_text(unicode=False, color=False)[:8000], file=report)
    finally:
        sse.post_json = sse_post
        await router.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--profile", help="write a pyinstrument HTML report here")
    parser.add_argument(
        "--log-level", default="warning", help="server.log_level (the benchmark's: warning)"
    )
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(run(args.requests, args.profile, args.log_level))


if __name__ == "__main__":
    main()

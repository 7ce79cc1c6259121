"""The floor: the least a Python gRPC gateway can do per request.

    .venv/bin/python -m bench.bare_forwarder --upstream http://127.0.0.1:PORT/v1 \
        --address 127.0.0.1:PORT [--no-uvloop]

A ``grpc.aio`` server with one generic handler for ``RouteService/Route``: it decodes
the RouteRequest, posts its messages (to ``hints.model``, if set) to the upstream's
chat completions endpoint over one shared aiohttp session, and answers with the text.
``RouteService/RouteStream`` does the same with ``stream: true`` and sends each text
delta on as a ``chunk`` event, as it arrives. No validation, no classification, no
planning, no breakers, no account. Anything Quorum adds on top of this is the price of
routing; the benchmarks measure that price.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import grpc

from quorum.route.v1 import route_service_pb2 as svc
from quorum.route.v1 import types_pb2 as pb

SERVICE = "quorum.route.v1.RouteService"


class Forwarder:
    """Forwards each Route request to one OpenAI-compatible upstream."""

    def __init__(self, upstream: str, model: str) -> None:
        self._url = f"{upstream}/chat/completions"
        self._model = model
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=512))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def route(self, request: pb.RouteRequest, context: Any) -> pb.RouteResponse:
        assert self._session is not None
        model = request.hints.model or self._model
        body = {
            "model": model,
            "messages": [{"role": "user", "content": m.content} for m in request.messages],
        }
        async with self._session.post(
            self._url,
            data=json.dumps(body),
            headers={"Authorization": "Bearer sk-bench", "Content-Type": "application/json"},
        ) as response:
            answer = json.loads(await response.read())
        return pb.RouteResponse(
            content=answer["choices"][0]["message"]["content"] or "", model=model
        )

    async def route_stream(
        self, request: svc.RouteStreamRequest, context: Any
    ) -> AsyncIterator[svc.RouteStreamResponse]:
        assert self._session is not None
        model = request.request.hints.model or self._model
        body = {
            "model": model,
            "stream": True,
            "messages": [{"role": "user", "content": m.content} for m in request.request.messages],
        }
        async with self._session.post(
            self._url,
            data=json.dumps(body),
            headers={"Authorization": "Bearer sk-bench", "Content-Type": "application/json"},
        ) as response:
            buffer = b""
            async for piece in response.content.iter_any():
                buffer += piece
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if not line.startswith(b"data: {"):
                        continue
                    choices = json.loads(line[6:]).get("choices") or []
                    text = choices[0].get("delta", {}).get("content") if choices else None
                    if text:
                        yield svc.RouteStreamResponse(chunk=svc.ChunkEvent(model=model, text=text))


async def run(upstream: str, address: str, model: str) -> None:
    forwarder = Forwarder(upstream, model)
    await forwarder.start()
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    handler = grpc.unary_unary_rpc_method_handler(
        forwarder.route,
        request_deserializer=pb.RouteRequest.FromString,
        response_serializer=pb.RouteResponse.SerializeToString,
    )
    stream = grpc.unary_stream_rpc_method_handler(
        forwarder.route_stream,
        request_deserializer=svc.RouteStreamRequest.FromString,
        response_serializer=svc.RouteStreamResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE, {"Route": handler, "RouteStream": stream}),)
    )
    if server.add_insecure_port(address) == 0:
        raise OSError(f"cannot bind {address}")
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    await stop.wait()
    await server.stop(1)
    await forwarder.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--upstream", required=True, help="base URL ending in /v1")
    parser.add_argument("--address", required=True)
    parser.add_argument("--model", default="ok")
    parser.add_argument("--no-uvloop", action="store_true")
    args = parser.parse_args()
    if not args.no_uvloop:
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass
    asyncio.run(run(args.upstream, args.address, args.model))


if __name__ == "__main__":
    main()

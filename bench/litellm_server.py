"""A peer for the benchmark: LiteLLM's Router behind a minimal aiohttp server.

Runs with the interpreter of ``bench/.venv-litellm`` (made by ``bench.peers``), never
the project's: it imports only the standard library, aiohttp and litellm.

    bench/.venv-litellm/bin/python bench/litellm_server.py --upstream URL --port PORT

``POST /route`` with ``{"prompt": "...", "model": "..."}`` answers
``{"content": "...", "model": "..."}`` after one ``Router.acompletion`` call to the
upstream. The cost map is the local copy and telemetry is off, so nothing leaves the
machine; the server binds loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from typing import Any

# Before litellm is imported: no download of the model cost map, no telemetry.
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
os.environ["LITELLM_TELEMETRY"] = "False"
os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")

import litellm  # type: ignore[import-not-found,unused-ignore]
from aiohttp import web

litellm.telemetry = False
litellm.suppress_debug_info = True
litellm.set_verbose = False
litellm.disable_streaming_logging = True


def build_app(upstream: str, models: list[str]) -> web.Application:
    router = litellm.Router(
        model_list=[
            {
                "model_name": model,
                "litellm_params": {
                    "model": f"openai/{model}",
                    "api_base": upstream,
                    "api_key": "sk-bench",
                },
            }
            for model in models
        ],
        num_retries=0,
    )

    async def route(request: web.Request) -> web.Response:
        body = await request.json()
        answer: Any = await router.acompletion(
            model=body.get("model") or models[0],
            messages=[{"role": "user", "content": body["prompt"]}],
        )
        return web.json_response(
            {"content": answer.choices[0].message.content or "", "model": answer.model}
        )

    app = web.Application()
    app.add_routes([web.post("/route", route)])
    return app


async def serve(upstream: str, port: int, models: list[str]) -> None:
    runner = web.AppRunner(build_app(upstream, models), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    await stop.wait()
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--upstream", required=True, help="base URL ending in /v1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--models", default="ok", help="comma-separated model names")
    args = parser.parse_args()
    asyncio.run(serve(args.upstream, args.port, args.models.split(",")))


if __name__ == "__main__":
    main()

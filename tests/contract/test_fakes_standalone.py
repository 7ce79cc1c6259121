"""Each fake vendor server also runs as its own process, as the benchmarks start it:
the adapter's full request (tools and tool choice included) is answered there too."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pydantic import SecretStr

from quorum.server.config import ProviderConfig
from quorum.server.domain import Tool, ToolChoice, ToolChoiceMode
from quorum.server.providers.http import HttpClient
from tests.contract.conftest import VendorCase, ask

ROOT = Path(__file__).resolve().parents[2]


async def test_the_fake_answers_from_its_own_process(case: VendorCase, http: HttpClient) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", f"tests.fakes.{case.kind}_server", "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:"), base_url
        config = ProviderConfig(kind=case.kind, base_url=base_url, timeout_s=10)
        provider = case.adapter(f"fake-{case.kind}", config, SecretStr("test-key"), http)
        tools = (Tool("get_weather"), Tool("get_tide"))
        answered = await provider.complete(ask("ok", "Hi there"))
        forced = await provider.complete(
            ask("ok", "Hi", tools=tools, tool_choice=ToolChoice(ToolChoiceMode.TOOL, "get_tide"))
        )
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=10)
    assert answered.content and answered.usage.output_tokens > 0
    assert [c.name for c in forced.tool_calls] == ["get_tide"]
    assert "Traceback" not in stderr, stderr

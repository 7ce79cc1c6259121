"""The ``quorum`` command line, run as a user would."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from quorum.server.config import parse_config
from tests.conftest import running_server, sim_config, with_model

QUORUM = Path(sys.executable).with_name("quorum")
ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(QUORUM), *args], capture_output=True, text=True, timeout=60)


def test_check_config_accepts_examples() -> None:
    result = run("check-config", str(ROOT / "examples" / "providers.yaml"))
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout
    assert "OPENAI_API_KEY" in result.stderr  # a warning, not a failure


def test_check_config_names_the_bad_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(with_model(sim_config(), "flash", provider="opena")))
    result = run("check-config", str(bad))
    assert result.returncode == 1
    assert 'models.flash.provider: unknown provider "opena"' in result.stderr
    assert "Traceback" not in result.stderr


def test_check_config_refuses_a_verifier_the_artifact_lacks(tmp_path: Path) -> None:
    # The default source (MMLU) has no cascade verifier: serving would fail every cascade.
    bad = tmp_path / "verifier.yaml"
    bad.write_text(yaml.safe_dump(sim_config(classifier={"learned": {"verifier": True}})))
    result = run("check-config", str(bad))
    assert result.returncode == 1
    assert "classifier.learned.verifier: source 'routellm-mmlu' has no cascade" in result.stderr
    assert "routellm-gsm8k" in result.stderr and "Traceback" not in result.stderr


async def test_route_plan_models_against_a_server() -> None:
    async with running_server(parse_config(sim_config())) as (running, _):
        address = f"127.0.0.1:{running.port}"
        routed = await asyncio.to_thread(
            run, "route", "What is 6 * 7?", "--address", address, "--json"
        )
        assert routed.returncode == 0, routed.stderr
        body = json.loads(routed.stdout)
        assert body["content"] == "The answer is 42."
        assert body["model"] == "flash"
        text = await asyncio.to_thread(
            run, "route", "What is 6 * 7?", "--address", address, "--priority", "quality"
        )
        assert "frontier" in text.stdout
        assert "baseline" in text.stdout
        planned = await asyncio.to_thread(
            run, "plan", "hello", "--address", address, "--strategy", "single", "--tier", "mid"
        )
        assert planned.returncode == 0, planned.stderr
        assert "FORCED_TIER" in planned.stdout
        assert "mid (sim, tier mid) [simulated]" in planned.stdout  # labelled in plans too
        models = await asyncio.to_thread(run, "models", "--address", address)
        assert "frontier" in models.stdout
        bad = await asyncio.to_thread(run, "route", "hi", "--address", address, "--tier", "gold")
        assert bad.returncode == 1
        assert "hints.tier" in bad.stderr


def test_serve_rejects_bad_config(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("providers: {}\nmodels: {}\ntiers: []\n")
    result = run("serve", "--config", str(bad), "--address", "127.0.0.1:0")
    assert result.returncode == 2
    assert "tiers:" in result.stderr


async def test_route_sends_the_bearer_token() -> None:
    import hashlib

    data = sim_config()
    data["tenants"] = {"acme": {"token_sha256": hashlib.sha256(b"s3cret-token").hexdigest()}}
    async with running_server(parse_config(data)) as (running, _):
        address = f"127.0.0.1:{running.port}"
        denied = await asyncio.to_thread(run, "route", "hi", "--address", address)
        assert denied.returncode == 1
        assert "UNAUTHENTICATED" in denied.stderr
        allowed = await asyncio.to_thread(
            run, "route", "hi", "--address", address, "--token", "s3cret-token", "--json"
        )
        assert allowed.returncode == 0, allowed.stderr
        assert "s3cret-token" not in allowed.stdout


def test_check_config_warns_of_what_serve_would_refuse(tmp_path: Path) -> None:
    data = sim_config()
    data["server"] = {"tls": {"cert_file": "/nope/cert.pem", "key_file": "/nope/key.pem"}}
    data["tenants"] = {"acme": {"token_sha256_env": "QUORUM_TEST_UNSET_DIGEST"}}
    config = tmp_path / "env.yaml"
    config.write_text(yaml.safe_dump(data))
    result = run("check-config", str(config))
    assert result.returncode == 0, result.stderr  # the server's environment may differ
    for key in ("tenants.acme.token_sha256_env", "server.tls.cert_file", "server.tls.key_file"):
        assert f"warning: {key}" in result.stderr
    assert "serve refuses to start without it" in result.stderr


def test_a_port_out_of_range_is_named(tmp_path: Path) -> None:
    data = sim_config()
    data["server"] = {"http_address": "127.0.0.1:70000"}
    config = tmp_path / "port.yaml"
    config.write_text(yaml.safe_dump(data))
    result = run("check-config", str(config))
    assert result.returncode == 1
    assert "server.http_address" in result.stderr and "65535" in result.stderr


def test_serve_on_a_port_in_use_names_the_flag_or_key_without_a_traceback(
    tmp_path: Path,
) -> None:
    config = tmp_path / "address.yaml"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config.write_text(yaml.safe_dump(sim_config(server={"address": f"127.0.0.1:{port}"})))
        flag = run("serve", "--address", f"127.0.0.1:{port}")
        key = run("serve", "--config", str(config))
    # The flag's value was reported as the config key's ("server.address: ..."), and gRPC
    # core added its own line ("E1205 ... add_port.cc:83] ...").
    for result, name in ((flag, "--address"), (key, "server.address")):
        assert result.returncode == 2  # as with --workers, and for the HTTP and metrics ports
        (line,) = _not_json(result.stderr)
        assert line.startswith(f"quorum serve: {name}: cannot listen on 127.0.0.1:{port}: ")


def test_check_config_and_serve_refuse_a_learned_router_they_cannot_build(tmp_path: Path) -> None:
    # Each used to pass check-config, then fail serve with a traceback or fail every
    # request with INTERNAL (an unknown source).
    cases = {
        "artifact": ({"artifact": "/nonexistent/router"}, "classifier.learned.artifact: "),
        "source": (
            {"source": "no-such-source"},
            'classifier.learned.source: unknown source "no-such-source" (the artifact has: ',
        ),
        "verifier": (
            {"source": "no-such-source", "verifier": True},
            'classifier.learned.source: unknown source "no-such-source"',
        ),
    }
    for name, (learned, problem) in cases.items():
        config = tmp_path / f"{name}.yaml"
        config.write_text(yaml.safe_dump(sim_config(classifier={"learned": learned})))
        checked = run("check-config", str(config))
        assert checked.returncode == 1, (name, checked.stdout)
        served = run("serve", "--config", str(config), "--address", "127.0.0.1:0")
        assert served.returncode == 2, (name, served.stderr[-400:])
        for result in (checked, served):
            assert problem in result.stderr, (name, result.stderr[-400:])
            assert "Traceback" not in result.stderr


def test_serve_with_workers_refuses_a_bad_learned_source_once(tmp_path: Path) -> None:
    config = tmp_path / "source.yaml"
    config.write_text(
        yaml.safe_dump(sim_config(classifier={"learned": {"source": "no-such-source"}}))
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = run(
        "serve", "--config", str(config), "--address", f"127.0.0.1:{port}", "--workers", "2"
    )
    assert result.returncode == 2
    assert result.stderr.count('classifier.learned.source: unknown source "no-such-source"') == 1
    assert "workers_started" not in result.stderr and "Traceback" not in result.stderr


def test_a_decision_log_in_a_missing_directory_is_a_warning_and_serve_refuses(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "nope"
    data = sim_config(decisions={"sink": "file", "path": str(missing / "decisions.jsonl")})
    config = tmp_path / "decisions.yaml"
    config.write_text(yaml.safe_dump(data))
    checked = run("check-config", str(config))
    assert checked.returncode == 0, checked.stderr  # the server's filesystem may differ
    assert (
        f'warning: decisions.path: directory "{missing}" does not exist '
        "(serve refuses to start without it)"
    ) in checked.stderr
    served = run("serve", "--config", str(config), "--address", "127.0.0.1:0")
    assert served.returncode == 2
    assert f'decisions.path: directory "{missing}" does not exist' in served.stderr
    assert "Traceback" not in served.stderr


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_missing_tls_file_is_one_line_not_a_traceback() -> None:
    for command in (["route", "hi"], ["plan", "hi"], ["models"]):
        result = run(*command, "--tls-ca", "/nonexistent.pem", "--address", "127.0.0.1:9")
        assert result.returncode == 2, result.stderr
        assert result.stderr == (
            f"quorum {command[0]}: --tls-ca: cannot read /nonexistent.pem "
            "(No such file or directory)\n"
        )


def test_a_token_or_timeout_grpc_cannot_send_is_one_line() -> None:
    # gRPC answered these with "INTERNAL: Invalid metadata" or an instant
    # DEADLINE_EXCEEDED, which read as the server's doing.
    token = run("route", "hi", "--token", "a\nb", "--address", "127.0.0.1:9")
    assert token.returncode == 2
    assert token.stderr == (
        "quorum route: --token (or $QUORUM_TOKEN) must be printable ASCII without newlines\n"
    )
    for value in ("1e300", "inf"):
        timeout = run("route", "hi", "--timeout", value, "--address", "127.0.0.1:9")
        assert timeout.returncode == 2 and "--timeout" in timeout.stderr, timeout.stderr
        assert "Traceback" not in timeout.stderr


async def test_client_certificate_flags_never_fall_back_to_plaintext(tmp_path: Path) -> None:
    from tests.integration.test_tls import make_pki, serving, tls_section

    pki = make_pki()
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    cert.write_bytes(pki.client.cert)
    key.write_bytes(pki.client.key)
    mtls = ["--tls-cert", str(cert), "--tls-key", str(key)]
    # A plaintext server used to answer these flags without --tls-ca: the certificate was
    # silently dropped and the call went out in plaintext.
    async with running_server(parse_config(sim_config())) as (running, _):
        plain = await asyncio.to_thread(
            run, "models", "--address", f"127.0.0.1:{running.port}", *mtls
        )
    assert plain.returncode == 2 and plain.stdout == ""
    assert plain.stderr.startswith("quorum models: --tls-cert and --tls-key need --tls-ca")
    # With the CA, the same flags make a mutual TLS call; half of them is refused.
    async with serving(tls_section(tmp_path, pki, mutual=True)) as running:
        secure = ["models", "--address", f"localhost:{running.port}"]
        secure += ["--tls-ca", str(tmp_path / "ca.pem")]
        secured = await asyncio.to_thread(run, *secure, *mtls)
        assert secured.returncode == 0, secured.stderr
        assert "frontier" in secured.stdout
        half = await asyncio.to_thread(run, *secure, "--tls-cert", str(cert))
        assert half.returncode == 2
        assert half.stderr.startswith("quorum models: --tls-cert needs --tls-key")


async def test_stats_pointed_at_the_grpc_port_is_one_line() -> None:
    async with running_server(parse_config(sim_config())) as (running, _):
        address = f"127.0.0.1:{running.port}"
        result = await asyncio.to_thread(run, "stats", "--metrics-address", address)
    assert result.returncode == 1
    assert result.stderr.startswith(f"quorum stats: cannot read http://{address}/metrics: ")
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr


def test_router_help_lists_report() -> None:
    router = run("router", "--help")
    assert router.returncode == 0
    assert "{train,eval,report,export-log}" in router.stdout
    assert "cheaper tier" in router.stdout  # report's description
    top = run("--help")
    assert "report on shadow evaluations" in " ".join(top.stdout.split())


def test_router_report_refuses_a_file_that_is_not_a_decision_log() -> None:
    result = run("router", "report", "--log", str(ROOT / "README.md"))
    assert result.returncode == 2
    assert result.stdout == ""
    assert f"{ROOT / 'README.md'} is not a decision log" in result.stderr


def test_route_flags_are_checked_by_route() -> None:
    for timeout in ("0", "-1"):
        result = run("route", "hi", "--timeout", timeout)
        assert result.returncode == 2
        assert result.stderr.startswith("usage: quorum route ")
        expected = "must be a number of seconds above 0, at most 31622400"
        assert f"argument --timeout: {expected}, not {timeout}" in result.stderr
    bogus = run("route", "hi", "--bogus")
    assert bogus.returncode == 2
    assert bogus.stderr.startswith("usage: quorum route ")
    assert bogus.stderr.endswith("quorum route: error: unrecognized arguments: --bogus\n")
    helped = " ".join(run("route", "--help").stdout.split())
    assert "--address HOST:PORT the server's gRPC address (default $QUORUM_ADDRESS or" in helped


def test_an_error_without_a_reason_reads_code_colon_message() -> None:
    result = run("route", "hi", "--address", f"127.0.0.1:{_free_port()}", "--timeout", "5")
    assert result.returncode == 1
    assert result.stderr.startswith("error: UNAVAILABLE: "), result.stderr


def test_check_config_names_list_items_in_brackets_without_pydantic_prefixes(
    tmp_path: Path,
) -> None:
    data = with_model(sim_config(), "flash", capabilities=["streaming", "tool"])
    data["tenants"] = {"support-bot": {"token_sha256": "abc"}}
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump(data))
    result = run("check-config", str(config))
    assert result.returncode == 1
    assert "  models.flash.capabilities[1]: Input should be " in result.stderr
    assert "  tenants.support-bot.token_sha256: must be the 64-character" in result.stderr
    assert "Value error" not in result.stderr and ".capabilities.1" not in result.stderr


def _not_json(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip() and not line.startswith("{")]


def test_serve_refuses_a_port_past_65535_on_the_command_line() -> None:
    # It used to serve on port 34463 (99999 mod 65536); the same value in the config is
    # refused, and now the flag too, as one line.
    result = run("serve", "--address", "127.0.0.1:99999")
    assert result.returncode == 2
    assert result.stderr == (
        "quorum serve: --address '127.0.0.1:99999': port 99999 is not within 0-65535\n"
    )


def test_serve_on_a_taken_http_or_metrics_port_is_one_line_without_a_traceback() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # The gRPC server had started when the HTTP port failed, and was never stopped:
        # "Exception ignored in: <function Server.__del__> ... Event loop is closed".
        for flag, problem in (
            ("--http-address", f"--http-address: cannot bind HTTP address 127.0.0.1:{port}: "),
            ("--metrics-address", f"--metrics-address: cannot listen on 127.0.0.1:{port}"),
        ):
            result = run(
                "serve", "--address", f"127.0.0.1:{_free_port()}", flag, f"127.0.0.1:{port}"
            )
            assert result.returncode == 2, (flag, result.stderr)
            (line,) = _not_json(result.stderr)
            assert line.startswith(f"quorum serve: {problem}"), (flag, result.stderr)
            assert '"serving"' not in result.stderr


async def test_client_errors_are_one_line_without_grpc_core_logs(tmp_path: Path) -> None:
    from tests.integration.test_tls import make_pki

    (tmp_path / "ca.pem").write_bytes(make_pki().ca.cert)
    tls = ["--tls-ca", str(tmp_path / "ca.pem"), "--timeout", "5"]
    empty = run("route", "hi", "--address", "")
    assert empty.returncode == 2  # it used to reach gRPC: UNKNOWN, with gRPC core's trace
    assert empty.stderr == (
        "quorum route: --address '': expected HOST:PORT, e.g. localhost:50051\n"
    )
    async with running_server(parse_config(sim_config())) as (running, _):
        address = f"127.0.0.1:{running.port}"
        # TLS to a plaintext server: gRPC core logged "I1204 ... ssl_transport_security.cc"
        # before the error line.
        for command in (["route", "hi"], ["plan", "hi"], ["models"]):
            result = await asyncio.to_thread(run, *command, "--address", address, *tls)
            assert result.returncode == 1
            assert result.stderr.startswith("error: UNAVAILABLE: "), result.stderr
            assert len(result.stderr.splitlines()) == 1, result.stderr
        # A user who asks for gRPC core's logs gets them.
        verbose = await asyncio.to_thread(
            subprocess.run,
            [str(QUORUM), "models", "--address", address, *tls],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "GRPC_VERBOSITY": "INFO"},
        )
    assert verbose.returncode == 1
    assert "ssl_transport_security" in verbose.stderr


def test_the_cli_loads_without_grpc() -> None:
    # gRPC reads GRPC_VERBOSITY once, as it is imported: the client commands set it first.
    code = "import sys, quorum.server.cli; sys.exit('grpc' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


def _serve(config: Path, then: Callable[[str], None]) -> tuple[int, str]:
    """Run ``quorum serve --config CONFIG``; once it serves, call ``then`` with its gRPC
    address and stop it with SIGTERM. Its exit status and stderr."""
    port = _free_port()
    proc = subprocess.Popen(
        [str(QUORUM), "serve", "--config", str(config), "--address", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    lines: list[str] = []
    try:
        for line in proc.stderr:
            lines.append(line)
            if '"serving"' in line:
                then(f"127.0.0.1:{port}")
                proc.send_signal(signal.SIGTERM)
                break
        err = proc.communicate(timeout=60)[1]
    finally:
        proc.kill()
    return proc.returncode, "".join(lines) + err


def test_a_decision_log_write_failing_at_shutdown_is_a_json_line_not_a_listen_error(
    tmp_path: Path,
) -> None:
    # With the decision log on a full disk, SIGTERM ended in "quorum serve: [Errno 28] No
    # space left on device", exit 2: the OSError of closing the log was taken for an
    # address serve could not listen on.
    if not Path("/dev/full").exists():
        pytest.skip("needs /dev/full")
    config = tmp_path / "full.yaml"
    config.write_text(yaml.safe_dump(sim_config(decisions={"sink": "file", "path": "/dev/full"})))

    def route(address: str) -> None:
        routed = run("route", "hi", "--address", address)
        assert routed.returncode == 0, routed.stderr

    code, err = _serve(config, route)
    assert _not_json(err) == [], err
    assert code == 0, err  # a clean drain: the lines are lost, the shutdown is not
    assert '"decision_log_write_failed"' in err and '"decisions.path"' in err
    assert '"stopped"' in err


def test_serve_logs_only_json_when_the_trace_collector_is_down(tmp_path: Path) -> None:
    # OpenTelemetry's exporter logged "Transient error StatusCode.UNAVAILABLE encountered
    # while exporting traces ..." and "Failed to export traces ..." as plain text.
    config = tmp_path / "tracing.yaml"
    tracing = {"otlp_endpoint": f"http://127.0.0.1:{_free_port()}", "sample_ratio": 1.0}
    config.write_text(yaml.safe_dump(sim_config(observability={"tracing": tracing})))

    def route(address: str) -> None:
        assert run("route", "hi", "--address", address).returncode == 0

    code, err = _serve(config, route)
    assert code == 0, err
    assert _not_json(err) == [], err
    exported = [json.loads(line) for line in err.splitlines() if '"library_log"' in line]
    assert exported, err  # the span could not be exported: said, as JSON
    assert all(e["logger"].startswith("opentelemetry.") for e in exported)


def test_a_prompt_that_is_not_utf8_is_a_usage_error() -> None:
    # $'\xff' was a traceback: UnicodeEncodeError, surrogates not allowed.
    result = subprocess.run(
        [str(QUORUM).encode(), b"route", b"caf\xe9", b"--address", b"127.0.0.1:9"],
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.decode().splitlines()[-1] == (
        "quorum route: error: argument prompt: not UTF-8 text (byte 0xe9 at character 4)"
    )

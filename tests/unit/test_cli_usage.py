"""``quorum``'s usage: arguments refused by name before anything runs (text that is not
UTF-8, an empty config name, too many workers, a concurrency below 1), help for every flag,
errors as JSON with ``--json``, and a reader of stdout that goes away (``| head``)."""

from __future__ import annotations

import argparse
import json
from typing import Any

import grpc
import pytest

from quorum.client import FieldViolation, QuorumError
from quorum.server import cli
from quorum.server.errors import ListenError


def _usage_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """The line argparse printed for ``argv`` (exit status 2, after the usage)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        cli.main(list(argv))
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: quorum ") and "Traceback" not in err
    return err.splitlines()[-1]


def _no_client(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_call(*args: object, **kwargs: object) -> None:
        raise AssertionError("a client was made")

    monkeypatch.setattr("quorum.client.QuorumClient.__init__", no_call)


# --- arguments that are not UTF-8 --------------------------------------------------------


@pytest.mark.parametrize("command", ["route", "plan"])
@pytest.mark.parametrize(
    ("args", "name"),
    [
        (["\udcff"], "prompt"),  # quorum route $'\xff': Python's surrogate for byte 0xff
        (["caf\udce9 au lait"], "prompt"),
        (["hi", "--agent", "\udcc3"], "--agent"),
        (["hi", "--task", "x\udcff"], "--task"),
        (["hi", "--model", "\udcff"], "--model"),
        (["hi", "--tier", "\udcff"], "--tier"),
        (["hi", "--use-case", "\udcff"], "--use-case"),
    ],
)
def test_text_that_is_not_utf8_is_refused_naming_the_argument(
    command: str,
    args: list[str],
    name: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # It was a traceback: UnicodeEncodeError, surrogates not allowed.
    _no_client(monkeypatch)
    line = _usage_error(capsys, command, *args)
    assert line.startswith(f"quorum {command}: error: argument {name}: not UTF-8 text (byte 0x")


def test_the_byte_that_is_not_utf8_and_where_are_named(capsys: pytest.CaptureFixture[str]) -> None:
    line = _usage_error(capsys, "route", "caf\udce9 au lait")
    assert line == "quorum route: error: argument prompt: not UTF-8 text (byte 0xe9 at character 4)"


# --- serve's config and workers ------------------------------------------------------------


def test_an_empty_config_name_is_refused_by_serve_and_check_config(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # serve --config $CFG with CFG unset used to serve the embedded default on [::]:50051.
    def no_server(*args: object, **kwargs: object) -> None:
        raise AssertionError("a server was made")

    monkeypatch.setattr("quorum.server.app.create_server", no_server)
    problem = "an empty file name (is a shell variable unset?)"
    assert _usage_error(capsys, "serve", "--config", "") == (
        f"quorum serve: error: argument --config: {problem}"
    )
    assert _usage_error(capsys, "check-config", "") == (
        f"quorum check-config: error: argument file: {problem}"
    )


def test_an_empty_quorum_config_variable_is_refused(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_server(*args: object, **kwargs: object) -> None:
        raise AssertionError("a server was made")

    monkeypatch.setattr("quorum.server.app.create_server", no_server)
    monkeypatch.setenv("QUORUM_CONFIG", "")
    capsys.readouterr()
    assert cli.main(["serve", "--address", "127.0.0.1:0"]) == 2
    assert capsys.readouterr().err == (
        "quorum serve: $QUORUM_CONFIG is set but empty (is a shell variable unset?): set it "
        "to a config file, or unset it to serve the embedded default\n"
    )


@pytest.mark.parametrize("workers", ["65", "1000000"])
def test_workers_have_an_upper_bound(workers: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert _usage_error(capsys, "serve", "--workers", workers) == (
        f"quorum serve: error: argument --workers: must be at most {cli.MAX_WORKERS} "
        f"(one per core is the most that helps), not {workers}"
    )
    args = cli.build_parser().parse_args(["serve", "--workers", str(cli.MAX_WORKERS)])
    assert args.workers == cli.MAX_WORKERS


def test_workers_help_gives_the_bounds(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["serve", "--help"])
    assert f"1 to {cli.MAX_WORKERS}" in " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize(
    ("given", "flag", "key"),
    [
        (
            ListenError("server.address", "cannot listen on 1.2.3.4:5: in use"),
            "--address: cannot listen on 1.2.3.4:5: in use",
            "server.address: cannot listen on 1.2.3.4:5: in use",
        ),
        (
            ListenError("observability.metrics_address", "cannot listen on 1.2.3.4:5: in use"),
            "--metrics-address: cannot listen on 1.2.3.4:5: in use",
            "observability.metrics_address: cannot listen on 1.2.3.4:5: in use",
        ),
        (
            ListenError("server.http_address", "cannot bind HTTP address 1.2.3.4:5: in use"),
            "--http-address: cannot bind HTTP address 1.2.3.4:5: in use",
            "server.http_address: cannot bind HTTP address 1.2.3.4:5: in use",
        ),
    ],
)
def test_a_listen_error_names_the_flag_the_address_came_from(
    given: ListenError, flag: str, key: str
) -> None:
    # An address given by a flag used to be reported by the config key (server.address).
    flags = argparse.Namespace(address="1.2.3.4:5", metrics_address="1.2.3.4:5")
    flags.http_address = "1.2.3.4:5"
    assert cli._named_by_flag(given, flags) == flag
    config = argparse.Namespace(address=None, metrics_address=None, http_address=None)
    assert cli._named_by_flag(given, config) == key


# --- demo, help --------------------------------------------------------------------------


@pytest.mark.parametrize("concurrency", ["0", "-5", "two"])
def test_demo_concurrency_must_be_at_least_1(
    concurrency: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # 0 and -5 used to run as 1.
    line = _usage_error(capsys, "demo", "--concurrency", concurrency)
    assert line.startswith("quorum demo: error: argument --concurrency: ")


def _actions(*command: str) -> dict[str, argparse.Action]:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    chosen = sub.choices[command[0]]
    return {a.option_strings[0] if a.option_strings else a.dest: a for a in chosen._actions}


@pytest.mark.parametrize("command", ["route", "plan", "models", "stats", "demo", "serve"])
def test_every_flag_has_help(command: str) -> None:
    missing = [name for name, action in _actions(command).items() if not action.help]
    assert missing == []


def test_check_config_says_what_it_checks_and_what_it_only_warns_of(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        cli.main(["check-config", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for words in ("Validate a config file as serve reads it", "warning", "serve refuses"):
        assert words in out
    for problem in ("token variable unset", "TLS file", "decision log"):
        assert problem in out


# --- errors as JSON with --json --------------------------------------------------------------


class _Failing:
    """A client whose every call fails as a server would."""

    error = QuorumError(
        grpc.StatusCode.INVALID_ARGUMENT,
        "the request is invalid",
        reason="INVALID_REQUEST",
        domain="quorum.dev",
        field_violations=(FieldViolation("hints.tier", 'unknown tier "gold"'),),
    )

    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    def __enter__(self) -> _Failing:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def route(self, request: object) -> Any:
        raise self.error

    plan = route

    def list_models(self) -> Any:
        raise self.error


@pytest.mark.parametrize("command", [["route", "hi"], ["plan", "hi"], ["models"]])
def test_with_json_a_failed_call_is_a_json_object_on_stdout(
    command: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("quorum.client.QuorumClient", _Failing)
    capsys.readouterr()
    assert cli.main([*command, "--address", "127.0.0.1:9", "--json"]) == 1
    out, err = capsys.readouterr()
    error = json.loads(out)["error"]  # stdout used to be empty
    assert error["code"] == "INVALID_ARGUMENT"
    assert (error["message"], error["reason"]) == ("the request is invalid", "INVALID_REQUEST")
    assert error["field_violations"] == [
        {"field": "hints.tier", "description": 'unknown tier "gold"'}
    ]
    assert err.startswith("error: INVALID_ARGUMENT INVALID_REQUEST: ")  # still, for a person
    # without --json: text on stderr only, as before
    assert cli.main([*command, "--address", "127.0.0.1:9"]) == 1
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("command", [["route", "hi"], ["models"]])
def test_with_json_a_refused_flag_is_a_json_object_on_stdout(
    command: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_client(monkeypatch)
    capsys.readouterr()
    assert cli.main([*command, "--address", "nowhere", "--json"]) == 2
    out, err = capsys.readouterr()
    assert json.loads(out) == {
        "error": {
            "code": "INVALID_ARGUMENT",
            "message": "--address 'nowhere': expected HOST:PORT, e.g. localhost:50051",
            "reason": "",
            "field_violations": [],
        }
    }
    assert err.startswith(f"quorum {command[0]}: --address 'nowhere'")


def test_stats_with_json_puts_its_error_on_stdout(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        "quorum.server.stats.run",
        lambda *a, **k: (1, "quorum stats: cannot read http://127.0.0.1:9/metrics: refused"),
    )
    capsys.readouterr()
    assert cli.main(["stats", "--metrics-address", "127.0.0.1:9", "--json"]) == 1
    out, err = capsys.readouterr()
    error = json.loads(out)["error"]
    assert (error["code"], error["message"]) == (
        "UNAVAILABLE",
        "cannot read http://127.0.0.1:9/metrics: refused",
    )
    assert err == "quorum stats: cannot read http://127.0.0.1:9/metrics: refused\n"


# --- a reader of stdout that goes away ---------------------------------------------------------


def test_a_closed_stdout_stops_the_command_quietly(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def closed(args: argparse.Namespace) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(cli, "_cmd_stats", closed)
    monkeypatch.setattr("quorum.server.log_export.main", lambda argv: closed(argparse.Namespace()))
    capsys.readouterr()
    assert cli.main(["stats"]) == 141  # as a program SIGPIPE stopped: `cat` in the same pipe
    assert cli.main(["router", "export-log", "--redis", "redis://x/0"]) == 141
    assert capsys.readouterr() == ("", "")

"""The ``quorum`` command line's flags, checked before any call is made (``main`` in process)."""

from __future__ import annotations

from pathlib import Path

import pytest

from quorum.server import cli

PEM = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
# Nothing listens here: a command that got as far as calling would fail with exit 1.
NOWHERE = ["--address", "127.0.0.1:9", "--timeout", "0.5"]


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    code = cli.main(list(argv))
    return code, capsys.readouterr().err


def _pem(tmp_path: Path, name: str) -> str:
    path = tmp_path / name
    path.write_bytes(PEM)
    return str(path)


@pytest.mark.parametrize("command", [["route", "hi"], ["plan", "hi"], ["models"]])
@pytest.mark.parametrize("flag", ["--tls-ca", "--tls-cert", "--tls-key"])
def test_a_missing_tls_file_is_one_line_naming_the_flag_and_file(
    command: list[str], flag: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flags = {
        "--tls-ca": _pem(tmp_path, "ca.pem"),
        "--tls-cert": _pem(tmp_path, "client.pem"),
        "--tls-key": _pem(tmp_path, "client.key"),
    }
    flags[flag] = "/nonexistent.pem"
    argv = [*command, *NOWHERE, *(part for item in flags.items() for part in item)]
    code, err = _run(capsys, *argv)
    assert code == 2
    assert err == (
        f"quorum {command[0]}: {flag}: cannot read /nonexistent.pem (No such file or directory)\n"
    )


def test_a_tls_file_that_is_not_pem_or_not_a_file_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    code, err = _run(capsys, "route", "hi", *NOWHERE, "--tls-ca", str(text))
    assert (code, err) == (2, f"quorum route: --tls-ca: {text} is not a PEM file\n")
    code, err = _run(capsys, "models", *NOWHERE, "--tls-ca", str(tmp_path))
    assert code == 2
    assert err.startswith(f"quorum models: --tls-ca: cannot read {tmp_path} (")
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize("command", [["route", "hi"], ["plan", "hi"], ["models"]])
def test_a_client_certificate_without_a_ca_is_refused_not_sent_in_plaintext(
    command: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_call(*args: object, **kwargs: object) -> None:
        raise AssertionError("a client was made")

    monkeypatch.setattr("quorum.client.QuorumClient.__init__", no_call)
    cert, key = _pem(tmp_path, "client.pem"), _pem(tmp_path, "client.key")
    code, err = _run(capsys, *command, *NOWHERE, "--tls-cert", cert, "--tls-key", key)
    assert code == 2
    assert err.startswith(f"quorum {command[0]}: --tls-cert and --tls-key need --tls-ca")
    assert "plaintext" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize(
    ("given", "missing"), [("--tls-cert", "--tls-key"), ("--tls-key", "--tls-cert")]
)
def test_a_client_certificate_needs_its_key_and_the_reverse(
    given: str, missing: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ca = _pem(tmp_path, "ca.pem")
    for tls in ([given, _pem(tmp_path, "x.pem")], ["--tls-ca", ca, given, ca]):
        code, err = _run(capsys, "route", "hi", *NOWHERE, *tls)
        assert code == 2
        assert err == (
            f"quorum route: {given} needs {missing}: mutual TLS takes the certificate and its key\n"
        )


def test_tls_credentials_from_the_flags(tmp_path: Path) -> None:
    import argparse

    import grpc

    ca, cert, key = (_pem(tmp_path, name) for name in ("ca.pem", "client.pem", "client.key"))
    for tls_ca, tls_cert, tls_key in ((ca, None, None), (ca, cert, key)):
        flags = argparse.Namespace(tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key)
        assert isinstance(cli._tls_credentials(flags), grpc.ChannelCredentials)
    none = argparse.Namespace(tls_ca=None, tls_cert=None, tls_key=None)
    assert cli._tls_credentials(none) is None  # plaintext only when no TLS flag is given


@pytest.mark.parametrize("command", [["route", "hi"], ["plan", "hi"], ["models"], ["stats"]])
@pytest.mark.parametrize("timeout", ["0", "-1", "nan", "inf", "soon"])
def test_timeout_must_be_a_positive_number_of_seconds(
    command: list[str], timeout: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main([*command, "--timeout", timeout])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usage: quorum {command[0]} ")
    assert f"quorum {command[0]}: error: argument --timeout: " in err


def test_unknown_flags_are_reported_by_the_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    for command in (["route", "hi"], ["plan", "hi"], ["models"], ["check-config", "x.yaml"]):
        with pytest.raises(SystemExit) as info:
            cli.main([*command, "--bogus"])
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith(f"usage: quorum {command[0]} "), err
        assert err.endswith(f"quorum {command[0]}: error: unrecognized arguments: --bogus\n")
    with pytest.raises(SystemExit):  # before a subcommand: the top level's
        cli.main(["--bogus", "models"])
    assert capsys.readouterr().err.startswith("usage: quorum [-h]")


def test_address_help_shows_the_default(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("QUORUM_ADDRESS", raising=False)
    for command in ("route", "plan", "models"):
        with pytest.raises(SystemExit):
            cli.main([command, "--help"])
        out = " ".join(capsys.readouterr().out.split())
        assert "--address HOST:PORT the server's gRPC address (default $QUORUM_ADDRESS or " in out
        assert f"or {cli.DEFAULT_ADDRESS})" in out
    monkeypatch.setenv("QUORUM_ADDRESS", "quorum.internal:443")
    args = cli.build_parser().parse_args(["route", "hi"])
    assert args.address == "quorum.internal:443"


def test_router_help_lists_report(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["router", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "{train,eval,report,export-log}" in out
    assert "report " in out and "cheaper tier" in out
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    top = " ".join(capsys.readouterr().out.split())
    assert "router train or evaluate the learned router; report on shadow evaluations" in top


def test_router_commands_reach_their_own_parsers(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["router", "train", "--help"]) == 0  # the learned router's own help
    assert "--quality-target" in capsys.readouterr().out
    assert cli.main(["router", "report", "--help"]) == 0
    assert "--min-samples" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        cli.main(["router", "bogus"])
    assert info.value.code == 2
    assert "invalid choice: 'bogus'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flag", "address", "problem"),
    [
        ("--address", "127.0.0.1:99999", "port 99999 is not within 0-65535"),
        ("--address", "nowhere", "expected HOST:PORT, e.g. [::]:50051"),
        ("--http-address", "127.0.0.1:70000", "port 70000 is not within 0-65535"),
        ("--metrics-address", "localhost", "expected HOST:PORT, e.g. [::]:9090"),
    ],
)
def test_serve_checks_its_addresses_as_the_config_does(
    flag: str,
    address: str,
    problem: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # --address 127.0.0.1:99999 used to serve on port 34463 (99999 mod 65536).
    def no_server(*args: object, **kwargs: object) -> None:
        raise AssertionError("a server was made")

    monkeypatch.setattr("quorum.server.app.create_server", no_server)
    code, err = _run(capsys, "serve", flag, address)
    assert (code, err) == (2, f"quorum serve: {flag} {address!r}: {problem}\n")


@pytest.mark.parametrize("command", [["route", "hi"], ["plan", "hi"], ["models"]])
@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("", "expected HOST:PORT, e.g. localhost:50051"),
        ("localhost", "expected HOST:PORT, e.g. localhost:50051"),
        ("localhost:99999", "port 99999 is not within 1-65535"),
        ("localhost:0", "port 0 is not within 1-65535"),
        ("dns:///", "expected dns:[//DNS-SERVER/]HOST:PORT"),
        ("unix:", "nothing after unix:"),
    ],
)
def test_a_client_address_that_names_no_server_is_one_line(
    command: list[str],
    address: str,
    problem: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # An empty --address used to reach gRPC and come back as UNKNOWN with gRPC core's trace.
    def no_call(*args: object, **kwargs: object) -> None:
        raise AssertionError("a client was made")

    monkeypatch.setattr("quorum.client.QuorumClient.__init__", no_call)
    code, err = _run(capsys, *command, "--address", address)
    assert (code, err) == (2, f"quorum {command[0]}: --address {address!r}: {problem}\n")


@pytest.mark.parametrize(
    "address",
    ["localhost:50051", "[::1]:50051", "dns:///quorum-headless.quorum.svc:50051", "unix:/run/q"],
)
def test_client_addresses_grpc_resolves_are_taken(address: str) -> None:
    from quorum.server.cli_args import target_problem

    assert target_problem(address, example=cli.DEFAULT_ADDRESS) is None


def test_stats_checks_its_metrics_address(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run(capsys, "stats", "--metrics-address", "localhost")
    assert (code, err) == (
        2,
        "quorum stats: --metrics-address 'localhost': expected HOST:PORT, e.g. localhost:9090\n",
    )

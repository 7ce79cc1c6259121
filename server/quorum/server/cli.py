"""The ``quorum`` command line.

quorum serve [--config FILE] [--address HOST:PORT] [--http-address HOST:PORT]
             [--metrics-address HOST:PORT]
quorum stats [--metrics-address HOST:PORT] [--json]
quorum demo
quorum route "prompt" [--address A] [--strategy S] [--priority P] [--agent A] [--json]
quorum plan "prompt"  [same options]
quorum models [--address A] [--json]
quorum check-config FILE
quorum router {train,eval,report} ...
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from quorum.server.cli_args import (
    file_name,
    finite_number,
    host_port_problem,
    target_problem,
    utf8_text,
    whole_at_least,
    whole_within,
)

# Nothing here imports grpc when the module loads (the config and the errors do): every
# command first tells gRPC core to keep its own log lines to itself (see main).
if TYPE_CHECKING:
    import grpc
    from google.protobuf.message import Message

    from quorum.client import QuorumClient, QuorumError
    from quorum.route.v1.types_pb2 import RouteRequest
    from quorum.server.config import Config
    from quorum.server.errors import ListenError

DEFAULT_ADDRESS = "localhost:50051"
_STRATEGIES = ("auto", "single", "cascade", "consensus_majority", "consensus_judge")
_PRIORITIES = ("latency", "balanced", "quality", "cost")
# ``quorum router`` commands: train and eval in quorum.server.learned.cli, report in
# quorum.server.report (each parses its own options; these are what the help lists).
_ROUTER_COMMANDS = {
    "train": "train the learned router and write its artifact",
    "eval": "evaluate a router on a JSONL file, per source",
    "report": "which task types could move to a cheaper tier, from the decision log's shadow "
    "evaluations",
    "export-log": "write a decision log kept in a Redis stream as JSON lines",
}


class FlagError(Exception):
    """A command-line flag the command cannot use (e.g. a TLS file it cannot read): one
    line naming the flag, exit status 2."""


# At most this many ``serve --workers``: each is a whole server process, and one per core
# is the most that helps (more only share the cores and multiply the memory).
MAX_WORKERS = 64


class _Subcommand(argparse.ArgumentParser):
    """A subcommand's parser that reports unknown arguments itself, with its own usage.

    argparse hands a subcommand's unknown arguments back to the top-level parser, which
    would print ``quorum``'s usage for ``quorum route hi --bogus`` instead of ``route``'s.
    """

    def parse_known_args(self, *args: Any, **kwargs: Any) -> tuple[Any, list[str]]:
        namespace, extras = super().parse_known_args(*args, **kwargs)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace, extras


def _load(path: str | None) -> Config:
    """``--config``'s file, else ``$QUORUM_CONFIG``'s, else the embedded default; a
    ``$QUORUM_CONFIG`` set but empty (``QUORUM_CONFIG=$UNSET``) is a :class:`FlagError`,
    as an empty ``--config`` is a usage error: neither silently serves the default."""
    from quorum.server.config import default_config, load_config

    if path is None:
        path = os.environ.get("QUORUM_CONFIG")
        if path == "":
            raise FlagError(
                "$QUORUM_CONFIG is set but empty (is a shell variable unset?): set it to a "
                "config file, or unset it to serve the embedded default"
            )
    return load_config(path) if path else default_config()


def _listen_address(flag: str, address: str | None, example: str) -> None:
    """Refuse a serve flag's ``HOST:PORT`` the config would refuse: :class:`FlagError`."""
    if address is None:
        return
    from pydantic import TypeAdapter, ValidationError

    from quorum.server.config import HostPort

    try:
        TypeAdapter(HostPort).validate_python(address)
    except ValidationError as exc:
        error = exc.errors()[0]
        problem = str(error["ctx"]["error"]) if error["type"] == "value_error" else ""
        problem = problem or f"expected HOST:PORT, e.g. {example}"
        raise FlagError(f"{flag} {address!r}: {problem}") from None


def _stopped_before_serving(signum: int, frame: object) -> None:
    raise SystemExit(0)


# The serve flags that set a listen address, by the config key they override.
_ADDRESS_FLAGS = {
    "server.address": ("--address", "address"),
    "server.http_address": ("--http-address", "http_address"),
    "observability.metrics_address": ("--metrics-address", "metrics_address"),
}


def _named_by_flag(error: ListenError, args: argparse.Namespace) -> str:
    """A listen error naming the flag when the address came from one, else its key."""
    flag, attribute = _ADDRESS_FLAGS.get(error.key, (error.key, ""))
    name = flag if attribute and getattr(args, attribute, None) else error.key
    return f"{name}: {error.problem}"


def _cmd_serve(args: argparse.Namespace) -> int:
    # Until the server installs its own handlers, a stop asked for before anything was
    # served is a clean exit, not death by the signal's default action.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _stopped_before_serving)
    from quorum.server.app import serve
    from quorum.server.errors import ConfigError, ListenError
    from quorum.server.observability.logs import configure_logging

    # Checked as the config checks its own addresses (a port past 65535 would wrap).
    for flag, address, example in (
        ("--address", args.address, "[::]:50051"),
        ("--http-address", args.http_address, "[::]:8080"),
        ("--metrics-address", getattr(args, "metrics_address", None), "[::]:9090"),
    ):
        _listen_address(flag, address, example)
    try:
        config = _load(args.config)
    except ConfigError as exc:
        print(exc.message, file=sys.stderr)
        return 2
    configure_logging(config.server.log_level)
    if args.http_address:
        server = config.server.model_copy(update={"http_address": args.http_address})
        config = config.model_copy(update={"server": server})
    if args.workers > 1:
        from quorum.server.guardrails import budgets_configured
        from quorum.server.workers import supervise

        if budgets_configured(config) and not config.state.redis_url:
            print(
                f"state.redis_url: spend limits with --workers {args.workers} need shared "
                f"state; without it each worker would allow the whole budget "
                f"({args.workers} times the limit)",
                file=sys.stderr,
            )
            return 2
        problems = _worker_problems(config)
        if problems:  # refused once here, not by every worker as it starts
            print(ConfigError(problems).message, file=sys.stderr)
            return 2
        metrics_address = getattr(args, "metrics_address", None)
        return supervise(config, args.address, args.workers, metrics_address=metrics_address)
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is optional off Linux
        pass
    serving = False

    def ready() -> None:
        nonlocal serving
        serving = True

    try:
        return asyncio.run(
            serve(config, args.address, metrics_address=args.metrics_address, on_ready=ready)
        )
    except ConfigError as exc:
        print(exc.message, file=sys.stderr)
        return 2
    except ListenError as exc:  # an address it cannot listen on, as with --workers
        print(f"quorum serve: {_named_by_flag(exc, args)}", file=sys.stderr)
        return 2
    except OSError as exc:
        if serving:  # it failed while stopping, e.g. a write it could not do
            import structlog

            structlog.get_logger("quorum.cli").error(
                "stop_failed", error=str(exc) or type(exc).__name__
            )
            return 1
        print(f"quorum serve: {exc}", file=sys.stderr)
        return 2


def _cmd_stats(args: argparse.Namespace) -> int:
    from quorum.server.stats import run

    problem = host_port_problem(args.metrics_address, example="localhost:9090")
    if problem is not None:
        raise FlagError(f"--metrics-address {problem}")
    code, text = run(args.metrics_address, json_output=args.json, timeout_s=args.timeout)
    print(text, file=sys.stderr if code else sys.stdout)
    if code and args.json:  # /metrics could not be read: the error, as JSON, on stdout
        _print_json_error("UNAVAILABLE", text.removeprefix("quorum stats: "))
    return code


def _cmd_check_config(args: argparse.Namespace) -> int:
    from quorum.server.catalog import build_catalog
    from quorum.server.classify.build import check_learned
    from quorum.server.config import load_config
    from quorum.server.errors import ConfigError

    try:
        config = load_config(args.file)
    except ConfigError as exc:
        print(exc.message, file=sys.stderr)
        return 1
    catalog = build_catalog(config)
    try:  # what serve builds from the file: the learned router, from its artifact
        check_learned(config)
    except ConfigError as exc:
        print(exc.message, file=sys.stderr)
        return 1
    # What depends on the server's environment (keys, token variables, TLS files, the
    # tracing packages, the decision log's directory) may differ here: warnings, each
    # saying that serve would refuse it.
    for problem in _environment_problems(config):
        print(f"warning: {problem} (serve refuses to start without it)", file=sys.stderr)
    print(
        f"{args.file}: ok — {len(config.providers)} providers, {len(config.models)} models, "
        f"tiers {' < '.join(catalog.tiers)}, baseline {catalog.baseline.name}"
    )
    return 0


def _worker_problems(config: Config) -> list[str]:
    """What each worker would refuse as it starts, checked once by the supervisor before
    any starts (so it is said once, not by every worker): the learned router's setup and
    what serve needs from its environment (see :func:`_environment_problems`)."""
    from quorum.server.classify.build import check_learned

    return _problems_of([lambda: check_learned(config), *_environment_checks(config)])


def _decision_log_checks(config: Config) -> list[Callable[[], object]]:
    decisions = config.decisions
    if decisions.sink != "file" or not decisions.path:
        return []
    from quorum.server.decisions import check_log_path

    log_path = decisions.path
    return [lambda: check_log_path(log_path)]


def _problems_of(checks: Sequence[Callable[[], object]]) -> list[str]:
    """The problems of every check that raises :class:`ConfigError`."""
    from quorum.server.errors import ConfigError

    problems: list[str] = []
    for check in checks:
        try:
            check()
        except ConfigError as exc:
            problems.extend(exc.problems)
    return problems


def _environment_problems(config: Config) -> list[str]:
    """What serve would refuse in this environment: provider keys and tenant token
    variables unset, TLS files unreadable, tracing packages missing, a decision log file
    that cannot be written."""
    return _problems_of(_environment_checks(config))


def _environment_checks(config: Config) -> list[Callable[[], object]]:
    """The checks of :func:`_environment_problems`, each raising :class:`ConfigError`."""
    from quorum.server.config import resolve_secrets
    from quorum.server.service.auth import hash_key, token_digests

    checks: list[Callable[[], object]] = [
        lambda: resolve_secrets(config),
        lambda: token_digests(config),
        lambda: hash_key(config),
    ]
    checks.extend(_decision_log_checks(config))
    if config.server.tls is not None:
        from quorum.server.service.tls import server_credentials

        tls = config.server.tls
        checks.append(lambda: server_credentials(tls))
    if config.observability.tracing is not None:
        from quorum.server.observability.tracing import require_packages

        checks.append(require_packages)
    return checks


def _connection_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--address",
        default=os.environ.get("QUORUM_ADDRESS", DEFAULT_ADDRESS),
        metavar="HOST:PORT",
        help=f"the server's gRPC address (default $QUORUM_ADDRESS or {DEFAULT_ADDRESS})",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("QUORUM_TOKEN", ""),
        help="bearer token (default $QUORUM_TOKEN)",
    )
    parser.add_argument(
        "--tls-ca", metavar="FILE", help="CA certificate (PEM) to verify the server (enables TLS)"
    )
    parser.add_argument(
        "--tls-cert", metavar="FILE", help="client certificate, for mutual TLS (with --tls-key)"
    )
    parser.add_argument(
        "--tls-key", metavar="FILE", help="client private key, for mutual TLS (with --tls-cert)"
    )


def _read_pem(flag: str, path: str) -> bytes:
    """The PEM file given to ``flag``; :class:`FlagError` when it cannot be read or is not PEM."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise FlagError(f"{flag}: cannot read {path} ({exc.strerror or exc})") from None
    if b"-----BEGIN" not in data:
        raise FlagError(f"{flag}: {path} is not a PEM file")
    return data


def _tls_credentials(args: argparse.Namespace) -> grpc.ChannelCredentials | None:
    """Channel credentials from the TLS flags, or None without ``--tls-ca`` (plaintext).

    A client certificate without its key (or the reverse), or either without ``--tls-ca``,
    is refused rather than ignored: the call would otherwise go out in plaintext.
    """
    import grpc

    ca, cert, key = args.tls_ca, args.tls_cert, args.tls_key
    if bool(cert) != bool(key):
        given, missing = ("--tls-cert", "--tls-key") if cert else ("--tls-key", "--tls-cert")
        raise FlagError(f"{given} needs {missing}: mutual TLS takes the certificate and its key")
    if cert and not ca:
        raise FlagError(
            "--tls-cert and --tls-key need --tls-ca, the CA that verifies the server: "
            "without it the call would go out in plaintext"
        )
    if not ca:
        return None
    root = _read_pem("--tls-ca", ca)
    chain = _read_pem("--tls-cert", cert) if cert else None
    private_key = _read_pem("--tls-key", key) if key else None
    return grpc.ssl_channel_credentials(
        root_certificates=root, private_key=private_key, certificate_chain=chain
    )


def _client(args: argparse.Namespace) -> QuorumClient:
    """A client for the server named by the connection flags; :class:`FlagError` for TLS
    flags it cannot use."""
    problem = target_problem(args.address, example=DEFAULT_ADDRESS)
    if problem is not None:
        raise FlagError(f"--address {problem}")
    import grpc

    from quorum.client import QuorumClient

    if any(not " " <= c <= "~" for c in args.token):
        # gRPC would refuse it as "INTERNAL: Invalid metadata", which reads as the server's.
        raise FlagError("--token (or $QUORUM_TOKEN) must be printable ASCII without newlines")
    metadata = [("authorization", f"Bearer {args.token}")] if args.token else []
    credentials = _tls_credentials(args)
    channel = grpc.secure_channel(args.address, credentials) if credentials else None
    return QuorumClient(args.address, channel=channel, timeout=args.timeout, metadata=metadata)


def _hints_args(parser: argparse.ArgumentParser) -> None:
    # utf8_text: a byte that is not UTF-8 is refused naming the argument, not a traceback
    parser.add_argument("prompt", type=utf8_text, help="the user message")
    _connection_args(parser)
    parser.add_argument(
        "--strategy",
        choices=_STRATEGIES,
        default="auto",
        help="how to answer: one model (single), cheapest tier first escalating when the "
        "quality gate fails (cascade), several models reconciled by vote (consensus_majority) "
        "or by a judge (consensus_judge); default auto, the planner chooses",
    )
    parser.add_argument(
        "--priority",
        choices=_PRIORITIES,
        default="balanced",
        help="what comes first: latency (fast cheap tiers), balanced (tier by difficulty, the "
        "default), quality (capable tiers) or cost (cheapest acceptable answer)",
    )
    hints = (
        ("--agent", "NAME", "an agent of the server's config; default: the classifier decides"),
        ("--task", "TASK", 'the task type, e.g. "code", "math"; default: the classifier decides'),
        (
            "--model",
            "MODEL",
            "force this model (a configured model name); failover stays within equivalent models",
        ),
        (
            "--tier",
            "TIER",
            "start from this tier (a configured tier name), then more capable tiers, then "
            "cheaper ones",
        ),
        ("--use-case", "NAME", "a use-case policy of the server's config, e.g. chat"),
    )
    for flag, metavar, text in hints:
        parser.add_argument(flag, type=utf8_text, default="", metavar=metavar, help=text)
    parser.add_argument("--max-cost", type=float, default=None, help="cost ceiling in USD")
    parser.add_argument(
        "--timeout", type=_seconds, default=30.0, help="deadline in seconds (default 30)"
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help='print the response as protobuf JSON (an error as a JSON object {"error": ...})',
    )


def _request_from_args(args: argparse.Namespace) -> RouteRequest:
    from quorum.client import build_request
    from quorum.route.v1 import types_pb2 as pb

    hints = pb.RoutingHints(
        strategy=pb.Strategy.Value("STRATEGY_" + args.strategy.upper()),
        priority=pb.Priority.Value("PRIORITY_" + args.priority.upper()),
        agent=args.agent,
        task=args.task,
        model=args.model,
        tier=args.tier,
        use_case=args.use_case,
    )
    if args.max_cost is not None:
        hints.max_cost_usd = args.max_cost
    return build_request(args.prompt, hints=hints)


def _cmd_route_or_plan(args: argparse.Namespace) -> int:
    from google.protobuf import json_format

    from quorum.client import QuorumError
    from quorum.server import render

    request = _request_from_args(args)
    with _client(args) as client:
        try:
            response: Message
            if args.command == "route":
                routed = client.route(request)
                response, text = routed, render.route_response(routed)
            else:
                planned = client.plan(request)
                response, text = planned, render.plan_response(planned)
        except QuorumError as exc:
            _print_error(exc, as_json=args.json)
            return 1
    if args.json:
        print(json_format.MessageToJson(response, preserving_proto_field_name=True))
    else:
        print(text)
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from google.protobuf import json_format

    from quorum.client import QuorumError
    from quorum.server import render

    with _client(args) as client:
        try:
            response = client.list_models()
        except QuorumError as exc:
            _print_error(exc, as_json=args.json)
            return 1
    if args.json:
        print(json_format.MessageToJson(response, preserving_proto_field_name=True))
    else:
        print(render.models(response))
    return 0


def _print_error(exc: QuorumError, *, as_json: bool) -> None:
    """A failed call's error: as text on stderr, and with ``--json`` also as a JSON object
    on stdout (:func:`_print_json_error`), where a script reads the answer."""
    from google.protobuf import json_format

    from quorum.server import render

    print(render.error(exc), file=sys.stderr)
    if not as_json:
        return
    detail: dict[str, Any] = {
        "domain": exc.domain,
        "metadata": exc.metadata,
        "retry_after_s": exc.retry_after_s,
        "attempts": [
            json_format.MessageToDict(a, preserving_proto_field_name=True) for a in exc.attempts
        ],
    }
    if exc.plan is not None:
        detail["plan"] = json_format.MessageToDict(exc.plan, preserving_proto_field_name=True)
    violations = [{"field": v.field, "description": v.description} for v in exc.field_violations]
    _print_json_error(exc.code.name, exc.message, exc.reason, violations, **detail)


def _print_json_error(
    code: str,
    message: str,
    reason: str = "",
    field_violations: Sequence[dict[str, str]] = (),
    **detail: Any,
) -> None:
    """``{"error": {"code", "message", "reason", "field_violations", ...}}`` on stdout:
    ``code`` is a gRPC status name (``INVALID_ARGUMENT`` for a flag the command refused,
    ``UNAVAILABLE`` for a server it could not reach)."""
    import json

    error = {
        "code": code,
        "message": message,
        "reason": reason,
        "field_violations": list(field_violations),
        **detail,
    }
    print(json.dumps({"error": error}, indent=2, ensure_ascii=False))


def _cmd_demo(args: argparse.Namespace) -> int:
    from quorum.server.demo import run_demo

    return asyncio.run(run_demo(concurrency=args.concurrency))


_positive_int = whole_at_least(1)
_MAX_TIMEOUT_S = 366 * 86400.0  # the client's limit (quorum.client.MAX_TIMEOUT_S)
_seconds = finite_number(
    lambda v: 0 < v <= _MAX_TIMEOUT_S,
    f"a number of seconds above 0, at most {_MAX_TIMEOUT_S:.0f}",
)


def _run_router(command: str, argv: Sequence[str]) -> int:
    """``quorum router COMMAND ...``: each command parses its own options."""
    if command == "report":
        from quorum.server.report import main as report_main

        return report_main(argv)
    if command == "export-log":
        from quorum.server.log_export import main as export_main

        return export_main(argv)
    from quorum.server.learned.cli import main as router_main

    code: int = router_main([command, *argv])
    return code


def _cmd_router(args: argparse.Namespace) -> int:
    return _run_router(args.router_command, args.rest)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="quorum", description="Quorum LLM router")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Subcommand)

    serve = sub.add_parser("serve", help="run the gRPC server")
    serve.add_argument(
        "--config",
        type=file_name,
        metavar="FILE",
        help="YAML config (default: $QUORUM_CONFIG or embedded)",
    )
    serve.add_argument("--address", help="listen address, default from config ([::]:50051)")
    serve.add_argument(
        "--http-address",
        metavar="HOST:PORT",
        help="also serve the OpenAI-compatible HTTP API here (config server.http_address)",
    )
    serve.add_argument(
        "--metrics-address",
        metavar="HOST:PORT",
        help="serve Prometheus metrics at /metrics here (config observability.metrics_address)",
    )
    serve.add_argument(
        "--workers",
        type=whole_within(1, MAX_WORKERS, " (one per core is the most that helps)"),
        default=1,
        metavar="N",
        help="run N server processes on one port (SO_REUSEPORT) under a supervisor; "
        f"1 to {MAX_WORKERS}, at most one per core helps (default 1)",
    )
    serve.set_defaults(func=_cmd_serve)

    stats = sub.add_parser("stats", help="show a running server's live numbers from /metrics")
    stats.add_argument(
        "--metrics-address",
        default=os.environ.get("QUORUM_METRICS_ADDRESS", "localhost:9090"),
        metavar="HOST:PORT",
        help="the server's metrics endpoint (default $QUORUM_METRICS_ADDRESS or localhost:9090)",
    )
    stats.add_argument(
        "--timeout", type=_seconds, default=5.0, help="seconds to wait for /metrics (default 5)"
    )
    stats.add_argument(
        "--json",
        action="store_true",
        help='print the numbers as JSON (an error as a JSON object {"error": ...})',
    )
    stats.set_defaults(func=_cmd_stats)

    demo = sub.add_parser("demo", help="run a server on the embedded default and a workload")
    demo.add_argument(
        "--concurrency",
        type=_positive_int,
        default=4,
        metavar="N",
        help="requests of the workload in flight at once, at least 1 (default 4)",
    )
    demo.set_defaults(func=_cmd_demo)

    for name, text in (
        ("route", "route a prompt and print the account"),
        ("plan", "show what Route would do, without calling a model"),
    ):
        p = sub.add_parser(name, help=text)
        _hints_args(p)
        p.set_defaults(func=_cmd_route_or_plan)

    models = sub.add_parser("models", help="list the server's models")
    _connection_args(models)
    models.add_argument(
        "--timeout", type=_seconds, default=10.0, help="deadline in seconds (default 10)"
    )
    models.add_argument(
        "--json",
        action="store_true",
        help='print the response as protobuf JSON (an error as a JSON object {"error": ...})',
    )
    models.set_defaults(func=_cmd_models)

    check = sub.add_parser(
        "check-config",
        help="validate a config file",
        description="Validate a config file as serve reads it: its keys and values, the "
        "catalog it builds and the learned router it loads. Each problem is named by its key; "
        "any is exit status 1. What depends on the server's environment (a provider key or "
        "tenant token variable unset, a TLS file that cannot be read, the tracing packages "
        "not installed, a decision log that cannot be written) may differ where serve runs: "
        "it is a warning here (exit status 0), and serve refuses to start without it.",
    )
    check.add_argument("file", type=file_name, help="the YAML config file")
    check.set_defaults(func=_cmd_check_config)

    router = sub.add_parser(
        "router",
        help="train or evaluate the learned router; report on shadow evaluations",
        description="The learned router and the shadow evaluations of live traffic. "
        "`quorum router COMMAND --help` shows a command's options.",
    )
    commands = router.add_subparsers(
        dest="router_command", required=True, metavar="{" + ",".join(_ROUTER_COMMANDS) + "}"
    )
    for name, text in _ROUTER_COMMANDS.items():
        # Only listed here: main() hands `quorum router COMMAND ...` to the command itself.
        command = commands.add_parser(name, help=text, description=text, add_help=False)
        command.add_argument("rest", nargs=argparse.REMAINDER)
        command.set_defaults(func=_cmd_router)
    return parser


def _quiet_grpc_core() -> None:
    """Keep gRPC core's own log lines (``E1204 ... dns_resolver.cc:554] ...``) off every
    command's stderr: a client command reports its failures once, as one line; serve logs
    JSON lines only, and names an address it cannot listen on itself (gRPC core would add
    ``E1205 ... add_port.cc:83] ...``, or ``I1205 ... chttp2_transport.cc ... Got goaway``
    when a connection reaches its maximum age). Worker processes inherit it. gRPC reads
    ``GRPC_VERBOSITY`` when it is imported, so this must run first; a user's own
    ``GRPC_VERBOSITY`` or ``GRPC_TRACE`` is left alone."""
    if "grpc" in sys.modules or "GRPC_VERBOSITY" in os.environ or "GRPC_TRACE" in os.environ:
        return
    os.environ["GRPC_VERBOSITY"] = "NONE"


def _stdout_closed() -> int:
    """What a command does when whatever read its standard output went away (``quorum
    router export-log ... | head -1``): it stops quietly, with the status a program that
    SIGPIPE stopped has (128 + 13 = 141), as ``cat`` in the same pipe would. Standard
    output is pointed at /dev/null first (the recipe of the Python docs on SIGPIPE):
    Python flushes it on exit, which would fail again, with a message."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # a stdout without a descriptor (a test's capture)
        pass
    return 141


def main(argv: Sequence[str] | None = None) -> int:
    try:
        code = _main(list(sys.argv[1:] if argv is None else argv))
        sys.stdout.flush()  # a pipe closed early fails here, not as Python exits
    except BrokenPipeError:
        return _stdout_closed()
    return code


def _main(argv: list[str]) -> int:
    if len(argv) > 1 and argv[0] == "router" and argv[1] in _ROUTER_COMMANDS:
        return _run_router(argv[1], argv[2:])
    args = build_parser().parse_args(argv)
    _quiet_grpc_core()
    try:
        result: int = args.func(args)
    except FlagError as exc:
        print(f"quorum {args.command}: {exc}", file=sys.stderr)
        if getattr(args, "json", False):
            _print_json_error("INVALID_ARGUMENT", str(exc))
        return 2
    return result


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

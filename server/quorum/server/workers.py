"""``quorum serve --workers N``: N server processes on one port, under one supervisor.

One Python process serves on one core. To use more, the supervisor (the process the
command started) runs N workers, each a complete server bound to the same address
with ``SO_REUSEPORT``: the kernel spreads incoming *connections* over them (an
HTTP/2 connection, and so every RPC on it, stays with the worker that accepted it;
clients with several connections spread their calls).

The supervisor:

* starts each worker as ``python -m quorum.server.workers`` and hands it the loaded
  config (pickled over its stdin: the child never re-reads or re-validates the file);
* restarts a worker that dies, after a short pause; a worker that dies within
  :data:`STARTUP_S` of starting (a port it cannot bind, a bad key) stops them all and
  the command exits 1 — restarting would only fail again;
* on SIGTERM or SIGINT forwards SIGTERM to every worker, each drains as a single
  server does (health NOT_SERVING, in-flight RPCs get the grace period), and exits 0
  once all have exited 0.

The OpenAI-compatible HTTP front door (``server.http_address``) is shared the same way:
every worker listens on it with ``SO_REUSEPORT``.

Per-worker ports: a metrics address ``HOST:P`` becomes ``HOST:P+i`` for worker ``i``
(each worker has its own counters; scrape them all).
"""

from __future__ import annotations

import asyncio
import os
import pickle
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from types import FrameType

import structlog

from quorum.server.config import Config
from quorum.server.values import value_type

log = structlog.get_logger("quorum.workers")

STARTUP_S = 3.0  # a first worker that dies sooner than this after starting is fatal
RESTART_PAUSE_S = 0.5  # before a restart; doubled for each quick death in a row
MAX_RESTART_PAUSE_S = 30.0
POLL_S = 0.1
STOP_MARGIN_S = 10.0  # beyond the grace period, before stragglers are killed


@value_type
class WorkerSpec:
    """Everything one worker needs, handed over by the supervisor."""

    config: Config
    address: str | None
    metrics_address: str | None
    index: int
    supervisor: int  # the supervisor's pid: a worker whose supervisor is gone stops


@dataclass(slots=True)
class _Worker:
    index: int
    proc: subprocess.Popen[bytes]
    started: float = field(default_factory=time.monotonic)
    restarted: bool = False  # a replacement, not one of the first workers
    quick_deaths: int = 0  # deaths in a row within STARTUP_S of starting


def _port_of(address: str) -> str:
    return address.rpartition(":")[2]


def _metrics_for(address: str | None, index: int) -> str | None:
    if not address:
        return None
    host, _, port = address.rpartition(":")
    return f"{host}:{int(port) + index}"


def check_address(address: str) -> str | None:
    """Why ``address`` cannot be shared by workers, or None when it can."""
    port = _port_of(address)
    if not port.isdigit() or int(port) == 0:
        return f"--workers needs a fixed port to share, not {address!r}"
    return _port_taken(address)


def _port_taken(address: str) -> str | None:
    """Why ``address`` is in use already (by another server, perhaps another ``serve
    --workers``, which SO_REUSEPORT would otherwise let share it), or None when free."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:  # without SO_REUSEPORT: any listener already there makes this fail
            probe.bind((host if host not in ("", "*") else "", int(port)))
        except OSError as exc:
            return f"cannot listen on {address}: {exc.strerror or exc}"
    return None


def _spawn(spec: WorkerSpec) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "quorum.server.workers"],
        stdin=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdin is not None
    proc.stdin.write(pickle.dumps(spec))
    proc.stdin.close()
    return proc


def supervise(
    config: Config,
    address: str | None,
    count: int,
    *,
    metrics_address: str | None = None,
) -> int:
    """Run ``count`` workers on ``address`` until SIGTERM/SIGINT; the exit code."""
    address = address or config.server.address
    problem = check_address(address)
    if problem is not None:
        print(f"quorum serve: {problem}", file=sys.stderr)
        return 2
    http_address = config.server.http_address
    problem = check_address(http_address) if http_address else None
    if problem is not None:
        print(f"quorum serve: {problem} (server.http_address)", file=sys.stderr)
        return 2
    metrics_address = metrics_address or config.observability.metrics_address
    stop_signal: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop_signal.append(signum)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        return _run(config, address, count, metrics_address, stop_signal)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _run(
    config: Config,
    address: str,
    count: int,
    metrics_address: str | None,
    stop_signal: list[int],
) -> int:
    def start(index: int, *, restarted: bool = False, quick_deaths: int = 0) -> _Worker:
        spec = WorkerSpec(config, address, _metrics_for(metrics_address, index), index, os.getpid())
        return _Worker(index, _spawn(spec), restarted=restarted, quick_deaths=quick_deaths)

    workers = [start(i) for i in range(count)]
    log.info(
        "workers_started",
        address=address,
        workers=count,
        pids=[w.proc.pid for w in workers],
    )
    code = 0
    due: dict[int, tuple[float, int]] = {}  # worker -> (restart at, quick deaths in a row)
    while not stop_signal:
        time.sleep(POLL_S)
        now = time.monotonic()
        for i, worker in enumerate(workers):
            if stop_signal:
                break
            if i in due:
                at, quick = due[i]
                if now >= at:
                    del due[i]
                    workers[i] = start(i, restarted=True, quick_deaths=quick)
                    log.info("worker_restarted", worker=i, pid=workers[i].proc.pid)
                continue
            exit_code = worker.proc.poll()
            if exit_code is None:
                continue
            lived = now - worker.started
            log.warning(
                "worker_exited", worker=i, pid=worker.proc.pid, code=exit_code, lived_s=lived
            )
            if lived < STARTUP_S and not worker.restarted:
                # A first worker that cannot start (a bad address, a config the worker
                # refuses): restarting would fail the same way.
                log.error("workers_failing", worker=i, code=exit_code)
                stop_signal.append(signal.SIGTERM)
                code = 1
                break
            # A worker that crashed (a poison request, an out-of-memory kill) is restarted
            # while the others serve, after a pause that doubles for each quick death in
            # a row, so a crash loop neither spins nor takes the healthy workers down.
            quick = worker.quick_deaths + 1 if lived < STARTUP_S else 0
            pause = min(MAX_RESTART_PAUSE_S, RESTART_PAUSE_S * 2**quick)
            due[i] = (now + pause, quick)
    live = [w for i, w in enumerate(workers) if i not in due]
    return _stop(live, config.server.grace_period_s + STOP_MARGIN_S, code)


def _stop(workers: list[_Worker], timeout_s: float, code: int) -> int:
    """SIGTERM every live worker, wait for them to drain, kill stragglers."""
    log.info("workers_draining", workers=len(workers))
    for worker in workers:
        if worker.proc.poll() is None:
            worker.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for worker in workers:
        try:
            exit_code = worker.proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.error("worker_killed", worker=worker.index, pid=worker.proc.pid)
            worker.proc.kill()
            exit_code = worker.proc.wait()
        # -SIGTERM: stopped before it had installed its handlers, so with nothing to drain.
        if exit_code not in (0, -signal.SIGTERM) and code == 0:
            code = 1
    log.info("workers_stopped", code=code)
    return code


def _stop_with_supervisor(supervisor: int) -> None:
    """Ask the kernel for SIGTERM (a drain) when the supervisor dies, however it dies."""
    if sys.platform == "linux":
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGTERM))
    if os.getppid() != supervisor:  # it died before prctl took effect
        sys.exit(0)


def _worker_main() -> int:
    """A worker: read the spec from stdin and serve with SO_REUSEPORT until told to stop."""
    from quorum.server.app import serve
    from quorum.server.errors import ConfigError
    from quorum.server.observability.logs import configure_logging

    spec: WorkerSpec = pickle.loads(sys.stdin.buffer.read())  # from our supervisor
    _stop_with_supervisor(spec.supervisor)
    configure_logging(spec.config.server.log_level)
    structlog.contextvars.bind_contextvars(worker=spec.index)
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is optional off Linux
        pass
    try:
        return asyncio.run(
            serve(
                spec.config,
                spec.address,
                metrics_address=spec.metrics_address,
                reuse_port=True,
            )
        )
    except ConfigError as exc:
        print(exc.message, file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"quorum serve (worker {spec.index}): {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(_worker_main())

"""``quorum serve --workers N``: N server processes on one port, under one supervisor.

One Python process serves on one core. To use more, the supervisor (the process the
command started) runs N workers, each a complete server bound to the same address
with ``SO_REUSEPORT``: the kernel spreads incoming *connections* over them (an
HTTP/2 connection, and so every RPC on it, stays with the worker that accepted it;
clients with several connections spread their calls).

Before any worker starts, the command refuses (exit 2, one message, as serve without
``--workers`` would) what every worker would refuse: an address already in use, a
metrics port taken, a provider key or token variable unset, a TLS file it cannot read,
a learned router it cannot build (see ``cli._worker_problems``).

The supervisor:

* starts each worker as ``python -m quorum.server.workers`` and hands it the loaded
  config (pickled over its stdin: the child never re-reads or re-validates the file),
  and the write end of a pipe on which the worker reports, with one byte, that it is
  *ready*: its ports are bound and it serves;
* judges start-up by that report, not by the clock (a worker may need many seconds to
  embed its examples or load its models on a busy machine): one of the first workers
  that exits before it was ready (a port it cannot bind, examples it cannot embed)
  stops them all, and the command exits as serve without ``--workers`` would: 2 when
  the worker refused to start (it prints why), 1 for any other death — restarting would
  only fail again;
* restarts a worker that dies after it was ready (a poison request, an out-of-memory
  kill), while the others serve, after a pause: :data:`RESTART_PAUSE_S`, doubled for
  each death in a row of a worker that had not served :data:`STABLE_S` (a replacement
  that dies before it is ready counts too), at most :data:`MAX_RESTART_PAUSE_S` — so a
  crash loop neither spins nor takes the healthy workers down;
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

RESTART_PAUSE_S = 0.5  # before a restart; doubled for each quick death in a row
MAX_RESTART_PAUSE_S = 30.0
STABLE_S = 10.0  # a worker that served this long before it died starts a new count
POLL_S = 0.1
STOP_MARGIN_S = 10.0  # beyond the grace period, before stragglers are killed
READY = b"R"  # what a worker writes on its ready pipe once it serves


@value_type
class WorkerSpec:
    """Everything one worker needs, handed over by the supervisor."""

    config: Config
    address: str | None
    metrics_address: str | None
    index: int
    supervisor: int  # the supervisor's pid: a worker whose supervisor is gone stops
    ready_fd: int  # the write end of the ready pipe, inherited: one byte once it serves


@dataclass(slots=True)
class _Worker:
    index: int
    proc: subprocess.Popen[bytes]
    ready_fd: int  # the read end of its ready pipe (non-blocking); -1 once closed
    started: float = field(default_factory=time.monotonic)
    ready_at: float | None = None  # when it reported ready
    restarted: bool = False  # a replacement, not one of the first workers
    quick_deaths: int = 0  # deaths in a row, before this one, without serving STABLE_S

    def poll_ready(self) -> bool:
        """Whether the worker has reported ready (reads its pipe without waiting)."""
        if self.ready_at is None and self.ready_fd >= 0:
            try:
                data = os.read(self.ready_fd, 1)
            except BlockingIOError:  # nothing yet
                return False
            if data:
                self.ready_at = time.monotonic()
            self.close()  # a byte, or the end of the pipe: it will say nothing more
        return self.ready_at is not None

    def close(self) -> None:
        if self.ready_fd >= 0:
            os.close(self.ready_fd)
            self.ready_fd = -1


@value_type
class Verdict:
    """What the supervisor does about a worker that exited."""

    fatal_code: int | None  # stop every worker and exit with this; None: restart it
    quick_deaths: int  # the replacement's count of quick deaths in a row
    pause_s: float  # before the restart


def judge_exit(
    exit_code: int, *, served_s: float | None, restarted: bool, quick_deaths: int
) -> Verdict:
    """The verdict on a worker that exited with ``exit_code``: ``served_s`` is how long
    it served after it reported ready (None: it never did), ``restarted`` whether it was
    a replacement, ``quick_deaths`` its own count.

    One of the first workers that never got ready failed to start: the command stops,
    with 2 when the worker refused to start (what serve without ``--workers`` exits with
    for a bad key or a port it cannot bind), else 1. Any other death is restarted, after
    a pause that doubles for each death in a row without STABLE_S of serving.
    """
    if served_s is None and not restarted:
        return Verdict(2 if exit_code == 2 else 1, quick_deaths, 0.0)
    quick = 0 if served_s is not None and served_s >= STABLE_S else quick_deaths + 1
    return Verdict(None, quick, restart_pause(quick))


def restart_pause(quick_deaths: int) -> float:
    """The pause before a restart after ``quick_deaths`` quick deaths in a row."""
    doublings = min(quick_deaths, 16)  # past MAX_RESTART_PAUSE_S already; no overflow
    return min(MAX_RESTART_PAUSE_S, RESTART_PAUSE_S * 2.0**doublings)


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


def check_metrics_address(address: str, count: int) -> str | None:
    """Why ``count`` workers cannot serve metrics from ``address`` (worker ``i`` on its
    port plus ``i``), or None when they can: checked before any worker starts, so a port
    taken is said once."""
    port = _port_of(address)
    if not port.isdigit() or int(port) == 0:
        return f"--workers needs a fixed metrics port (worker i serves port+i), not {address!r}"
    last = int(port) + count - 1
    if last > 65535:
        return (
            f"--workers {count} needs metrics ports up to {last} "
            f"({address!r} plus {count - 1}), past 65535"
        )
    for index in range(count):
        where = _metrics_for(address, index)
        assert where is not None
        problem = _port_taken(where)
        if problem is not None:
            return f"{problem} (the metrics port of worker {index})"
    return None


def _port_taken(address: str) -> str | None:
    """Why ``address`` is in use already (by another server, perhaps another ``serve
    --workers``, which SO_REUSEPORT would otherwise let share it), or None when free."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # SO_REUSEADDR as the servers set it (connections in TIME_WAIT do not stop them),
        # without SO_REUSEPORT: any listener already there makes this fail.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host if host not in ("", "*") else "", int(port)))
        except OSError as exc:
            return f"cannot listen on {address}: {exc.strerror or exc}"
    return None


def _spawn(
    config: Config, address: str, metrics_address: str | None, index: int
) -> tuple[subprocess.Popen[bytes], int]:
    """Start worker ``index``; the process and the read end of its ready pipe."""
    read_fd, write_fd = os.pipe()
    try:
        spec = WorkerSpec(
            config, address, _metrics_for(metrics_address, index), index, os.getpid(), write_fd
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "quorum.server.workers"],
            stdin=subprocess.PIPE,
            pass_fds=(write_fd,),
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)  # the worker's now: the pipe ends when the worker does
    os.set_blocking(read_fd, False)
    assert proc.stdin is not None
    try:
        proc.stdin.write(pickle.dumps(spec))
        proc.stdin.close()
    except BrokenPipeError:  # it died at once: seen as an exit before it was ready
        pass
    return proc, read_fd


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
    problem = check_metrics_address(metrics_address, count) if metrics_address else None
    if problem is not None:
        print(f"quorum serve: {problem}", file=sys.stderr)
        return 2
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
        proc, ready_fd = _spawn(config, address, metrics_address, index)
        return _Worker(index, proc, ready_fd, restarted=restarted, quick_deaths=quick_deaths)

    workers = [start(i) for i in range(count)]
    log.info(
        "workers_started",
        address=address,
        workers=count,
        pids=[w.proc.pid for w in workers],
    )
    code = 0
    due: dict[int, tuple[float, int]] = {}  # worker -> (restart at, quick deaths in a row)
    try:
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
                was_ready = worker.ready_at is not None
                exit_code = worker.proc.poll()
                # Read after poll: a worker that reported ready and then died is seen ready.
                if worker.poll_ready() and not was_ready and exit_code is None:
                    log.info(
                        "worker_ready",
                        worker=i,
                        pid=worker.proc.pid,
                        start_s=round(now - worker.started, 3),
                    )
                if exit_code is None:
                    continue
                worker.close()
                served = now - worker.ready_at if worker.ready_at is not None else None
                log.warning(
                    "worker_exited",
                    worker=i,
                    pid=worker.proc.pid,
                    code=exit_code,
                    ready=served is not None,
                    lived_s=round(now - worker.started, 3),
                )
                verdict = judge_exit(
                    exit_code,
                    served_s=served,
                    restarted=worker.restarted,
                    quick_deaths=worker.quick_deaths,
                )
                if verdict.fatal_code is not None:
                    # One of the first workers could not start (a port it cannot bind,
                    # examples it cannot embed): restarting would fail the same way.
                    log.error("workers_failing", worker=i, code=exit_code)
                    stop_signal.append(signal.SIGTERM)
                    code = verdict.fatal_code
                    break
                # Restarted while the others serve, after a pause that doubles for each
                # quick death in a row: a crash loop neither spins nor takes them down.
                due[i] = (now + verdict.pause_s, verdict.quick_deaths)
        live = [w for i, w in enumerate(workers) if i not in due]
        return _stop(live, config.server.grace_period_s + STOP_MARGIN_S, code)
    finally:
        for worker in workers:
            worker.close()


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


def _report_ready(fd: int) -> None:
    """Tell the supervisor this worker serves: one byte on the ready pipe, then close it."""
    try:
        os.write(fd, READY)
    except OSError:  # the supervisor is gone: the parent-death signal stops this worker
        pass
    finally:
        os.close(fd)


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
                on_ready=lambda: _report_ready(spec.ready_fd),
            )
        )
    except ConfigError as exc:  # as serve without --workers: refused, exit 2
        print(exc.message, file=sys.stderr)
        return 2
    except OSError as exc:  # an address it cannot listen on, as without --workers
        print(f"quorum serve (worker {spec.index}): {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(_worker_main())

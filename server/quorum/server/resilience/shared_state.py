"""Breaker state and Retry-After cool-downs shared across replicas through Redis.

With ``state.redis_url`` set, a breaker opened by one replica is open for all, and a
provider cooled down by a 429 on one replica is cooled down on all. Redis keeps the
state in the key layout of pybreaker's ``CircuitRedisStorage`` (``<namespace>:<key>:
pybreaker:{state,fail_counter,success_counter,opened_at}``), so that class reads and
writes the same breakers.

What differs from using ``CircuitRedisStorage`` directly is *when* Redis is talked to.
``CircuitRedisStorage`` makes a blocking round trip on every read, and pybreaker reads
the state on every call — on the event loop. Here each breaker's storage is a
:class:`LocalView`: reads are plain attribute reads; writes update the view and are
recorded. A background task, every ``refresh_interval_s`` (sooner after a state change
or a cool-down), hands the recorded writes to a worker thread, which sends them and
reads back every breaker and cool-down in one pipelined round trip. Back on the loop
the replies are adopted and the writes made meanwhile re-applied on top, so nothing
local is lost, and listeners hear about states changed elsewhere.

A half-open breaker lets one probe through across all replicas, not one per replica:
the probe needs the breaker's *probe lease*, a Redis key (``<namespace>:<key>:quorum:
probe``) set to the replica's id. A replica that wants to probe asks for the lease at
its next refresh (woken at once), for a short while (four refreshes, at least 1 s), and
refuses calls meanwhile, as it would while its own probe is out; once its probe goes
out it holds the lease for the breaker's reset timeout (at least 1 s), renewed by the
refresh once half of that is used, so a probe slower than the reset timeout keeps it
until it ends. Refused, it does not ask again until
the other replica's lease runs out (or a refresh shows the breaker closed), so Redis is
not asked on every call. The replica that got the lease probes. A probe that closes the
breaker, or is cancelled, gives the lease back; one that opens it again keeps it for the
breaker's reset timeout, so that no replica that has not yet heard of the reopening
probes again before the next half-open. A replica that shuts down gives its leases
back; one that dies mid-probe holds the lease until it expires.

If Redis is unreachable the replica keeps working on its local view (logged once, at
warning), keeps its writes, and resyncs when Redis returns: its writes are replayed and
a breaker missing from Redis (a restarted, empty Redis) is written back in full. While
Redis is unreachable each replica may probe on its own. No request waits for Redis or
fails because of it.
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pybreaker
import redis
import structlog
from redis.backoff import NoBackoff
from redis.retry import Retry

from quorum.server.config import StateConfig
from quorum.server.values import value_type

log = structlog.get_logger("quorum.shared_state")

# SET key to ARGV[1] when it is greater than the current value (ARGV[2]: TTL in ms, if any).
_SET_IF_GREATER = """
local current = redis.call('GET', KEYS[1])
if (not current) or tonumber(current) < tonumber(ARGV[1]) then
  if ARGV[2] then
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  else
    redis.call('SET', KEYS[1], ARGV[1])
  end
end
return 0
"""

# Take the probe lease KEYS[1] for replica ARGV[1] for ARGV[2] ms: {1, 0} if it is (now)
# ours, else {0, the ms another replica still holds it}.
_CLAIM_PROBE = """
local holder = redis.call('GET', KEYS[1])
if (not holder) or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return {1, 0}
end
return {0, redis.call('PTTL', KEYS[1])}
"""

# Give the probe lease KEYS[1] back, if replica ARGV[1] still holds it: at once, or
# (ARGV[2] > 0) ARGV[2] ms from now.
_RELEASE_PROBE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  if tonumber(ARGV[2]) > 0 then
    return redis.call('PEXPIRE', KEYS[1], ARGV[2])
  end
  return redis.call('DEL', KEYS[1])
end
return 0
"""

Op = tuple[str, int | str]  # ("incr", n) ("reset", 0) ("sincr", n) ("sreset", 0) ...
_COUNTER_OPS = {"incr", "reset"}
_SUCCESS_OPS = {"sincr", "sreset"}


@value_type
class Remote:
    """One breaker as read back from Redis; ``state`` None when Redis has no record."""

    state: str | None
    fail_counter: int
    success_counter: int
    opened_at: int | None


def _compact(ops: list[Op], op: Op) -> None:
    """Append ``op``, folding it into what it supersedes so the list stays short."""
    kind, value = op
    if kind in ("incr", "sincr") and ops and ops[-1][0] == kind:
        ops[-1] = (kind, int(ops[-1][1]) + int(value))
        return
    if kind == "reset":
        ops[:] = [o for o in ops if o[0] not in _COUNTER_OPS]
    elif kind == "sreset":
        ops[:] = [o for o in ops if o[0] not in _SUCCESS_OPS]
    elif kind in ("state", "opened_at", "full"):
        ops[:] = [o for o in ops if o[0] != kind]
    ops.append(op)


class LocalView(pybreaker.CircuitBreakerStorage):
    """A breaker's storage: read locally, written locally and recorded for Redis."""

    def __init__(self, key: str, owner: SharedBreakerState) -> None:
        super().__init__(key)
        self.key = key
        self._owner = owner
        self._state = pybreaker.STATE_CLOSED
        self._counter = 0
        self._success = 0
        self._opened_at: datetime | None = None
        self.ops: list[Op] = []

    def _record(self, op: Op) -> bool:
        if self._owner.quiet:
            return False
        _compact(self.ops, op)
        return True

    @property
    def state(self) -> str:
        if self._owner._task is None:
            self._owner.start()  # no-op outside an event loop
        return self._state

    @state.setter
    def state(self, state: str) -> None:
        if self._owner.quiet or state == self._state:
            return
        self._state = state
        self._record(("state", state))
        self._owner.wake()

    def increment_counter(self) -> None:
        if self._record(("incr", 1)):
            self._counter += 1

    def reset_counter(self) -> None:
        if self._counter and self._record(("reset", 0)):
            self._counter = 0

    def increment_success_counter(self) -> None:
        if self._record(("sincr", 1)):
            self._success += 1

    def reset_success_counter(self) -> None:
        if self._success and self._record(("sreset", 0)):
            self._success = 0

    @property
    def counter(self) -> int:
        return self._counter

    @property
    def success_counter(self) -> int:
        return self._success

    @property
    def opened_at(self) -> datetime | None:
        return self._opened_at

    @opened_at.setter
    def opened_at(self, now: datetime) -> None:
        if self._owner.quiet:
            return
        self._opened_at = now
        self._record(("opened_at", int(calendar.timegm(now.timetuple()))))

    def take_ops(self) -> list[Op]:
        ops, self.ops = self.ops, []
        return ops

    def restore_ops(self, ops: list[Op]) -> None:
        """Put back writes that could not be sent, before any made since."""
        newer, self.ops = self.ops, []
        for op in [*ops, *newer]:
            _compact(self.ops, op)

    def request_full_write(self) -> None:
        _compact(self.ops, ("full", 0))

    def full_record(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "state": self._state,
            "fail_counter": self._counter,
            "success_counter": self._success,
        }
        if self._opened_at is not None:
            record["opened_at"] = int(calendar.timegm(self._opened_at.timetuple()))
        return record

    def adopt(self, remote: Remote) -> None:
        """Take Redis's view, then re-apply the writes made since it was read."""
        if remote.state is not None:
            self._state = remote.state
        self._counter = remote.fail_counter
        self._success = remote.success_counter
        if remote.opened_at is not None:
            local = self._opened_at
            if local is None or remote.opened_at > int(local.timestamp()):
                self._opened_at = datetime.fromtimestamp(remote.opened_at, UTC)
        for kind, value in self.ops:
            if kind == "incr":
                self._counter += int(value)
            elif kind == "reset":
                self._counter = 0
            elif kind == "sincr":
                self._success += int(value)
            elif kind == "sreset":
                self._success = 0
            elif kind == "state":
                self._state = str(value)


@value_type
class _Batch:
    """Writes taken from the local views for one round trip."""

    ops: dict[str, list[Op]]
    cooldowns: dict[str, float]
    full: dict[str, dict[str, Any]]
    claims: dict[str, float]  # probe leases wanted: key -> for how long (s)
    releases: dict[str, float]  # probe leases to give back: key -> in how long (s)


@dataclass(slots=True)
class _Reply:
    breakers: dict[str, Remote]
    cooldowns: dict[str, float]
    writes: int
    granted: frozenset[str] = frozenset()  # probe leases taken
    held_elsewhere: dict[str, float] = field(default_factory=dict)  # key -> seconds left
    round_trip_ms: float = 0.0


@dataclass(slots=True)
class SyncStats:
    """What keeping state shared costs: round trips off the loop, work on it."""

    cycles: int = 0
    failures: int = 0
    round_trip_ms_total: float = 0.0
    round_trip_ms_max: float = 0.0
    loop_ms_total: float = 0.0
    loop_ms_max: float = 0.0
    writes: int = 0

    def summary(self) -> dict[str, float]:
        ok = max(1, self.cycles - self.failures)
        return {
            "cycles": self.cycles,
            "failures": self.failures,
            "round_trip_ms_mean": self.round_trip_ms_total / ok,
            "round_trip_ms_max": self.round_trip_ms_max,
            "loop_ms_mean": self.loop_ms_total / max(1, self.cycles),
            "loop_ms_max": self.loop_ms_max,
            "writes": self.writes,
        }


class SharedBreakerState:
    """The Redis side of the breakers: local views, a background refresh, cool-downs."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        namespace: str = "quorum",
        refresh_interval_s: float = 0.25,
    ) -> None:
        self._redis = client
        self._namespace = namespace
        self._interval = refresh_interval_s
        self._views: dict[str, LocalView] = {}
        self._cooldowns: dict[str, float] = {}  # key -> until (epoch s), to publish
        self._subscribers: list[Callable[[Mapping[str, float]], None]] = []
        self._script = client.register_script(_SET_IF_GREATER)
        self._claim = client.register_script(_CLAIM_PROBE)
        self._release = client.register_script(_RELEASE_PROBE)
        self.replica_id = uuid.uuid4().hex
        self._leases: dict[str, float] = {}  # probe leases held: key -> until (monotonic)
        self._wanted: dict[str, float] = {}  # probe leases to ask for: key -> seconds
        self._releases: dict[str, float] = {}
        self._elsewhere: dict[str, float] = {}  # probe leases others hold: key -> until
        self._probes: dict[str, float] = {}
        self._sync_lock = asyncio.Lock()  # probes out: key -> how long a lease holds (s)
        # A lease asked for is held this long until its probe goes out, then for the
        # breaker's reset timeout.
        self.claim_s = max(1.0, 4 * refresh_interval_s)
        self.quiet = False
        self.degraded = False
        self.stats = SyncStats()
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    # ---- the SharedBackend interface (quorum.server.resilience.breakers) ---------------------

    def storage(self, key: str) -> pybreaker.CircuitBreakerStorage:
        view = self._views.get(key)
        if view is None:
            view = self._views[key] = LocalView(key, self)
        return view

    def publish_cooldown(self, key: str, until_epoch: float) -> None:
        if until_epoch > self._cooldowns.get(key, 0.0):
            self._cooldowns[key] = until_epoch
        self.wake()

    def subscribe(self, on_sync: Callable[[Mapping[str, float]], None]) -> None:
        self._subscribers.append(on_sync)
        self.start()

    def probe_lease(self, key: str) -> bool:
        """Whether this replica may send ``key``'s half-open probe now: it holds the
        lease, or Redis is unreachable. Otherwise the lease is asked for at once, for a
        short while (:attr:`claim_s`): a replica whose next call never comes must not
        keep the others waiting."""
        if self.degraded:
            return True
        now = time.monotonic()
        until = self._leases.get(key)
        if until is not None and now < until:
            return True
        if now < self._elsewhere.get(key, 0.0):
            return False  # asked already: another replica holds it this long
        self._wanted[key] = self.claim_s
        self.wake()
        return False

    def probe_started(self, key: str, hold_s: float) -> None:
        """The probe of ``key`` went out: hold its lease for up to ``hold_s``, renewed
        while the probe is out (a call may outlast the breaker's reset timeout)."""
        if key in self._leases:
            self._wanted[key] = self._probes[key] = hold_s
            self.wake()

    def probe_held_elsewhere(self, key: str) -> bool:
        """Whether another replica is known to hold ``key``'s probe lease now."""
        return not self.degraded and time.monotonic() < self._elsewhere.get(key, 0.0)

    def release_probe(self, key: str, after_s: float = 0.0) -> None:
        """The probe of ``key`` ended: give its lease back, ``after_s`` from now."""
        self._wanted.pop(key, None)
        self._probes.pop(key, None)
        if self._leases.pop(key, None) is not None:
            self._releases[key] = after_s
            self.wake()

    # ---- lifecycle ---------------------------------------------------------------

    def start(self) -> None:
        """Sync once now (blocking, at start-up only) and refresh in the background
        once an event loop runs."""
        if self._task is not None or self._closed:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # started on first use (see wake) from inside the loop
        if self.stats.cycles == 0:
            self._apply(self._exchange_or_none(self._take()))
        self._wake = asyncio.Event()
        self._task = loop.create_task(self._run(), name="quorum-shared-state")

    def wake(self) -> None:
        """Sync soon: a state changed or a cool-down began."""
        if self._task is None:
            self.start()
        if self._wake is not None:
            self._wake.set()

    async def close(self) -> None:
        """Stop refreshing, flush what is pending (best effort) and close the client."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for key in list(self._leases):  # a replica going away probes no more
            self.release_probe(key)
        with contextlib.suppress(Exception):
            await self.sync_once()
        await asyncio.to_thread(self._redis.close)

    async def _run(self) -> None:
        assert self._wake is not None
        while not self._closed:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval):
                    await self._wake.wait()
            if self.degraded:  # do not spin against an unreachable Redis
                await asyncio.sleep(self._interval)
            self._wake.clear()
            try:
                await self.sync_once()
            except Exception:  # a bug here must not stop the refresh
                log.exception("shared_state_sync_error")

    # ---- one refresh -------------------------------------------------------------

    def _key(self, key: str, field_name: str) -> str:
        return f"{self._namespace}:{key}:pybreaker:{field_name}"

    def _cooldown_key(self, key: str) -> str:
        return f"{self._namespace}:{key}:quorum:cooldown_until_ms"

    def _probe_key(self, key: str) -> str:
        return f"{self._namespace}:{key}:quorum:probe"

    def _take(self) -> _Batch:
        ops = {key: view.take_ops() for key, view in self._views.items()}
        cooldowns, self._cooldowns = self._cooldowns, {}
        full = {
            key: self._views[key].full_record()
            for key, key_ops in ops.items()
            if any(kind == "full" for kind, _ in key_ops)
        }
        claims, self._wanted = self._wanted, {}
        now = time.monotonic()
        for key, hold_s in self._probes.items():
            # Renewed once half of it is used: a slow probe keeps its lease till it ends.
            if key not in claims and self._leases.get(key, 0.0) - now < hold_s / 2:
                claims[key] = hold_s
        releases, self._releases = self._releases, {}
        return _Batch(ops, cooldowns, full, claims, releases)

    async def sync_once(self) -> bool:
        """Send recorded writes and adopt Redis's view; False when Redis is unreachable.

        One exchange at a time: two in worker threads at once could land in either order
        (a lease given back, then taken again by an older claim)."""
        async with self._sync_lock:
            batch = self._take()
            reply = await asyncio.to_thread(self._exchange_or_none, batch)
            return self._apply(reply)

    def _exchange_or_none(self, batch: _Batch) -> tuple[_Batch, _Reply | BaseException]:
        """Runs in a worker thread (or once at start-up): one pipelined round trip."""
        t0 = time.perf_counter()
        try:
            reply = self._exchange(batch)
        except (redis.RedisError, OSError) as exc:
            return batch, exc
        reply.round_trip_ms = (time.perf_counter() - t0) * 1000.0
        return batch, reply

    def _exchange(self, batch: _Batch) -> _Reply:
        pipe = self._redis.pipeline(transaction=False)
        writes = 0
        for key, key_ops in batch.ops.items():
            # A full write goes last: it then only fills in what the other writes left.
            for kind, value in sorted(key_ops, key=lambda op: op[0] == "full"):
                writes += 1
                if kind == "incr":
                    pipe.incrby(self._key(key, "fail_counter"), int(value))
                elif kind == "reset":
                    pipe.set(self._key(key, "fail_counter"), 0)
                elif kind == "sincr":
                    pipe.incrby(self._key(key, "success_counter"), int(value))
                elif kind == "sreset":
                    pipe.set(self._key(key, "success_counter"), 0)
                elif kind == "state":
                    pipe.set(self._key(key, "state"), str(value))
                elif kind == "opened_at":
                    self._script(keys=[self._key(key, "opened_at")], args=[value], client=pipe)
                elif kind == "full":
                    self._write_full(pipe, key, batch.full[key])
        now_ms = int(time.time() * 1000)
        for key, until in batch.cooldowns.items():
            until_ms = int(until * 1000)
            if until_ms > now_ms:
                writes += 1
                self._script(
                    keys=[self._cooldown_key(key)],
                    args=[until_ms, until_ms - now_ms],
                    client=pipe,
                )
        for key, after_s in batch.releases.items():
            writes += 1
            after_ms = max(0, int(after_s * 1000))
            self._release(
                keys=[self._probe_key(key)], args=[self.replica_id, after_ms], client=pipe
            )
        claimed: list[tuple[str, int]] = []  # key, index of its reply
        for key, ttl_s in batch.claims.items():
            writes += 1
            claimed.append((key, len(pipe)))
            ttl_ms = max(1, int(ttl_s * 1000))
            self._claim(keys=[self._probe_key(key)], args=[self.replica_id, ttl_ms], client=pipe)
        keys = list(self._views)
        for key in keys:
            pipe.mget(
                [
                    self._key(key, n)
                    for n in ("state", "fail_counter", "success_counter", "opened_at")
                ]
            )
        if keys:
            pipe.mget([self._cooldown_key(k) for k in keys])
        replies = pipe.execute()
        reads = replies[len(replies) - len(keys) - (1 if keys else 0) :]
        remote: dict[str, Remote] = {}
        for key, values in zip(keys, reads, strict=False):
            state, fails, successes, opened = values
            remote[key] = Remote(
                state=state.decode() if state is not None else None,
                fail_counter=int(fails or 0),
                success_counter=int(successes or 0),
                opened_at=int(opened) if opened else None,
            )
        remote_cooldowns: dict[str, float] = {}
        if keys:
            for key, until_ms in zip(keys, reads[-1], strict=True):
                if until_ms:
                    remote_cooldowns[key] = int(until_ms) / 1000.0
        granted = frozenset(key for key, at in claimed if int(replies[at][0]) == 1)
        elsewhere = {
            key: max(0, int(replies[at][1])) / 1000.0
            for key, at in claimed
            if int(replies[at][0]) != 1
        }
        return _Reply(remote, remote_cooldowns, writes, granted, elsewhere)

    def _write_full(self, pipe: Any, key: str, record: dict[str, Any]) -> None:
        """Write a breaker Redis had no record of, without overriding another replica's:
        an open breaker wins over a closed one, the latest opening wins, counters that
        exist are kept."""
        if record["state"] == pybreaker.STATE_CLOSED:
            pipe.setnx(self._key(key, "state"), record["state"])
        else:
            pipe.set(self._key(key, "state"), record["state"])
        pipe.setnx(self._key(key, "fail_counter"), record["fail_counter"])
        pipe.setnx(self._key(key, "success_counter"), record["success_counter"])
        if "opened_at" in record:
            self._script(
                keys=[self._key(key, "opened_at")], args=[record["opened_at"]], client=pipe
            )

    def _apply(self, outcome: tuple[_Batch, _Reply | BaseException]) -> bool:
        """On the loop: adopt a reply, or keep the writes for the next try."""
        t0 = time.perf_counter()
        batch, reply = outcome
        self.stats.cycles += 1
        if isinstance(reply, BaseException):
            self.stats.failures += 1
            for key, key_ops in batch.ops.items():
                self._views[key].restore_ops(key_ops)
            for key, until in batch.cooldowns.items():
                self._cooldowns[key] = max(until, self._cooldowns.get(key, 0.0))
            self._releases = {**batch.releases, **self._releases}  # claims are asked again
            if not self.degraded:
                self.degraded = True
                log.warning(
                    "shared_state_unavailable",
                    error=f"{type(reply).__name__}: {reply}",
                    effect="breakers and cool-downs continue on local state",
                )
            return False
        self.stats.writes += reply.writes
        self.stats.round_trip_ms_total += reply.round_trip_ms
        self.stats.round_trip_ms_max = max(self.stats.round_trip_ms_max, reply.round_trip_ms)
        if self.degraded:
            self.degraded = False
            log.warning("shared_state_restored", effect="breakers and cool-downs shared again")
        self._adopt_leases(batch, reply)
        with self.quiet_writes():
            for key, view in self._views.items():
                found = reply.breakers.get(key)
                if found is None or found.state is None:
                    view.request_full_write()  # Redis lost it (or never had it): write ours
                    continue
                view.adopt(found)
            for on_sync in self._subscribers:
                on_sync(reply.cooldowns)
        loop_ms = (time.perf_counter() - t0) * 1000.0
        self.stats.loop_ms_total += loop_ms
        self.stats.loop_ms_max = max(self.stats.loop_ms_max, loop_ms)
        return True

    def _adopt_leases(self, batch: _Batch, reply: _Reply) -> None:
        """Probe leases granted here, and how long others hold the ones refused."""
        now = time.monotonic()
        for key in reply.granted:
            # Ours a little less long than Redis's, so we never probe on an expired lease.
            self._leases[key] = now + 0.9 * batch.claims[key]
            self._elsewhere.pop(key, None)
        for key, left_s in reply.held_elsewhere.items():
            self._elsewhere[key] = now + left_s
        for key, remote in reply.breakers.items():
            if remote.state == pybreaker.STATE_CLOSED:
                self._elsewhere.pop(key, None)  # closed: the next opening starts afresh

    @contextlib.contextmanager
    def quiet_writes(self) -> Iterator[None]:
        """Storage writes pybreaker makes while noticing adopted states are not recorded."""
        self.quiet = True
        try:
            yield
        finally:
            self.quiet = False


def build_shared_state(config: StateConfig) -> SharedBreakerState | None:
    """The shared state for ``config``, or None without ``redis_url``."""
    if not config.redis_url:
        return None
    client = redis.Redis.from_url(
        config.redis_url,
        socket_timeout=config.redis_timeout_s,
        socket_connect_timeout=config.redis_timeout_s,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
    )
    return SharedBreakerState(
        client, namespace=config.namespace, refresh_interval_s=config.refresh_interval_s
    )

"""Circuit breakers per provider (or per model deployment): pybreaker, wrapped once.

pybreaker's ``call()`` does not await coroutines, so every upstream call runs as::

    with breakers.guard(key):
        await adapter.complete(request)

The guard refuses the call if the key is open, cooling down, or half-open with a probe
already out; when the call ends, its outcome is handed to pybreaker (``calling()``),
which counts an exception as a failure and opens the breaker at ``fail_max``. What
counts: 5xx, timeouts, connection errors and malformed bodies. What counts as the
provider answering (and so closes a half-open breaker): a 4xx other than 429, the
request's fault, not the provider's. What is no verdict at all: 429 (handled by a
cool-down instead), a timeout that the caller's short deadline caused, an adapter's own
bug, and cancellation (a hedge that lost, a caller that went away): such a call neither
resets the failure count nor closes a half-open breaker, whose next call is the probe
again.

A breaker key is a provider name, or ``provider/model_id`` for a deployment with a
breaker of its own (see :mod:`quorum.server.catalog`). Half-open lets exactly one probe
through; concurrent calls are refused until it ends. With shared state the probe is one
for all replicas: the replica must hold the breaker's probe lease (see
:mod:`quorum.server.resilience.shared_state`) and refuses calls until it has it. A 429
with Retry-After puts the key in a cool-down for that long; so does an account out of
quota or credit, for longer (the executor decides both). A call refused while the key
cools down says what started the cool-down: a 429, exhausted quota (perhaps a 400), or
another replica (shared cool-downs carry no cause).

States are readable as a frozen snapshot for the planner, reported to state listeners
(logged here) and to :class:`BreakerObserver` s. pybreaker itself moves an open breaker to
half-open only when the probe call starts; here the breaker counts as half-open as soon as
its reset timeout has passed, and that change is logged and reported the first time a
health read on the event loop (a request, a Plan, a guard) sees it. :meth:`Breakers.states`
reads every breaker's state without changing anything, from any thread: the metrics read it
when Prometheus scrapes, so the exported state never lags. While every
breaker is closed and nothing cools down, health does not change with time, so the
snapshot is kept until a breaker event (a failure, a state change, a cool-down, a
shared refresh) and every request reads the same one. With a
:class:`SharedBackend` (Redis, :mod:`quorum.server.resilience.shared_state`) breaker state and
cool-downs are shared across replicas; reads stay local either way.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, Protocol

import pybreaker
import structlog

from quorum.server.config import BreakerConfig
from quorum.server.domain import BreakerState
from quorum.server.errors import ProviderError, ProviderUnavailable
from quorum.server.values import value_type

MAX_COOLDOWN_S = 600.0  # the longest a Retry-After holds a deployment back
RATE_LIMITED = "a 429 (rate limited)"  # what a cool-down follows, unless told otherwise
_ELSEWHERE = "a rate limit or exhausted quota seen by another replica"

log = structlog.get_logger("quorum.breakers")

_STATES = {
    pybreaker.STATE_CLOSED: BreakerState.CLOSED,
    pybreaker.STATE_OPEN: BreakerState.OPEN,
    pybreaker.STATE_HALF_OPEN: BreakerState.HALF_OPEN,
}
# Lower is healthier: used to pick the best of several deployments.
_RANK = {
    BreakerState.CLOSED: 0,
    BreakerState.HALF_OPEN: 1,
    BreakerState.COOLING_DOWN: 2,
    BreakerState.OPEN: 3,
}


def _not_a_provider_fault(exc: BaseException) -> bool:
    """An outcome pybreaker should take as the provider answering (see ``_verdict``)."""
    return isinstance(exc, ProviderError) and not exc.counts_for_breaker


def _verdict(exc: BaseException | None) -> bool:
    """Whether a call that ended with ``exc`` tells its breaker anything: not when it
    was cancelled, nor for an error without a verdict (a 429, the caller's haste, an
    adapter bug). pybreaker takes every outcome it is handed as a failure or as a
    success, and a success resets the failure count and closes a half-open breaker."""
    if isinstance(exc, asyncio.CancelledError | GeneratorExit):
        return False
    return not isinstance(exc, ProviderError) or exc.breaker_verdict


@value_type
class ProviderHealth:
    """A breaker as the planner sees it."""

    state: BreakerState
    failure_count: int
    cooldown_remaining_s: float

    def better_than(self, other: ProviderHealth) -> bool:
        mine, theirs = _RANK[self.state], _RANK[other.state]
        if mine != theirs:
            return mine < theirs
        return self.cooldown_remaining_s < other.cooldown_remaining_s


StateListener = Callable[[str, BreakerState, BreakerState], None]


class BreakerObserver:
    """Receives everything the breakers see; subclass and override what you need.

    Every method runs on the event loop and must not block.
    """

    def state_changed(self, key: str, old: BreakerState, new: BreakerState) -> None:
        """A breaker moved between closed, open and half-open."""

    def call_succeeded(self, key: str) -> None:
        """A guarded call ended without a provider fault."""

    def call_failed(self, key: str, error: BaseException) -> None:
        """A guarded call failed with a fault that counts against the breaker."""

    def rejected(self, key: str, why: str) -> None:
        """A call was refused before it started: ``open``, ``half_open`` or ``cooling_down``."""

    def cooled_down(self, key: str, seconds: float) -> None:
        """A 429's Retry-After (or a shared one) holds calls for ``seconds``."""


class SharedBackend(Protocol):
    """State shared across replicas: breaker storage, cool-downs, a sync callback."""

    def storage(self, key: str) -> pybreaker.CircuitBreakerStorage:
        """The (local-view) storage for breaker ``key``."""
        ...

    def publish_cooldown(self, key: str, until_epoch: float) -> None:
        """Share a cool-down of ``key`` until the wall-clock time ``until_epoch``."""
        ...

    def subscribe(self, on_sync: Callable[[Mapping[str, float]], None]) -> None:
        """Call ``on_sync(cooldowns_until_epoch)`` after each refresh, on the loop."""
        ...

    def probe_lease(self, key: str) -> bool:
        """Whether this replica may probe half-open ``key`` now; if not, ask for the
        lease without waiting for it."""
        ...

    def probe_started(self, key: str, hold_s: float) -> None:
        """This replica's probe of ``key`` went out: hold the lease up to ``hold_s``."""
        ...

    def probe_held_elsewhere(self, key: str) -> bool:
        """Whether another replica is known to hold ``key``'s probe lease now."""
        ...

    def release_probe(self, key: str, after_s: float = 0.0) -> None:
        """This replica's probe of ``key`` ended; others may probe ``after_s`` from now."""
        ...


class _Listener(pybreaker.CircuitBreakerListener):
    def __init__(self, owner: Breakers) -> None:
        self._owner = owner

    def state_change(self, cb: Any, old_state: Any, new_state: Any) -> None:
        old = old_state.name if old_state is not None else pybreaker.STATE_CLOSED
        self._owner._on_change(cb.name, old, new_state.name)

    def failure(self, cb: Any, exc: BaseException) -> None:
        owner = self._owner
        owner._counted.add(cb.name)
        owner._changed()
        for observer in owner._observers:
            observer.call_failed(cb.name, exc)

    def success(self, cb: Any) -> None:
        owner = self._owner
        if cb.name in owner._counted:  # the success reset a failure count
            owner._counted.discard(cb.name)
            owner._changed()
        for observer in owner._observers:
            observer.call_succeeded(cb.name)


class Breakers:
    """One breaker per provider and per deployment that has its own, plus cool-downs."""

    def __init__(
        self,
        providers: Mapping[str, BreakerConfig],
        *,
        deployments: Mapping[str, str] | None = None,
        shared: SharedBackend | None = None,
        storage_factory: Callable[[str], pybreaker.CircuitBreakerStorage] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``deployments`` maps a deployment's breaker key to its provider, whose
        :class:`BreakerConfig` it uses."""
        self._clock = clock
        self._listeners: list[StateListener] = []
        self._observers: list[BreakerObserver] = []
        self._cooldown_until: dict[str, float] = {}
        self._cooldown_cause: dict[str, str] = {}  # what the current cool-down follows
        self._probing: set[str] = set()
        # The steady snapshot: valid while ``_version`` (bumped by every breaker event)
        # is unchanged. ``None`` with ``_unsteady_until`` in the future: some breaker's
        # health depends on the time now, so it is computed afresh on each read.
        self._version = 0
        self._steady: dict[str, ProviderHealth] | None = None
        self._steady_version = -1
        self._unsteady_until = 0.0
        self._counted: set[str] = set()
        # Breakers reported half-open (their reset timeout passed) while pybreaker still
        # holds them open: it moves them only when the probe call starts.
        self._seen_half_open: set[str] = set()
        self._snapshot: dict[str, ProviderHealth] = {}
        self._snapshot_version = -1
        self._shared = shared
        if shared is not None and storage_factory is None:
            storage_factory = shared.storage
        self._providers = tuple(providers)
        self._by_provider: dict[str, list[str]] = {name: [] for name in providers}
        self._scope = {name: cfg.scope for name, cfg in providers.items()}
        listener = _Listener(self)
        self._breakers: dict[str, pybreaker.CircuitBreaker] = {}
        keys = dict(providers)
        for key, provider in (deployments or {}).items():
            keys[key] = providers[provider]
            self._by_provider[provider].append(key)
        for key, cfg in keys.items():
            kwargs: dict[str, Any] = {}
            if storage_factory is not None:
                kwargs["state_storage"] = storage_factory(key)
            self._breakers[key] = pybreaker.CircuitBreaker(
                fail_max=cfg.fail_max,
                reset_timeout=cfg.reset_timeout_s,
                exclude=[_not_a_provider_fault],
                listeners=[listener],
                name=key,
                throw_new_error_on_trip=False,
                **kwargs,
            )
        if shared is not None:
            shared.subscribe(self._on_sync)

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(self._breakers)

    def add_listener(self, listener: StateListener) -> None:
        """Call ``listener(key, old, new)`` on every state change."""
        self._listeners.append(listener)

    def observe(self, observer: BreakerObserver) -> None:
        """Report every call outcome, rejection, cool-down and state change to ``observer``."""
        self._observers.append(observer)

    def _changed(self) -> None:
        self._version += 1

    def _steady_health(self) -> dict[str, ProviderHealth] | None:
        """Every key's health when none of it depends on the time, else ``None``."""
        if self._steady_version == self._version and (
            self._steady is not None or self._clock() < self._unsteady_until
        ):
            return self._steady
        version = self._version
        healths = {key: self._health_now(key) for key in self._breakers}
        steady = all(
            h.state is BreakerState.CLOSED and h.cooldown_remaining_s == 0 for h in healths.values()
        )
        self._steady = healths if steady else None
        self._steady_version = version
        self._unsteady_until = 0.0 if steady else self._clock() + 0.25
        return self._steady

    def _on_change(self, name: str, old: str, new: str) -> None:
        self._changed()
        old_state, new_state = _STATES.get(old, BreakerState.CLOSED), _STATES[new]
        if name in self._seen_half_open:
            # Already reported half-open: pybreaker's own open → half-open (the probe
            # starting) is no news, and whatever follows it leaves half-open.
            self._seen_half_open.discard(name)
            old_state = BreakerState.HALF_OPEN
        if old_state is new_state:
            return
        self._announce(name, old_state, new_state)

    def _announce(self, name: str, old: BreakerState, new: BreakerState) -> None:
        log.warning("breaker_state_changed", provider=name, old=old.value, new=new.value)
        for listener in self._listeners:
            listener(name, old, new)
        for observer in self._observers:
            observer.state_changed(name, old, new)

    def _observed(self, name: str, state: BreakerState) -> None:
        """Report the change pybreaker does not make itself: an open breaker whose reset
        timeout passed is half-open from then on (pybreaker moves it when the probe
        starts), and one a shared refresh shows reopened elsewhere is open again."""
        if state is BreakerState.HALF_OPEN:
            if name in self._seen_half_open:
                return
            if self._breakers[name].current_state != pybreaker.STATE_OPEN:
                return  # pybreaker's own half-open, already reported
            self._seen_half_open.add(name)
            self._changed()
            self._announce(name, BreakerState.OPEN, BreakerState.HALF_OPEN)
        elif state is BreakerState.OPEN and name in self._seen_half_open:
            self._seen_half_open.discard(name)
            self._changed()
            self._announce(name, BreakerState.HALF_OPEN, BreakerState.OPEN)

    def _on_sync(self, cooldowns: Mapping[str, float]) -> None:
        """After a shared refresh: adopt cool-downs and let pybreaker notice new states."""
        self._changed()  # counts and states may have changed elsewhere
        wall, now = time.time(), self._clock()
        for key, until_epoch in cooldowns.items():
            until = now + (until_epoch - wall)
            # Our own cool-downs come back too; only a longer one (set elsewhere) counts.
            if key in self._breakers and until > self._cooldown_until.get(key, 0.0) + 0.05:
                self._extend_cooldown(key, until, _ELSEWHERE, publish=False)
        for breaker in self._breakers.values():
            _ = breaker.state  # a state changed elsewhere notifies the listeners here

    def _effective_state(self, name: str) -> BreakerState:
        breaker = self._breakers[name]
        state = breaker.current_state
        if state == pybreaker.STATE_OPEN:
            opened_at = breaker._state_storage.opened_at
            if opened_at is not None:
                elapsed = time.time() - opened_at.timestamp()
                if elapsed >= breaker.reset_timeout:
                    return BreakerState.HALF_OPEN
            return BreakerState.OPEN
        return _STATES.get(state, BreakerState.CLOSED)

    def health(self, name: str) -> ProviderHealth:
        """The key's state now, cool-downs included."""
        steady = self._steady_health()
        if steady is not None:
            return steady[name]
        return self._health_now(name)

    def _health_now(self, name: str) -> ProviderHealth:
        """The key's health now, reporting a half-open breaker the first time it is seen
        (on the event loop only: see :meth:`_read_health`)."""
        health = self._read_health(name)
        if health.state is BreakerState.HALF_OPEN or name in self._seen_half_open:
            self._observed(name, health.state)
        return health

    def _read_health(self, name: str) -> ProviderHealth:
        """The key's health now; changes nothing, so any thread may call it."""
        remaining = max(0.0, self._cooldown_until.get(name, 0.0) - self._clock())
        state = self._effective_state(name)
        if remaining > 0 and state is BreakerState.CLOSED:
            state = BreakerState.COOLING_DOWN
        return ProviderHealth(state, int(self._breakers[name].fail_counter), remaining)

    def provider_health(self, provider: str) -> ProviderHealth:
        """A provider's health: its own breaker, or with breaker scope ``model`` the
        healthiest of its deployments' (the provider still serves through those)."""
        own = self.health(provider)
        if self._scope.get(provider) != "model" or not self._by_provider.get(provider):
            return own
        return best_health(self.health(k) for k in self._by_provider[provider])

    def deployment_health(self, keys: tuple[str, ...]) -> ProviderHealth:
        """The healthiest of several breakers: a model with deployments is as callable
        as its best deployment."""
        return best_health(self.health(k) for k in keys)

    def snapshot(self) -> Mapping[str, ProviderHealth]:
        """Every provider's health, then every deployment breaker's, for a planner snapshot
        (shared while the breakers are steady: read it, do not change it)."""
        if self._steady_health() is not None:
            if self._snapshot_version != self._version:
                self._snapshot = self._snapshot_of()
                self._snapshot_version = self._version
            return self._snapshot
        return self._snapshot_of()

    def _snapshot_of(self) -> dict[str, ProviderHealth]:
        out = {name: self.provider_health(name) for name in self._providers}
        for key in self._breakers:
            if key not in out:
                out[key] = self.health(key)
        return out

    def states(self) -> dict[str, BreakerState]:
        """Every provider's state, then every deployment breaker's, as :meth:`snapshot`
        has them (a half-open breaker is half-open once its reset timeout has passed,
        called or not). Reads only: safe from another thread, such as a metrics scrape,
        and reports nothing."""
        healths = {key: self._read_health(key) for key in self._breakers}
        out: dict[str, BreakerState] = {}
        for name in self._providers:
            own = self._by_provider.get(name)
            if self._scope.get(name) == "model" and own:
                out[name] = best_health(healths[k] for k in own).state
            else:
                out[name] = healths[name].state
        for key, health in healths.items():
            out.setdefault(key, health.state)
        return out

    def callable(self, name: str) -> bool:
        """Whether a call under ``name`` would be let through right now."""
        health = self.health(name)
        if health.cooldown_remaining_s > 0:
            return False
        if health.state is BreakerState.HALF_OPEN:
            if name in self._probing:
                return False
            return self._shared is None or not self._shared.probe_held_elsewhere(name)
        return health.state is BreakerState.CLOSED

    def cool_down(self, name: str, seconds: float, cause: str = RATE_LIMITED) -> None:
        """Hold calls to ``name`` for ``seconds`` (a 429's Retry-After, or how long the
        executor sets aside an account out of quota), at most :data:`MAX_COOLDOWN_S`: a
        huge or mistaken Retry-After must not retire a deployment until the next
        restart; one call after that time finds out.

        ``cause`` is what happened, as the refusals while it lasts say it ("cooling down
        for 12.0s after <cause>"): a caller told of a 429 that never happened looks
        for the wrong problem."""
        seconds = min(max(0.0, seconds), MAX_COOLDOWN_S)
        self._extend_cooldown(name, self._clock() + seconds, cause, publish=True)

    def _extend_cooldown(self, name: str, until: float, cause: str, *, publish: bool) -> None:
        if until <= self._cooldown_until.get(name, 0.0):
            return  # a longer cool-down, and its cause, stand
        self._cooldown_until[name] = until
        self._cooldown_cause[name] = cause
        self._changed()
        seconds = until - self._clock()
        log.info(
            "provider_cooling_down",
            provider=name,
            seconds=round(seconds, 3),
            cause=cause,
            source="here" if publish else "another replica",
        )
        for observer in self._observers:
            observer.cooled_down(name, seconds)
        if publish and self._shared is not None:
            self._shared.publish_cooldown(name, time.time() + seconds)

    def _reject(self, name: str, why: str, message: str) -> ProviderUnavailable:
        for observer in self._observers:
            observer.rejected(name, why)
        return ProviderUnavailable(message, provider=name, metadata={"breaker": why})

    def _record(self, name: str, exc: BaseException | None) -> None:
        """Hand pybreaker the outcome of a finished call under ``name``.

        If the breaker opened while the call ran (other calls failed), pybreaker refuses
        the outcome: the breaker's verdict stands until its reset timeout.
        """
        breaker = self._breakers[name]
        if (
            exc is None
            and breaker.fail_counter == 0
            and breaker.current_state == pybreaker.STATE_CLOSED
        ):
            # All pybreaker would do: reset a count that is zero, tell its listeners.
            for listener in breaker.listeners:
                listener.success(breaker)
            return
        traceback = exc.__traceback__ if exc is not None else None
        try:
            with breaker.calling():
                if exc is not None:
                    raise exc
        except pybreaker.CircuitBreakerError:
            pass
        except BaseException as raised:
            if raised is not exc:
                raise
        finally:
            if exc is not None:  # raising it here added frames of its own
                exc.__traceback__ = traceback

    def _may_probe(self, name: str) -> bool:
        """Whether this replica's probe of half-open ``name`` may go (it is the one)."""
        if self._shared is None:
            return True
        if not self._shared.probe_lease(name):
            return False
        # The lease is renewed while the probe is out; a replica that died mid-probe
        # delays the next one by at most this long.
        self._shared.probe_started(name, self._lease_hold_s(name))
        return True

    def _lease_hold_s(self, name: str) -> float:
        return max(1.0, self._breakers[name].reset_timeout)

    def _probe_ended(self, name: str, decided: bool) -> None:
        """The probe of ``name`` ended, with a verdict or (cancelled) without one."""
        self._probing.discard(name)
        if self._shared is not None:
            reopened = decided and self._breakers[name].current_state == pybreaker.STATE_OPEN
            # Reopened: the next probe is due after the reset timeout, on any replica.
            # Closed or cancelled: the lease is free at once.
            self._shared.release_probe(name, self._lease_hold_s(name) if reopened else 0.0)

    def guard(self, name: str) -> _Guard:
        """A ``with`` block under ``name``'s breaker; entering raises if it is not callable."""
        return _Guard(self, name)


class _Guard:
    """The ``with`` block of :meth:`Breakers.guard`: refuses or admits the call, then
    hands pybreaker the outcome (none for a cancelled call)."""

    __slots__ = ("_name", "_owner", "_probe")

    def __init__(self, owner: Breakers, name: str) -> None:
        self._owner = owner
        self._name = name
        self._probe = False

    def __enter__(self) -> None:
        owner, name = self._owner, self._name
        health = owner.health(name)
        if health.cooldown_remaining_s > 0:
            cause = owner._cooldown_cause.get(name, RATE_LIMITED)
            raise owner._reject(
                name,
                "cooling_down",
                f"{name}: cooling down for {health.cooldown_remaining_s:.1f}s after {cause}",
            )
        if health.state is BreakerState.OPEN:
            raise owner._reject(name, "open", f"{name}: circuit breaker open")
        if health.state is BreakerState.HALF_OPEN:
            if name in owner._probing:
                raise owner._reject(
                    name, "half_open", f"{name}: circuit breaker half-open, a probe is in flight"
                )
            if not owner._may_probe(name):
                raise owner._reject(
                    name, "half_open", f"{name}: circuit breaker half-open, another replica's turn"
                )
            owner._probing.add(name)
            self._probe = True

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        decided = _verdict(exc)
        try:
            if decided:
                self._owner._record(self._name, exc)
        finally:
            if self._probe:
                self._owner._probe_ended(self._name, decided)


def best_health(healths: Iterable[ProviderHealth]) -> ProviderHealth:
    """The healthiest of ``healths`` (closed first, then half-open, cooling, open)."""
    best: ProviderHealth | None = None
    for health in healths:
        if best is None or health.better_than(best):
            best = health
    return best if best is not None else ProviderHealth(BreakerState.CLOSED, 0, 0.0)

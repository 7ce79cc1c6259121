"""Admission control: at most so many requests in flight, overall and per tenant.

A RouteService RPC beyond either limit is refused at once with RESOURCE_EXHAUSTED and
a ``RetryInfo`` delay (``admission.retry_after_s``) instead of queueing: memory stays
bounded by the limit times the largest accepted request, and callers back off rather
than pile up. The overall limit defaults to ``server.max_concurrent_rpcs``. The gRPC
transport has no cap of its own (see ``app.create_server``): health checks are never
shed, and callers get the rich status rather than a bare one.

The counters are plain integers: the server runs on one event loop, and entering and
leaving never await.

A stream leaves when its work is over (:func:`work_done`: its answer or error is ready),
not when the caller has read the last of it: a caller that stops reading holds only its
own bounded backlog, never a place another request could use.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

from quorum.server.config import Config
from quorum.server.errors import ResourceExhausted
from quorum.server.observability.metrics import Metrics
from quorum.server.tenants import TenantPolicy


@dataclass(slots=True)
class Ticket:
    """One admitted request; release it exactly once (later calls do nothing)."""

    admission: Admission
    tenant: str
    released: bool = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.admission._leave(self.tenant)


class Admission:
    """In-flight counters and the limits they are held to."""

    def __init__(self, config: Config, metrics: Metrics) -> None:
        self.max_inflight = config.admission.max_inflight or config.server.max_concurrent_rpcs
        self.max_per_tenant = config.admission.max_inflight_per_tenant
        self.retry_after_s = config.admission.retry_after_s
        self.inflight = 0
        self._by_tenant: dict[str, int] = {}
        self._metrics = metrics
        metrics.track_inflight(lambda: self.inflight)

    def admit(self, tenant: TenantPolicy | None) -> Ticket:
        """Count a request in, or raise RESOURCE_EXHAUSTED if a limit is reached."""
        name = tenant.name if tenant is not None else ""
        if self.inflight >= self.max_inflight:
            self._metrics.shed("max_inflight")
            raise ResourceExhausted(
                f"server at its limit of {self.max_inflight} requests in flight; retry shortly",
                retry_after_s=self.retry_after_s,
                reason="OVERLOADED",
            )
        limit = tenant.max_inflight if tenant is not None else None
        limit = limit or self.max_per_tenant
        if tenant is not None and limit is not None and self._by_tenant.get(name, 0) >= limit:
            self._metrics.shed("tenant_max_inflight")
            raise ResourceExhausted(
                f"tenant {name} at its limit of {limit} requests in flight; retry shortly",
                retry_after_s=self.retry_after_s,
                reason="TENANT_CONCURRENCY_LIMIT",
                metadata={"tenant": name},
            )
        self.inflight += 1
        self._by_tenant[name] = self._by_tenant.get(name, 0) + 1
        return Ticket(self, name)

    def _leave(self, tenant: str) -> None:
        self.inflight -= 1
        left = self._by_tenant[tenant] - 1
        if left:
            self._by_tenant[tenant] = left
        else:
            del self._by_tenant[tenant]


_held: ContextVar[Ticket | None] = ContextVar("quorum_admission_ticket", default=None)


def hold(ticket: Ticket) -> None:
    """Make ``ticket`` the one :func:`work_done` releases in this request's context."""
    _held.set(ticket)


def work_done() -> None:
    """This request's model work is over and only the caller's reading is left: free its
    place (the ticket's later release does nothing)."""
    ticket = _held.get()
    if ticket is not None:
        ticket.release()

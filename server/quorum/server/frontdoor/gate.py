"""Authentication, admission, metrics and tracing around one HTTP request.

The same steps, through the same objects, as the gRPC interceptor
(:mod:`quorum.server.service.gateway`): the bearer token is checked by the router's
:class:`~quorum.server.tenants.Tenants`, the request is admitted by the server's one
:class:`~quorum.server.service.admission.Admission` (so HTTP and gRPC share the in-flight
limits), the handler runs as the tenant (:func:`~quorum.server.service.auth.acting_as`, which
the router's budgets and permissions read), and ``quorum_requests_total`` is counted with
the final status code under the same labels.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AbstractContextManager, asynccontextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from quorum.server.errors import QuorumError
from quorum.server.observability.metrics import close_record, open_record
from quorum.server.router import Router
from quorum.server.service.admission import Admission, Ticket, hold
from quorum.server.service.auth import acting_as
from quorum.server.tenants import TenantPolicy


@dataclass(slots=True)
class Served:
    """The outcome of one request, as the metrics label it (a gRPC code name)."""

    code: str = "OK"


class Gate:
    """Wraps each HTTP request the way the gRPC Gateway wraps each RPC."""

    def __init__(self, router: Router, admission: Admission | None) -> None:
        self._router = router
        self._admission = admission

    def authenticate(self, request: web.Request) -> TenantPolicy | None:
        """The tenant the ``Authorization`` header proves; None when auth is off."""
        return self._router.guardrails.tenants.authenticate(
            *request.headers.getall("Authorization", ())
        )

    def _span(self, method: str, request: web.Request) -> AbstractContextManager[Any]:
        tracing = self._router.tracing
        if tracing is None:
            return nullcontext()
        return tracing.rpc(method, [(k.lower(), v) for k, v in request.headers.items()])

    @asynccontextmanager
    async def serving(self, request: web.Request, method: str) -> AsyncIterator[Served]:
        """Authenticate, admit, run as the tenant and count the outcome.

        Raises the :class:`QuorumError` of a refused request (401, 429, ...); the body
        sets :attr:`Served.code` when it answers an error itself.
        """
        t0 = time.perf_counter()
        record, token = open_record()
        served = Served()
        ticket: Ticket | None = None
        try:
            with self._span(method, request):
                try:
                    tenant = self.authenticate(request)
                    record.tenant = tenant.name if tenant else record.tenant
                    if self._admission is not None:
                        ticket = self._admission.admit(tenant)
                        hold(ticket)
                    with acting_as(tenant):
                        yield served
                except QuorumError as exc:
                    served.code = exc.code.name
                    raise
                except asyncio.CancelledError:
                    served.code = "CANCELLED"
                    raise
                except Exception:
                    served.code = "INTERNAL"
                    raise
                finally:
                    metrics = self._router.metrics
                    metrics.request(
                        record.tenant or "_none", record.strategy, record.model, served.code
                    )
                    metrics.stage("total", time.perf_counter() - t0)
        finally:
            if ticket is not None:
                ticket.release()
            close_record(token)

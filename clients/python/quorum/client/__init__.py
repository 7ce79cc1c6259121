"""A small typed client for Quorum's RouteService, sync and async.

    from quorum.client import QuorumClient, user

    with QuorumClient("localhost:50051") as client:
        response = client.route([user("What is 2+2?")], timeout=10)
        print(response.content, response.model, response.cost_usd)

Errors come back as :class:`QuorumError` with the status code, the ``ErrorInfo``
reason, field violations, retry delay and the attempts the server made.
"""

from quorum.client._client import (
    MAX_TIMEOUT_S,
    AsyncQuorumClient,
    QuorumClient,
    build_request,
    user,
)
from quorum.client._errors import FieldViolation, QuorumError, error_from_rpc

__all__ = [
    "MAX_TIMEOUT_S",
    "AsyncQuorumClient",
    "FieldViolation",
    "QuorumClient",
    "QuorumError",
    "build_request",
    "error_from_rpc",
    "user",
]

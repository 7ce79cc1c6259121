"""The OpenAI-compatible front door: ``/v1/chat/completions`` and ``/v1/models`` over HTTP.

Teams that already speak the OpenAI API point their SDK at Quorum (``base_url=
"http://quorum:8080/v1"``) and get the same routing as the gRPC API, with Quorum's
account in ``x-quorum-*`` headers and a ``quorum`` field. See docs/openai-compatibility.md.

    app.py        routes, limits, the listener's start and drain
    body.py       the request body: Content-Encoding undone, size bounded, JSON parsed
    translate.py  OpenAI JSON ⇄ domain types, with the gRPC door's validation limits
    naming.py     the ``model`` naming scheme (``quorum:auto``, use cases, tiers, models)
    errors.py     QuorumError → OpenAI error body and HTTP status, in one place
    stream.py     the Router's events → a streamed completion
    sse.py        ``chat.completion.chunk`` framing
    account.py    the account as JSON and headers
"""

from quorum.server.frontdoor.app import HttpFrontDoor, build_app, parse_address

__all__ = ["HttpFrontDoor", "build_app", "parse_address"]

"""``quorum serve`` with extra gRPC server options, for trying options before they land.

    python -m bench._serve_options serve --config FILE --address ADDR

``QUORUM_BENCH_GRPC_OPTIONS`` holds a JSON list of ``[name, value]`` pairs appended to
:func:`quorum.server.app.server_options`. Used by :mod:`bench.overload` to measure gRPC
core's own limits on requests waiting to be taken by the server.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import quorum.server.app as app
from quorum.server.cli import main

_base = app.server_options


def server_options(config: Any, **kwargs: Any) -> list[tuple[str, int]]:
    extra = json.loads(os.environ.get("QUORUM_BENCH_GRPC_OPTIONS", "[]"))
    return _base(config, **kwargs) + [(str(k), int(v)) for k, v in extra]


app.server_options = server_options

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

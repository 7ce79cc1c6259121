"""``quorum stats`` against an address that is not a metrics endpoint: one line, exit 1."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from quorum.server.stats import run

# What a gRPC (HTTP/2) port sends to an HTTP/1.1 request: a SETTINGS frame, no status line.
HTTP2_SETTINGS = b"\x00\x00\x06\x04\x00\x00\x00\x00\x00\x00\x05\x00\x00@\x00"


@contextmanager
def answering(reply: bytes) -> Iterator[str]:
    """A loopback port that answers one connection with ``reply`` and closes it."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()

        def serve() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(reply)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        yield f"127.0.0.1:{listener.getsockname()[1]}"
        thread.join(5)


def test_a_port_that_does_not_speak_http_is_one_line() -> None:
    with answering(HTTP2_SETTINGS) as address:
        code, text = run(address, timeout_s=5)
    assert code == 1
    assert text.startswith(f"quorum stats: cannot read http://{address}/metrics: not an HTTP")
    assert "metrics address" in text and len(text.splitlines()) == 1


def test_a_page_that_is_not_prometheus_text_is_one_line() -> None:
    page = b"<html><body>\nnot metrics\n</body></html>\n"
    reply = b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(page), page)
    with answering(reply) as address:
        code, text = run(address, timeout_s=5)
    assert code == 1
    assert text.startswith(
        f"quorum stats: http://{address}/metrics did not return Prometheus metrics text ("
    )
    assert len(text.splitlines()) == 1


def test_a_body_that_is_not_utf8_is_one_line() -> None:
    reply = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n\xff\xfe"
    with answering(reply) as address:
        code, text = run(address, timeout_s=5)
    assert (code, text) == (
        1,
        f"quorum stats: http://{address}/metrics did not return Prometheus metrics text",
    )

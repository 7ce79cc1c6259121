"""The real Redis the tests start is reachable and restartable."""

from __future__ import annotations

import redis

from tests.conftest import RedisServer


def test_redis_fixture_serves_and_restarts(redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url)
    assert client.ping()
    redis_server.stop()
    redis_server.start()
    assert redis.Redis.from_url(redis_server.url).ping()
    client.close()

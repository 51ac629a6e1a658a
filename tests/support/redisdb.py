"""The real Redis the tests use (127.0.0.1:6379; ``.ci/run`` starts one when none answers).

Every test gets its own key prefix and deletes its keys afterwards, so tests (and a
developer's own data in that Redis) never see each other.
"""

from __future__ import annotations

import os
import uuid

from redis.asyncio import Redis

REDIS_URL = os.environ.get("WSGUARD_TEST_REDIS", "redis://127.0.0.1:6379/0")


def unique_prefix() -> str:
    return f"wsguard-test-{uuid.uuid4().hex[:12]}:"


async def drop_prefix(prefix: str, url: str = REDIS_URL) -> int:
    """Delete every key under ``prefix``; returns how many."""
    client = Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)
        return len(keys)
    finally:
        await client.aclose()

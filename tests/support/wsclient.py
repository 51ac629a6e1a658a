"""A protocol client for the tests: replies and pushes kept apart."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection


class Client:
    """A websockets client that keeps replies and pushes apart."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.next_id = 0
        self.welcome: dict[str, Any] = {}
        self.pushes: list[dict[str, Any]] = []  # pushes that arrived while awaiting a reply

    async def frame(self, timeout: float = 5.0) -> dict[str, Any]:
        return orjson.loads(await asyncio.wait_for(self.ws.recv(), timeout))

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        """The next push or reply, in arrival order."""
        if self.pushes:
            return self.pushes.pop(0)
        return await self.frame(timeout)

    async def call(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send one op and return its reply; pushes before it are kept for ``recv``."""
        self.next_id += 1
        await self.ws.send(orjson.dumps({"id": self.next_id, "op": op, **fields}).decode())
        while True:
            frame = await self.frame()
            if "push" not in frame:
                assert frame.get("id") == self.next_id, frame
                return frame
            self.pushes.append(frame)

    async def quiet(self) -> None:
        """Assert nothing arrived: a ping's reply is the very next frame."""
        assert not self.pushes, self.pushes
        assert await self.call("ping") == {"id": self.next_id, "ok": True, "result": {}}
        assert not self.pushes, self.pushes

"""An echo consumer that checks nothing itself: the guard in asgi.py did."""

from __future__ import annotations

from channels.generic.websocket import AsyncWebsocketConsumer

from wsguard.asgi import PRINCIPAL_KEY


class EchoConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]
    async def connect(self) -> None:
        await self.accept()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        user = self.scope[PRINCIPAL_KEY].user_id
        if text_data is not None:
            await self.send(text_data=f"{user}: {text_data}")
        elif bytes_data is not None:
            await self.send(bytes_data=bytes_data)

"""The values the client hands back: positions, messages, history pages."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

__all__ = ["History", "Message", "Position"]


class Position(NamedTuple):
    """A place in a channel's stream (docs/reference/wire-protocol.md#positions-and-recovery).

    Attributes:
        epoch: names one life of the stream; offsets restart from 1 in a new epoch.
        offset: the offset of a publication (0: none yet in this epoch).
    """

    epoch: str
    offset: int


@dataclass(frozen=True, slots=True)
class Message:
    """One publication delivered on a subscription, or returned by ``history``.

    Attributes:
        channel: the channel it was published on.
        epoch: the stream epoch of ``offset``.
        offset: its position in the stream: previous + 1 within an epoch.
        data: the published JSON value, as the server delivered it (after its encoding: on an
            ``encode = "html"`` channel strings arrive HTML-escaped; render them as text).
    """

    channel: str
    epoch: str
    offset: int
    data: Any

    @property
    def position(self) -> Position:
        """The stream position of this message."""
        return Position(self.epoch, self.offset)


@dataclass(frozen=True, slots=True)
class History:
    """The result of ``Client.history``.

    Attributes:
        publications: the retained publications after ``since``, in offset order.
        epoch: the current epoch of the stream.
        offset: the current top of the stream; ask again with ``since`` set to the last
            offset received until you reach it.
        complete: False when publications after ``since`` are no longer all held.
    """

    publications: list[Message]
    epoch: str
    offset: int
    complete: bool

"""Offset bookkeeping of one subscription, as pure functions and a small cursor.

Two positions exist per subscription: the *received* one (highest offset taken off the socket;
it is what a resubscribe sends as `since`) and the *consumer's* one (last item the user got;
it drives duplicate dropping and hole filling). Both follow protocol §3.7 and §4.4.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .types import Event, Gap, Position


def on_subscribed(
    room: str, channel: str, since: Position | None, reply: dict[str, Any]
) -> tuple[list[Gap], Position]:
    """What a `subscribe` reply means for a subscriber that sent `since`.

    Returns the gaps to surface, in order, and the received position to continue from. The
    replayed events follow the reply and occupy offsets `latest - replayed + 1 .. latest`.
    """
    epoch = reply.get("epoch")
    epoch = epoch if isinstance(epoch, str) else None
    latest = reply.get("offset")
    latest = latest if isinstance(latest, int) else None
    if since is None:
        return [], Position(latest or 0, epoch)
    if reply.get("recovered") is not False:
        return [], Position(since.offset, epoch)
    replayed = reply.get("replayed")
    replayed = replayed if isinstance(replayed, int) else 0
    lost_to = (latest - replayed) if latest is not None else 0
    gaps: list[Gap] = []
    start = since.offset
    if since.epoch is not None and since.epoch != epoch:
        gaps.append(Gap(room, channel, "epoch_changed", epoch, since.offset + 1, None, previous_epoch=since.epoch))
        start = 0
    if lost_to >= start + 1:
        gaps.append(Gap(room, channel, "retention", epoch, start + 1, lost_to))
    return gaps, Position(max(lost_to, start), epoch)


class Cursor:
    """The consumer's position: decides what to do with the next item of the stream."""

    DUPLICATE = "duplicate"
    NEXT = "next"
    HOLE = "hole"

    def __init__(self, epoch: str | None, last: int) -> None:
        self.epoch = epoch
        self.last = last

    def classify(self, offset: int) -> str:
        if offset <= self.last:
            return self.DUPLICATE
        if offset == self.last + 1:
            return self.NEXT
        return self.HOLE

    def advance(self, offset: int) -> None:
        self.last = offset

    def gap_is_ahead(self, gap: Gap) -> bool:
        """A retention gap that starts past our next offset: the part before it is still fillable."""
        return (
            gap.reason == "retention"
            and gap.epoch == self.epoch
            and gap.from_offset > self.last + 1
        )

    def apply_gap(self, gap: Gap) -> None:
        if gap.reason == "epoch_changed":
            self.epoch = gap.epoch
            self.last = 0
        elif gap.to_offset is not None:
            self.epoch = gap.epoch or self.epoch
            self.last = max(self.last, gap.to_offset)


def plan_fill(
    room: str,
    channel: str,
    cursor: Cursor,
    events: Sequence[Event],
    until: int | None,
    latest: int | None,
    page_full: bool,
) -> tuple[Gap | None, list[Event], bool]:
    """Turns one `history` page read to fill a hole into what to deliver.

    `until` is the offset that revealed the hole (exclusive), or None when filling after an
    overflow up to the channel's top. Returns a gap for what retention no longer holds, the
    events to deliver (contiguous, ascending) and whether the fill is complete.
    """
    wanted = [e for e in events if e.offset > cursor.last and (until is None or e.offset < until)]
    if wanted:
        first = wanted[0].offset
    elif until is not None:
        first = until
    else:
        first = (latest + 1) if latest is not None else cursor.last + 1
    gap = None
    if first > cursor.last + 1:
        gap = Gap(room, channel, "retention", cursor.epoch, cursor.last + 1, first - 1)
    last = wanted[-1].offset if wanted else first - 1
    if until is not None:
        done = last >= until - 1 or not page_full
    else:
        done = not page_full
    return gap, wanted, done

"""Pure parts, case by case: backoff, pacing bucket, token timing, offset tracking, raw JSON."""

from __future__ import annotations

import json

import pytest

from arqonbus import rawjson
from arqonbus.policy import Backoff, TokenBucket, jwt_expiry, parse_rfc3339, refresh_delay
from arqonbus.tracker import Cursor, on_subscribed, plan_fill
from arqonbus.types import Event, Gap, Position
from harness import make_jwt


def test_backoff_first_retry_immediate_then_full_jitter_capped() -> None:
    backoff = Backoff(0.5, 4.0, rng=lambda: 1.0)
    assert [backoff.next_delay() for _ in range(6)] == [0.0, 0.5, 1.0, 2.0, 4.0, 4.0]
    backoff.reset()
    assert backoff.next_delay() == 0.0
    low = Backoff(0.5, 4.0, rng=lambda: 0.0)
    low.next_delay()
    assert low.next_delay() == 0.0  # full jitter reaches down to zero


def test_token_bucket_paces_after_burst_and_pauses() -> None:
    bucket = TokenBucket(10, 2, now=0.0)
    assert bucket.take(0.0) == 0.0 and bucket.take(0.0) == 0.0
    assert bucket.take(0.0) == pytest.approx(0.1)
    assert bucket.take(0.0) == pytest.approx(0.2)
    assert bucket.take(1.0) == 0.0  # refilled (capped at the burst)
    bucket.pause(0.5, now=1.0)
    assert bucket.take(1.0) == pytest.approx(0.5)


def test_jwt_expiry_and_refresh_timing() -> None:
    token = make_jwt("s" * 32, "alice", 100)
    exp = jwt_expiry(token)
    assert exp is not None and exp == int(exp)
    assert jwt_expiry("opaque-token") is None and jwt_expiry("a.b.c") is None
    assert refresh_delay(1000.0, 996.0) == pytest.approx(3.0)  # a quarter ahead
    assert refresh_delay(10_000.0, 6_400.0) == pytest.approx(3_540.0)  # at most a minute ahead
    assert refresh_delay(5.0, 10.0) == 0.0
    assert parse_rfc3339("1970-01-01T00:01:00.000Z") == 60.0
    assert parse_rfc3339(None) is None and parse_rfc3339("soon") is None


def reply(epoch: str, offset: int | None, recovered: bool | None, replayed: int) -> dict[str, object]:
    return {"epoch": epoch, "offset": offset, "recovered": recovered, "replayed": replayed}


def test_subscribe_without_since_starts_at_latest() -> None:
    assert on_subscribed("r", "c", None, reply("e1", 42, None, 0)) == ([], Position(42, "e1"))
    assert on_subscribed("r", "c", None, reply("e1", None, None, 0)) == ([], Position(0, "e1"))


def test_recovered_resume_keeps_position() -> None:
    assert on_subscribed("r", "c", Position(40, "e1"), reply("e1", 43, True, 3)) == ([], Position(40, "e1"))


def test_retention_gap_before_replayed_events() -> None:
    gaps, pos = on_subscribed("r", "c", Position(10, "e1"), reply("e1", 120, False, 100))
    assert gaps == [Gap("r", "c", "retention", "e1", 11, 20)] and pos == Position(20, "e1")


def test_retention_gap_when_nothing_is_retained() -> None:
    gaps, pos = on_subscribed("r", "c", Position(2, "e1"), reply("e1", 10, False, 0))
    assert gaps == [Gap("r", "c", "retention", "e1", 3, 10)] and pos == Position(10, "e1")


def test_epoch_change_reports_old_stream_then_new_stream_losses() -> None:
    gaps, pos = on_subscribed("r", "c", Position(5, "old"), reply("new", None, False, 0))
    assert gaps == [Gap("r", "c", "epoch_changed", "new", 6, None, previous_epoch="old")]
    assert pos == Position(0, "new")
    gaps, pos = on_subscribed("r", "c", Position(5, "old"), reply("new", 30, False, 10))
    assert gaps == [
        Gap("r", "c", "epoch_changed", "new", 6, None, previous_epoch="old"),
        Gap("r", "c", "retention", "new", 1, 20),
    ]
    assert pos == Position(20, "new")


def test_cursor_verdicts_and_gaps() -> None:
    cursor = Cursor("e1", 5)
    assert cursor.classify(5) == Cursor.DUPLICATE
    assert cursor.classify(6) == Cursor.NEXT
    assert cursor.classify(8) == Cursor.HOLE
    ahead = Gap("r", "c", "retention", "e1", 9, 12)
    assert cursor.gap_is_ahead(ahead)
    cursor.apply_gap(Gap("r", "c", "retention", "e1", 6, 12))
    assert cursor.last == 12
    cursor.apply_gap(Gap("r", "c", "epoch_changed", "e2", 13, None, previous_epoch="e1"))
    assert (cursor.epoch, cursor.last) == ("e2", 0)


def ev(offset: int) -> Event:
    frame = {"type": "event", "room": "r", "channel": "c", "offset": offset, "payload": offset}
    return Event(frame, json.dumps(frame))


def test_fill_plan_complete_hole() -> None:
    gap, events, done = plan_fill("r", "c", Cursor("e", 3), [ev(4), ev(5), ev(6)], 7, 9, False)
    assert gap is None and [e.offset for e in events] == [4, 5, 6] and done


def test_fill_plan_partly_lost_hole() -> None:
    gap, events, done = plan_fill("r", "c", Cursor("e", 3), [ev(6)], 7, 9, False)
    assert gap == Gap("r", "c", "retention", "e", 4, 5) and [e.offset for e in events] == [6] and done


def test_fill_plan_nothing_retained_after_overflow() -> None:
    gap, events, done = plan_fill("r", "c", Cursor("e", 3), [], None, 9, False)
    assert gap == Gap("r", "c", "retention", "e", 4, 9) and events == [] and done


def test_fill_plan_full_page_continues() -> None:
    gap, events, done = plan_fill("r", "c", Cursor("e", 0), [ev(1), ev(2)], 10, 9, True)
    assert gap is None and [e.offset for e in events] == [1, 2] and not done


def test_raw_payload_exact_text_and_locate() -> None:
    text = '{"type":"event","payload" : {"b":1.0,"a":"\\u00e9"} ,"metadata":{"k":"v"}}'
    assert rawjson.field_text(text, "payload") == '{"b":1.0,"a":"\\u00e9"}'
    assert rawjson.field_text(text, "missing") is None
    reply_text = '{"type":"reply","request_id":"q1","result":{"events":[{"offset":1,"payload":1.50},{"offset":2,"payload":[]}],"epoch":"e"}}'
    at = rawjson.locate(reply_text, ("result", "events"))
    assert at is not None
    items = rawjson.array_items(reply_text, at)
    assert [raw for _, raw in items] == ['{"offset":1,"payload":1.50}', '{"offset":2,"payload":[]}']
    assert Event(items[0][0], items[0][1]).raw_payload == "1.50"
    assert rawjson.locate(reply_text, ("result", "nope")) is None


def test_check_raw_accepts_one_json_value_only() -> None:
    assert rawjson.check_raw(' {"a":1} ') == ' {"a":1} '
    with pytest.raises(ValueError):
        rawjson.check_raw('{"a":1} x')
    with pytest.raises(ValueError):
        rawjson.check_raw("{nope}")
    assert rawjson.dumps({"é": 12345678901234567890123}) == '{"é":12345678901234567890123}'

"""Decoding: valid records round-trip; every kind of bad record raises InvalidEvent naming its field."""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream.errors import InvalidEvent, RiskstreamError
from stream.events import (
    MAX_RECORD_BYTES,
    MAX_STRING,
    Label,
    Login,
    Order,
    Provenance,
    decode,
    encode,
    format_ts,
    from_dict,
    parse_ts,
    to_dict,
)

ORDER = {
    "type": "order",
    "event_id": "e-1",
    "ts": "2024-03-01T12:00:00.250Z",
    "user_id": "u1",
    "order_id": "o1",
    "amount": 129.9,
    "currency": "EUR",
    "merchant_id": "m7",
    "device_id": "d1",
    "ip": "81.106.3.4",
    "payment_id": "c1",
    "address_id": "a1",
    "account_created_ts": "2021-06-01T08:00:00Z",
    "items": 2,
    "promo_code": "SPRING10",
    "country": "GB",
    "features": {"amount_z": 1.5, "n_orders_1h": 3},
    "label": 0,
    "scenario": "normal",
}
LOGIN = {
    "type": "login",
    "event_id": "e-2",
    "ts": 1709294400000,  # epoch milliseconds
    "user_id": "u1",
    "success": False,
    "device_id": "d1",
    "ip": "81.106.3.4",
    "country": "GB",
    "lat": 51.5,
    "lon": -0.12,
    "user_agent": "Mozilla/5.0",
    "method": "password",
    "label": 1,
    "scenario": "credential_stuffing",
}
LABEL = {
    "type": "label",
    "event_id": "e-3",
    "ts": "2024-03-02T00:00:00+01:00",
    "ref_event_id": "e-1",
    "label": 1,
    "source": "chargeback",
}
VALID = {"order": ORDER, "login": LOGIN, "label": LABEL}


def raw(base: dict, **changes: object) -> bytes:
    d = dict(base)
    for k, v in changes.items():
        if v is _DROP:
            d.pop(k)
        else:
            d[k] = v
    return orjson.dumps(d)


_DROP = object()


def field_of(data: bytes | str) -> str:
    with pytest.raises(InvalidEvent) as info:
        decode(data)
    exc = info.value
    assert str(exc) == f"{exc.field}: {exc.problem}"  # the dead-letter reason
    return exc.field


# --- valid records ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(VALID))
def test_valid_event_round_trips_through_encode_and_decode(kind: str) -> None:
    e = decode(orjson.dumps(VALID[kind]))
    assert e.type == kind
    assert decode(encode(e)) == e
    assert from_dict(to_dict(e)) == e


def test_order_fields_are_decoded_to_their_types() -> None:
    e = decode(orjson.dumps(ORDER))
    assert isinstance(e, Order)
    assert e.ts == 1709294400.25
    assert e.account_created_ts == parse_ts("2021-06-01T08:00:00Z")
    assert (e.amount, e.items, e.label, e.scenario) == (129.9, 2, 0, "normal")
    assert dict(e.features) == {"amount_z": 1.5, "n_orders_1h": 3.0}
    with pytest.raises(TypeError):
        e.features["x"] = 1.0  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        e.amount = 0.0  # type: ignore[misc]


def test_login_ts_in_epoch_milliseconds_and_label_with_offset() -> None:
    login = decode(orjson.dumps(LOGIN))
    assert isinstance(login, Login)
    assert login.ts == 1709294400.0 and login.success is False and login.label == 1
    label = decode(orjson.dumps(LABEL))
    assert isinstance(label, Label)
    assert label.ts == parse_ts("2024-03-01T23:00:00Z")  # the +01:00 offset is honoured
    assert format_ts(label.ts) == "2024-03-01T23:00:00.000Z"


def test_naive_timestamp_is_utc_and_numeric_ids_become_strings() -> None:
    e = decode(raw(LOGIN, ts="2024-03-01T12:00:00", user_id=42, success=1))
    assert e.ts == parse_ts("2024-03-01T12:00:00Z")
    assert e.user_id == "42" and e.success is True


def test_unknown_fields_are_ignored_and_provenance_is_kept_out_of_equality() -> None:
    a = decode(raw(ORDER, new_field={"x": [1, 2]}), Provenance("orders", 3, 17))
    b = decode(orjson.dumps(ORDER))
    assert a == b
    assert a.provenance == Provenance("orders", 3, 17) and b.provenance is None


def test_optional_fields_may_be_absent_or_null() -> None:
    minimal = {k: ORDER[k] for k in ("type", "event_id", "ts", "user_id", "order_id", "amount", "currency")}
    e = decode(orjson.dumps({**minimal, "merchant_id": "m", "device_id": None}))
    assert e.device_id is None and e.label is None and dict(e.features) == {}
    assert decode(encode(e)) == e


def test_largest_accepted_string_and_record() -> None:
    e = decode(raw(LOGIN, user_agent="x" * MAX_STRING))
    assert len(e.user_agent) == MAX_STRING
    big = raw(LOGIN, features={f"f{i}": float(i) for i in range(500)})
    assert len(big) < MAX_RECORD_BYTES
    assert len(decode(big).features) == 500


def test_examples_in_the_schema_doc_decode_and_round_trip() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "events.md").read_text()
    examples = re.findall(r"```json\n(.*?)\n```", doc, re.S)
    assert len(examples) == 3
    events = [decode(x.encode()) for x in examples]
    assert [e.type for e in events] == ["order", "login", "label"]
    for e in events:
        assert decode(encode(e)) == e


# --- invalid records ----------------------------------------------------------------------------------------

BAD = [
    ("broken JSON", b'{"type": "order", "event_id": ', "$"),
    ("empty input", b"", "$"),
    ("not UTF-8", b'{"type": "login\xff"}', "$"),
    ("array, not object", b'[{"type": "order"}]', "$"),
    ("string, not object", b'"order"', "$"),
    ("null", b"null", "$"),
    ("unknown type", raw(ORDER, type="refund"), "type"),
    ("type not a string", raw(ORDER, type=1), "type"),
    ("missing type", raw(ORDER, type=_DROP), "type"),
    ("order without amount", raw(ORDER, amount=_DROP), "amount"),
    ("order with null merchant", raw(ORDER, merchant_id=None), "merchant_id"),
    ("login without success", raw(LOGIN, success=_DROP), "success"),
    ("label without label", raw(LABEL, label=_DROP), "label"),
    ("label without ref", raw(LABEL, ref_event_id=_DROP), "ref_event_id"),
    ("missing event_id", raw(LOGIN, event_id=_DROP), "event_id"),
    ("empty event_id", raw(LOGIN, event_id=""), "event_id"),
    ("user_id a list", raw(ORDER, user_id=["u1"]), "user_id"),
    ("user_id a float", raw(ORDER, user_id=1.5), "user_id"),
    ("amount as text", raw(ORDER, amount="12.5"), "amount"),
    ("negative amount", raw(ORDER, amount=-0.01), "amount"),
    ("NaN literal", raw(ORDER, amount=0.0).replace(b'"amount":0.0', b'"amount":NaN'), "$"),
    ("Infinity literal", raw(ORDER, amount=0.0).replace(b'"amount":0.0', b'"amount":Infinity'), "$"),
    ("overflowing number", raw(ORDER, amount=0.0).replace(b'"amount":0.0', b'"amount":1e999'), "$"),
    ("bool as amount", raw(ORDER, amount=True), "amount"),
    ("bool as lat", raw(LOGIN, lat=False), "lat"),
    ("text as success", raw(LOGIN, success="yes"), "success"),
    ("2 as success", raw(LOGIN, success=2), "success"),
    ("lat out of range", raw(LOGIN, lat=90.5), "lat"),
    ("lon out of range", raw(LOGIN, lon=-180.01), "lon"),
    ("label 2", raw(LOGIN, label=2), "label"),
    ("label as text", raw(LABEL, label="fraud"), "label"),
    ("fractional items", raw(ORDER, items=1.5), "items"),
    ("negative items", raw(ORDER, items=-1), "items"),
    ("bad month", raw(ORDER, ts="2024-13-01T00:00:00Z"), "ts"),
    ("words as ts", raw(ORDER, ts="yesterday"), "ts"),
    ("bool as ts", raw(ORDER, ts=True), "ts"),
    ("object as ts", raw(ORDER, ts={"s": 1}), "ts"),
    ("ts beyond year 9999", raw(ORDER, ts=10**15), "ts"),
    ("long ts text", raw(ORDER, ts="2024-03-01T00:00:00" + "0" * 60), "ts"),
    ("bad account_created_ts", raw(ORDER, account_created_ts="2021-02-30"), "account_created_ts"),
    ("features a list", raw(ORDER, features=[1.0]), "features"),
    ("feature value text", raw(ORDER, features={"a": 1.0, "b": "x"}), "features.b"),
    ("feature value bool", raw(ORDER, features={"a": True}), "features.a"),
    ("too many features", raw(ORDER, features={f"f{i}": 0 for i in range(513)}), "features"),
    ("string one over the limit", raw(ORDER, device_id="d" * (MAX_STRING + 1)), "device_id"),
    ("1 MB string", raw(ORDER, user_id="u" * 1_000_000), "$"),
    ("scenario not a string", raw(ORDER, scenario=7.5), "scenario"),
    ("NUL in an id", raw(ORDER, user_id="u\x001"), "user_id"),
    ("newline in an id", raw(LOGIN, device_id="d1\nd2"), "device_id"),
]


@pytest.mark.parametrize(("data", "field"), [(d, f) for _, d, f in BAD], ids=[n for n, _, _ in BAD])
def test_bad_record_raises_invalid_event_naming_the_field(data: bytes, field: str) -> None:
    assert field_of(data) == field


def test_negative_amount_reason_and_error_tree() -> None:
    with pytest.raises(RiskstreamError) as info:
        decode(raw(ORDER, amount=-1))
    assert str(info.value) == "amount: must be >= 0"
    assert isinstance(info.value, InvalidEvent) and not info.value.retriable


def test_oversized_text_record_is_refused_before_parsing() -> None:
    text = orjson.dumps(ORDER).decode()[:-1] + ', "pad": "' + "x" * MAX_RECORD_BYTES + '"}'
    assert field_of(text) == "$"


def test_non_finite_values_never_reach_an_event() -> None:
    # orjson has no NaN literal, but a dict built in Python (from_dict) can carry one
    for name, base in (("amount", ORDER), ("lat", LOGIN)):
        with pytest.raises(InvalidEvent) as info:
            from_dict({**base, name: math.nan})
        assert info.value.field == name
    with pytest.raises(InvalidEvent) as info:
        from_dict({**ORDER, "features": {"z": math.inf}})
    assert info.value.field == "features.z"
    with pytest.raises(InvalidEvent) as info:
        from_dict({**ORDER, "ts": math.inf})
    assert info.value.field == "ts"


def test_every_decoded_event_can_be_encoded_again() -> None:
    with pytest.raises(InvalidEvent, match="^items: is too large"):
        decode(raw(ORDER, items=1e300))  # would decode to an int that no JSON encoder can write back
    e = decode(raw(ORDER, items=float(2**53)))
    assert decode(encode(e)) == e


# --- properties ---------------------------------------------------------------------------------------------

_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=8,
)
_FIELDS = sorted({k for base in VALID.values() for k in base} | {"provenance", "extra"})


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_decode_or_raise_invalid_event(data: bytes) -> None:
    try:
        e = decode(data)
    except InvalidEvent:
        return
    assert e.type in VALID


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(st.sampled_from(_FIELDS) | st.text(max_size=8), _json | st.sampled_from(sorted(VALID)))
)
def test_random_json_objects_decode_or_raise_invalid_event(obj: dict) -> None:
    raw = orjson.dumps(obj)
    obj = orjson.loads(raw)  # what the decoder sees: JSON has no inf or nan (orjson writes them as null)
    try:
        e = decode(raw)
    except InvalidEvent as exc:
        name = exc.field.split(".")[0]
        assert name in _FIELDS
        # a field absent (or null) is reported missing; a present one is reported for its value
        assert (exc.problem == "is missing") == (obj.get(name) is None)
        return
    assert e.type == obj["type"]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(VALID)), st.data())
def test_one_corrupted_field_is_the_field_blamed_or_the_event_still_round_trips(kind: str, data) -> None:
    base = dict(VALID[kind])
    name = data.draw(st.sampled_from(sorted(set(base) - {"type"})), label="field")
    base[name] = data.draw(_json, label="value")
    try:
        e = decode(orjson.dumps(base))
    except InvalidEvent as exc:
        assert exc.field.split(".")[0] == name
        return
    again = decode(encode(e))
    assert abs(again.ts - e.ts) < 0.001  # encode writes milliseconds
    assert dataclasses.replace(again, ts=e.ts) == e or name == "account_created_ts"

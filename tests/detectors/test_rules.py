"""Rules: a small grammar (never eval), max score of fired rules, forced blocks and blocklists."""

from __future__ import annotations

import math
import pickle

import pytest

from detectors.rules import Rules, parse_when

BURST = {"name": "card_testing_burst", "when": "device_payments_distinct_24h >= 5 and amount < 5",
         "score": 0.9, "action": "review"}
BLOCK = {"name": "stolen_bin", "when": "bin.risk == 1", "score": 0.4, "action": "block"}


def test_grammar_accepts_the_documented_forms():
    clauses = parse_when("a>1 and b.c <= -2.5 and d:e != 1e3 and f == inf and g-h < .5")
    assert [(c.feature, c.op, c.value) for c in clauses] == [
        ("a", ">", 1.0), ("b.c", "<=", -2.5), ("d:e", "!=", 1000.0), ("f", "==", math.inf), ("g-h", "<", 0.5)
    ]


@pytest.mark.parametrize(
    "when,problem",
    [
        ("amount <> 5", "cannot parse clause 'amount <> 5'"),
        ("amount < five", "cannot parse clause"),
        ("amount < 5 or n > 1", "cannot parse clause"),
        ("__import__('os').system('true') > 0", "cannot parse clause"),
        ("amount < 5 and", "cannot parse clause"),
        ("  ", "non-empty"),
        ("5 < amount", "cannot parse clause '5 < amount'"),
    ],
)
def test_invalid_rule_text_raises_naming_the_rule_and_the_problem(when, problem):
    with pytest.raises(ValueError) as e:
        Rules(rules=[{"name": "bad_one", "when": when}])
    assert "rule 'bad_one'" in str(e.value)
    assert problem in str(e.value)


@pytest.mark.parametrize(
    "spec,problem",
    [
        ({"when": "a > 1"}, "'name'"),
        ({"name": "r"}, "'when' is missing"),
        ({"name": "r", "when": "a > 1", "score": -1}, "'score'"),
        ({"name": "r", "when": "a > 1", "score": "high"}, "'score'"),
        ({"name": "r", "when": "a > 1", "action": "ban"}, "'action'"),
        ({"name": "r", "when": "a > 1", "weight": 2}, "unknown key(s) weight"),
    ],
)
def test_invalid_rule_tables_are_rejected(spec, problem):
    with pytest.raises(ValueError, match="rule") as e:
        Rules(rules=[spec])
    assert problem in str(e.value)


def test_duplicate_names_and_bad_containers_are_rejected():
    with pytest.raises(ValueError, match="used twice: dup"):
        Rules(rules=[{"name": "dup", "when": "a > 1"}, {"name": "dup", "when": "b > 1"}])
    with pytest.raises(ValueError):
        Rules(rules={"name": "r", "when": "a > 1"})  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Rules(blocklists={"ip": "1.2.3.4"})


def test_score_is_the_max_of_the_fired_rules():
    r = Rules(rules=[BURST, BLOCK])
    assert r.score_one({"device_payments_distinct_24h": 7, "amount": 2.0, "bin.risk": 1}) == 0.9
    assert r.score_one({"device_payments_distinct_24h": 7, "amount": 20.0, "bin.risk": 1}) == 0.4
    assert r.score_one({"device_payments_distinct_24h": 4, "amount": 2.0}) == 0.0
    assert r.score_one({"device_payments_distinct_24h": 9}) == 0.0  # a missing feature never fires
    assert r.score_one({"device_payments_distinct_24h": 9, "amount": math.nan}) == 0.0


def test_explain_and_describe_name_fired_rules_with_their_values():
    r = Rules(rules=[BURST, BLOCK])
    x = {"device_payments_distinct_24h": 7, "amount": 2.0, "bin.risk": 1}
    assert r.explain(x) == [("card_testing_burst", 0.9), ("stolen_bin", 0.4)]
    assert r.explain(x, top=1) == [("card_testing_burst", 0.9)]
    detail = r.describe(x, "card_testing_burst")
    assert "device_payments_distinct_24h=7 >= 5" in detail and "amount=2.0 < 5" in detail


def test_block_reasons_come_from_block_rules_and_blocklists():
    r = Rules(rules=[BURST, BLOCK], blocklists={"ip": ["203.0.113.9"], "device": ["d-666"]})
    assert r.can_block
    x = {"device_payments_distinct_24h": 7, "amount": 2.0}
    assert r.block_reasons(x) == []  # the review rule fires, but does not force a block
    assert r.block_reasons({**x, "bin.risk": 1}) == ["stolen_bin"]
    ids = {"user": "u1", "ip": "203.0.113.9", "device": "d-1"}
    assert r.blocklist_match(ids) == ["blocklist:ip"]
    assert r.block_reasons(x, ids) == ["blocklist:ip"]
    assert r.blocklist_match({"ip": "198.51.100.1"}) == []
    assert not Rules(rules=[BURST]).can_block


def test_clone_and_pickle_keep_the_configuration():
    r = Rules(rules=[BURST, BLOCK], blocklists={"ip": ["203.0.113.9"]})
    x = {"device_payments_distinct_24h": 7, "amount": 2.0, "bin.risk": 1}
    for copy in (r.clone(), pickle.loads(pickle.dumps(r))):
        assert copy.score_one(x) == 0.9
        assert copy.block_reasons(x, {"ip": "203.0.113.9"}) == ["stolen_bin", "blocklist:ip"]

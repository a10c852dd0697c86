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


def test_combine_sum_adds_the_fired_rules_and_equals_the_loop():
    both = {"device_payments_distinct_24h": 7, "amount": 2.0, "bin.risk": 1}
    summed = Rules(rules=[BURST, BLOCK], combine="sum")
    assert summed.score_one(both) == pytest.approx(0.9 + 0.4)
    assert summed.score_one({"device_payments_distinct_24h": 7, "amount": 20.0, "bin.risk": 1}) == 0.4
    xs = [both, {"device_payments_distinct_24h": 7, "amount": 2.0}, {"amount": 1.0}]
    assert summed.process_many(xs).tolist() == [summed.score_one(x) for x in xs]
    old = pickle.loads(pickle.dumps(summed))
    del old.__dict__["combine"]  # rules pickled before the option: the class default, the maximum
    assert old.score_one(both) == 0.9
    with pytest.raises(ValueError, match="combine"):
        Rules(rules=[BURST], combine="mean")


def test_explain_and_describe_name_fired_rules_with_their_values():
    r = Rules(rules=[BURST, BLOCK])
    x = {"device_payments_distinct_24h": 7, "amount": 2.0, "bin.risk": 1}
    assert r.explain(x) == [("card_testing_burst", 0.9), ("stolen_bin", 0.4)]
    assert r.explain(x, top=1) == [("card_testing_burst", 0.9)]
    detail = r.describe(x, "card_testing_burst")
    assert "device_payments_distinct_24h=7 >= 5" in detail and "amount=2 < 5" in detail


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


def _default_pack() -> list[dict]:
    import tomllib
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "stream" / "defaults" / "riskstream.toml"
    return tomllib.loads(path.read_text())["detectors"]["rules"]["rules"]


def test_vectorised_batches_equal_the_per_event_loop_with_missing_nan_and_not_equal():
    import random

    import numpy as np

    rules = [*_default_pack(), {"name": "ne", "when": "f != 1 and g > 0", "score": 0.3},
             {"name": "zero", "when": "f >= 0", "score": 0.0}]
    r = Rules(rules=rules)
    rng = random.Random(5)
    names = sorted({c.feature for rule in r._rules for c in rule.clauses})
    xs = []
    for _ in range(600):
        x = {}
        for f in names:
            u = rng.random()
            if u < 0.6:
                continue  # missing
            x[f] = math.nan if u < 0.65 else float(rng.choice([0, 1, 2, 3, 4, 5, 0.5, 9.0, 2000.0]))
        xs.append(x)
    seen: list[float] = []
    got = np.concatenate([r.process_many(xs[i : i + 97], lambda s: seen.append(s) or True)
                          for i in range(0, len(xs), 97)])
    want = np.array([r.score_one(x) for x in xs])
    np.testing.assert_array_equal(got, want)
    assert seen == want.tolist()  # the gate sees every score, in order
    assert 0 < (want > 0).mean() < 1
    assert r.process_many([{"other": 1.0}] * 5).tolist() == [0.0] * 5  # no rule's feature present


def test_default_pack_fires_on_attack_patterns_not_on_ordinary_traffic():
    r = Rules(rules=_default_pack())
    assert all(rule.action == "review" for rule in r._rules)  # the pack adds evidence, it never forces a block
    ordinary_order = {"order_amount": 45.0, "device_payments_24h": 1, "ip_payments_24h": 1, "user_payments_24h": 1,
                      "device_promo_users_24h": 1, "device_new_accounts_24h": 0, "promo_redemptions_1h": 4,
                      "account_age_days": 300, "device_users_24h": 2, "address_users_24h": 2,
                      "payment_users_24h": 1, "user_new_address": 1, "user_amount_ratio_max": 1.2,
                      "user_devices_24h": 2, "user_countries_24h": 2, "user_fresh_device": 1, "user_fresh_ip": 0,
                      "user_fresh_address": 1}
    assert r.fired(ordinary_order) == []  # a shared family device, a gift address, a sale code, travel, a new phone
    card_test = dict(ordinary_order, order_amount=1.5, device_payments_24h=9)
    promo_farm = dict(ordinary_order, device_promo_users_24h=6, account_age_days=0.01)
    ring = dict(ordinary_order, address_users_24h=4)
    takeover = dict(ordinary_order, user_amount_ratio_max=4.0)
    session = dict(ordinary_order, user_fresh_ip=1, order_amount=320.0)  # device, IP and address of the hour
    assert "takeover_session_order" not in [f.name for f in r.fired(dict(session, order_amount=45.0))]
    assert r.fired(dict(ordinary_order, device_payments_24h=2)) == []  # a second card on the family device
    cycling = dict(ordinary_order, order_amount=2.5, device_payments_24h=2, account_age_days=0.02)
    for x, name in ((card_test, "card_burst_device"), (cycling, "new_account_card_cycling"),
                    (promo_farm, "promo_farm_device"),
                    (ring, "shared_address"), (takeover, "takeover_order"), (session, "takeover_session_order")):
        assert name in [f.name for f in r.fired(x)]
    ordinary_login = {"login_success": 1, "ip_logins_1m": 1, "ip_login_users_1h": 2, "ip_failed_login_ratio_1h": 0.5,
                      "login_velocity_kmh": 600.0, "user_new_device": 1, "user_new_ip": 0, "user_new_country": 0}
    assert r.fired(ordinary_login) == []  # a new phone at home, a flight
    stuffing = dict(ordinary_login, ip_logins_1m=25, ip_login_users_1h=20, ip_failed_login_ratio_1h=0.95)
    travel = dict(ordinary_login, login_velocity_kmh=9000.0)
    stranger = dict(ordinary_login, user_new_ip=1, login_success=0)
    for x, name in ((stuffing, "login_storm_ip"), (travel, "impossible_travel"),
                    (stranger, "failed_login_new_device_ip")):
        assert name in [f.name for f in r.fired(x)]

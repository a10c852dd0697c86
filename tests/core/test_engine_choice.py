"""``[engine] core``: the compiled engine and the Python one give the same alerts; the choice is checked, kept out
of the configuration hash, and a checkpoint continues only under the engine that wrote it."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from stream.cli import cli
from stream.compiled import CompiledEngine, new_engine
from stream.config import load_settings
from stream.errors import CheckpointError, ConfigError
from stream.pipeline import Engine
from stream.sim import SimConfig, simulate


def _settings(core: str, **more):
    return load_settings(overrides={"engine.core": core, "engine.budget": 0.02, "ensemble.min_history": 100,
                                    **more})


@pytest.fixture(scope="module")
def events():
    return list(simulate(SimConfig(events=8000, seed=5, label_delay_s=3 * 3600.0)))


def _run(engine, events, batch):
    alerts, risk = [], []
    for i in range(0, len(events), batch):
        out = engine.process(events[i : i + batch])
        alerts.extend(out.alerts)
        risk.extend(out.risk.tolist())
    return alerts, risk


@pytest.mark.parametrize("more", [{}, {"links.entity_risk": True, "links.flagged": True}])
def test_compiled_and_python_engines_raise_byte_identical_alerts(events, more) -> None:
    py = new_engine(_settings("python", **more))
    co = new_engine(_settings("compiled", **more))
    assert type(py) is Engine and isinstance(co, CompiledEngine)
    a_py, r_py = _run(py, events, 1000)
    a_co, r_co = _run(co, events, 1000)
    assert len(a_py) > 20
    assert r_py == r_co
    # reasons included: the core's explain data is formatted by the reference's own functions
    assert [a.to_json() for a in a_py] == [a.to_json() for a in a_co]
    assert co.events_seen == py.events_seen


def test_the_choice_is_not_part_of_the_configuration_hash_and_a_bad_value_is_one_line(tmp_path) -> None:
    assert _settings("python").config_hash == _settings("compiled").config_hash
    with pytest.raises(ConfigError, match="engine.core"):
        _settings("rust")
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[engine]\ncore = "fast"\n')
    res = CliRunner().invoke(cli, ["config", "show", "--config", str(cfg)])
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == [
        "riskstream: error: config key 'engine.core' must be \"compiled\" or \"python\", not 'fast'"]


def test_a_checkpoint_continues_only_under_the_engine_that_wrote_it(events) -> None:
    py, co = new_engine(_settings("python")), new_engine(_settings("compiled"))
    py.process(events[:3000])
    co.process(events[:3000])
    with pytest.raises(CheckpointError, match="python engine"):
        new_engine(_settings("compiled")).restore(py.snapshot())
    with pytest.raises(CheckpointError, match="compiled engine"):
        new_engine(_settings("python")).restore(co.snapshot())
    # and under its own engine it continues exactly
    again = new_engine(_settings("compiled"))
    again.restore(co.snapshot())
    a1, r1 = _run(again, events[3000:], 700)
    a2, r2 = _run(co, events[3000:], 700)
    assert r1 == r2 and [a.to_json() for a in a1] == [a.to_json() for a in a2]


def test_a_damaged_compiled_state_is_a_checkpoint_error(events) -> None:
    import pickle

    co = new_engine(_settings("compiled"))
    co.process(events[:500])
    state = pickle.loads(co.snapshot())
    state["core"] = state["core"][: len(state["core"]) // 2]
    with pytest.raises(CheckpointError, match="does not load"):
        new_engine(_settings("compiled")).restore(pickle.dumps(state))
    state = pickle.loads(co.snapshot())
    state["core_state_version"] = 999
    with pytest.raises(CheckpointError, match="version 999"):
        new_engine(_settings("compiled")).restore(pickle.dumps(state))


# -- detection in the core ------------------------------------------------------------------------------------
#
# With every detector compiled (the default configuration), CompiledEngine runs detectors, calibrators and the
# ensemble in the core; its alerts must be the Python engine's: the same ids, scores within 1e-9 (they come out
# equal) and byte-identical reasons, which Python formats from the core's explain data with the reference's
# own functions.


def _whole_and_resumed(s, events, cut: int, batch: int = 900):
    """An uninterrupted run of ``events`` and one stopped after ``cut`` events whose checkpoint a fresh engine
    continues: ``(whole, its alerts, its risks, the continuing engine, alerts and risks before the cut, after)``."""
    whole = new_engine(s)
    a_all, r_all = _run(whole, events, batch)
    first = new_engine(s)
    a1, r1 = _run(first, events[:cut], batch)
    second = new_engine(s)
    second.restore(first.snapshot())
    a2, r2 = _run(second, events[cut:], batch)
    return whole, a_all, r_all, second, a1, r1, a2, r2


def _alerts_json(alerts) -> list[str]:
    return [a.to_json() for a in alerts]


def _assert_same_detection(events, settings_py, settings_co, batch=1000, other_batch=777) -> int:
    """Both engines at ``batch``: the same alerts, reasons byte for byte (reasons read the models as they stand
    after each batch, so their numbers depend on the split, in both engines alike); the compiled engine at
    ``other_batch`` too: the same alert ids and scores."""
    py, co = new_engine(settings_py), new_engine(settings_co)
    assert isinstance(co, CompiledEngine) and co.detection == "compiled" and co.detection_fallback is None
    a_py, r_py = _run(py, events, batch)
    a_co, r_co = _run(co, events, batch)
    assert [a.alert_id for a in a_py] == [a.alert_id for a in a_co]
    assert max((abs(x - y) for x, y in zip(r_py, r_co, strict=True)), default=0.0) <= 1e-9
    for x, y in zip(a_py, a_co, strict=True):
        assert abs(x.score - y.score) <= 1e-9
    assert _alerts_json(a_py) == _alerts_json(a_co)
    assert co.events_seen == py.events_seen
    a_split, r_split = _run(new_engine(settings_co), events, other_batch)
    assert r_split == r_co
    assert [(a.alert_id, a.score, a.severity, a.action) for a in a_split] == \
        [(a.alert_id, a.score, a.severity, a.action) for a in a_co]
    return len(a_py)


@pytest.mark.parametrize("seed", [7, 11, 13, 17])
def test_detection_in_the_core_equals_the_python_engine_on_simulated_streams(seed) -> None:
    events = list(simulate(SimConfig(events=12_000, seed=seed, label_delay_s=2 * 3600.0)))
    s = load_settings()
    assert _assert_same_detection(events, s.replace({"engine.core": "python"}), s) > 10


def test_detection_in_the_core_with_entity_risk_flags_and_a_block_rule(events, tmp_path) -> None:
    cfg = tmp_path / "block.toml"
    cfg.write_text('[ensemble]\nmin_history = 100\n[detectors.rules]\ncombine = "max"\n'
                   '[[detectors.rules.rules]]\nname = "huge"\nwhen = "order_amount > 900"\nscore = 1.0\n'
                   'action = "block"\n')
    more = {"engine.budget": 0.02, "links.entity_risk": True, "links.flagged": True}
    s = load_settings(cfg, overrides=more)
    n = _assert_same_detection(events, s.replace({"engine.core": "python"}), s)
    assert n > 20
    co = new_engine(s)
    blocks = [a for a in _run(co, events, 2000)[0] if a.reasons and a.reasons[0]["feature"] == "huge"]
    assert blocks and blocks[0].action == "block"


def _file_events(folder: str, name: str, mapping, rows: int):
    import itertools

    from stream.eval.data import shared_data_dir
    from stream.sources import FileSource

    where = shared_data_dir(folder, must_exist=False)
    if not (where / name).exists():
        pytest.skip(f"{where / name} is missing")
    src = FileSource([where / name], mapping=mapping, batch_size=5000)
    try:
        return list(itertools.islice((e for b in src for e in b.events), rows))
    finally:
        src.close()


def test_detection_in_the_core_on_the_ulb_card_file() -> None:
    from stream.sources import ColumnMapping

    m = ColumnMapping.parse(type="order", map_spec="ts=Time,amount=Amount,label=Class",
                            set_spec="user_id=card,merchant_id=unknown")
    events = _file_events("creditcard_ulb", "creditcard.csv.gz", m, 15_000)
    s = load_settings()
    assert _assert_same_detection(events, s.replace({"engine.core": "python"}), s, 2000, 1500) > 10


def test_detection_in_the_core_on_the_handbook_stream_with_entity_risk() -> None:
    from stream.sources import ColumnMapping

    m = ColumnMapping.parse(type="order", map_spec="ts=TX_DATETIME,user_id=CUSTOMER_ID,merchant_id=TERMINAL_ID,"
                            "amount=TX_AMOUNT,label=TX_FRAUD,event_id=TRANSACTION_ID")
    events = _file_events("fraud_handbook", "transactions.csv.gz", m, 15_000)
    s = load_settings(overrides={"links.entity_risk": True, "links.risk_kinds": ["merchant", "user"]})
    assert _assert_same_detection(events, s.replace({"engine.core": "python"}), s, 2000, 1500) > 10


_GAUSSIAN = {"ensemble.calibration.zscore": "gaussian"}


@pytest.mark.parametrize("seed", [7, 13])
def test_a_z_score_calibrated_gaussian_in_the_core_equals_the_python_engine(seed) -> None:
    """``[ensemble.calibration] zscore = "gaussian"`` runs in the core: the same risks, alerts and reasons (whose
    shares read the z-score's ``p``), and not those of the ranked z-score."""
    events = list(simulate(SimConfig(events=12_000, seed=seed, label_delay_s=2 * 3600.0)))
    s = load_settings(overrides=_GAUSSIAN)
    assert _assert_same_detection(events, s.replace({"engine.core": "python"}), s) > 10
    co, ranked = new_engine(s), new_engine(load_settings())
    assert _run(co, events, 1000)[1] != _run(ranked, events, 1000)[1]


def test_a_z_score_calibrated_gaussian_in_the_core_on_the_ulb_card_file() -> None:
    from stream.sources import ColumnMapping

    m = ColumnMapping.parse(type="order", map_spec="ts=Time,amount=Amount,label=Class",
                            set_spec="user_id=card,merchant_id=unknown")
    events = _file_events("creditcard_ulb", "creditcard.csv.gz", m, 15_000)
    s = load_settings(overrides=_GAUSSIAN)
    assert _assert_same_detection(events, s.replace({"engine.core": "python"}), s, 2000, 1500) > 10


def test_a_z_score_calibrated_gaussian_continues_from_a_checkpoint_in_both_engines(events) -> None:
    for core in ("compiled", "python"):
        s = _settings(core, **_GAUSSIAN)
        whole, a_all, r_all, second, a1, r1, a2, r2 = _whole_and_resumed(s, events, 4100)
        assert r1 + r2 == r_all
        assert [a.alert_id for a in a1 + a2] == [a.alert_id for a in a_all] and len(a_all) > 20


@pytest.mark.parametrize(("toml", "reason"), [
    ('[detectors.supervised]\n', "supervised"),
    ('[detectors.rules]\nblocklists = {ip = ["10.9.9.9"]}\n', "blocklists"),
])
def test_an_unsupported_detector_keeps_python_detection_and_says_why(events, tmp_path, toml, reason) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[ensemble]\nmin_history = 100\n" + toml)
    s = load_settings(cfg, overrides={"engine.budget": 0.02})
    co = new_engine(s)
    assert isinstance(co, CompiledEngine) and co.detection == "python"
    assert reason in co.detection_fallback
    py = new_engine(s.replace({"engine.core": "python"}))
    a_py, r_py = _run(py, events[:4000], 1000)
    a_co, r_co = _run(co, events[:4000], 1000)
    assert r_py == r_co and _alerts_json(a_py) == _alerts_json(a_co)


def test_detection_in_the_core_does_not_depend_on_the_batch_split(events) -> None:
    # (not with links.flagged: alerts flag their users when their batch ends, in both engines, by design)
    s = _settings("compiled", **{"links.entity_risk": True})
    runs = []
    for batch in (1, 97, 1000, len(events)):
        co = new_engine(s)
        alerts, risk = _run(co, events[:5000] if batch == 1 else events, batch)
        runs.append((batch, [(a.alert_id, a.score, a.severity, a.action) for a in alerts], risk))
    ref_alerts, ref_risk = runs[1][1], runs[1][2]
    for batch, alerts, risk in runs[1:]:
        assert alerts == ref_alerts and risk == ref_risk, batch
    one_alerts, one_risk = runs[0][1], runs[0][2]
    assert one_risk == ref_risk[: len(one_risk)]
    assert one_alerts == [a for a in ref_alerts if a in one_alerts] and len(one_alerts) > 0


def test_a_compiled_detection_checkpoint_mid_stream_continues_as_an_uninterrupted_run(events) -> None:
    s = _settings("compiled", **{"links.entity_risk": True})
    whole, a_all, r_all, second, a1, r1, a2, r2 = _whole_and_resumed(s, events, 3700)
    assert second.detection == "compiled"
    assert r1 + r2 == r_all
    assert [a.alert_id for a in a1 + a2] == [a.alert_id for a in a_all]
    assert [a.score for a in a1 + a2] == [a.score for a in a_all]


def test_a_checkpoint_keeps_the_core_state_compressed_and_one_written_before_compression_still_loads(events) -> None:
    import pickle

    s = _settings("compiled", **{"links.entity_risk": True})
    first = new_engine(s)
    _run(first, events[:4000], 1000)
    blob = first.snapshot()
    state = pickle.loads(blob)
    assert state["core_format"] == "lz4"
    raw = first.core.snapshot()
    assert len(state["core"]) * 2 < len(raw), "LZ4 halves the state at least"
    # the format of before: the core's raw state, no "core_format"
    old = dict(state, core=raw)
    del old["core_format"]
    rest = events[4000:]
    runs = []
    for b in (blob, pickle.dumps(old, protocol=pickle.HIGHEST_PROTOCOL)):
        eng = new_engine(s)
        eng.restore(b)
        runs.append(_run(eng, rest, 1000))
    a_rest, r_rest = _run(first, rest, 1000)
    assert runs[0][1] == runs[1][1] == r_rest
    assert [a.alert_id for a in runs[0][0]] == [a.alert_id for a in runs[1][0]] == [a.alert_id for a in a_rest]
    damaged = dict(state, core=state["core"][:-10])
    with pytest.raises(CheckpointError, match="compressed engine state does not load"):
        new_engine(s).restore(pickle.dumps(damaged))


def test_process_raw_decodes_in_the_core_and_equals_process_on_the_decoded_events(events) -> None:
    """The JSON-records path (``CompiledEngine.process_raw``): junk among the records is refused with
    ``stream.events.decode``'s reasons, and the scores and alerts are those of :meth:`process` on the events."""
    import random

    from stream.errors import InvalidEvent
    from stream.events import decode, encode
    from stream.sim.junk import junk_records

    raw = [encode(e) for e in events]
    rng = random.Random(3)
    mixed = list(raw)
    for j in junk_records(events[:500], n=300, seed=2):
        mixed.insert(rng.randrange(len(mixed) + 1), j)
    expected_refused, good = [], []
    for i, r in enumerate(mixed):
        try:
            good.append(decode(r))
        except InvalidEvent as e:
            expected_refused.append((i, str(e)))
    s = _settings("compiled", **{"links.entity_risk": True})
    by_events, by_records = new_engine(s), new_engine(s)
    a_ev, r_ev = _run(by_events, good, len(good))
    out, refused = by_records.process_raw(mixed)
    assert refused == expected_refused and len(refused) > 100
    assert out.risk.tolist() == r_ev
    assert [a.alert_id for a in out.alerts] == [a.alert_id for a in a_ev] and len(a_ev) > 20
    assert [a.score for a in out.alerts] == [a.score for a in a_ev]
    # (state bytes may differ: a record left to Python ends a core call, where alerts flag their users)
    assert by_records.events_seen == by_events.events_seen


def test_detection_in_the_core_with_the_coldstart_detector_gives_the_same_alerts_and_reasons(tmp_path) -> None:
    """The cold-start detector compiled: same scores, alerts and reasons (its tail lines) as the Python engine."""
    events = list(simulate(SimConfig(events=12_000, seed=11, label_delay_s=2 * 3600.0)))
    cfg = tmp_path / "coldstart.toml"
    cfg.write_text("[detectors.coldstart]\nwindow = 512\nrefresh_every = 64\nmin_count = 32\n"
                   "[ensemble.weights]\ncoldstart = 3.0\n")
    s = load_settings(cfg, overrides={"engine.budget": 0.02, "ensemble.min_history": 100})
    assert _assert_same_detection(events, s.replace({"engine.core": "python"}), s) > 20
    alerts = _run(new_engine(s), events, 1000)[0]
    cold = [r for a in alerts for r in a.reasons if r.get("detector") == "coldstart"]
    assert cold, "no alert gave a cold-start reason: the reasons are not compared"
    assert any(" tail: " in r["detail"] for r in cold), cold[:3]


_ADAPTIVE = {"ensemble.adaptive.enabled": True, "ensemble.adaptive.refresh_every": 10,
             "ensemble.adaptive.prior_positives": 2, "ensemble.adaptive.window": 300}


@pytest.mark.parametrize("seed", [7, 11, 13, 17])
def test_adaptive_weights_in_the_core_equal_the_python_engine(seed) -> None:
    """``[ensemble.adaptive]`` runs in the core: the same weights after every label, so the same scores, alerts
    and reasons (which name the weights the stretch was combined with), at any batch split."""
    events = list(simulate(SimConfig(events=12_000, seed=seed, label_delay_s=2 * 3600.0)))
    s = load_settings(overrides={**_ADAPTIVE, "engine.budget": 0.02, "ensemble.min_history": 100})
    py, co = new_engine(s.replace({"engine.core": "python"})), new_engine(s)
    assert isinstance(co, CompiledEngine) and co.detection == "compiled" and co.adapts and co.uses_labels
    assert _assert_same_detection(events, s.replace({"engine.core": "python"}), s) > 10
    _run(py, events, 1000)
    _run(co, events, 1000)
    for kind in ("order",):
        ens = py.ensembles[kind]
        weights, auc, pending, (legit, frauds) = co.core.weights(kind)
        assert weights == [ens._weights[n] for n in ens.detectors]
        assert weights != [ens.adapter.prior[n] for n in ens.detectors], "the labels moved the weights"
        assert auc == [ens.adapter.auc[n] for n in ens.detectors]
        assert (pending, legit, frauds) == (len(ens.adapter._pending), ens.adapter._filled[0], ens.adapter._filled[1])
    assert co.core.weights("login")[3] == (0, 0), "the simulator labels orders only"


@pytest.mark.parametrize("measure", ["stream_precision", "precision"])
def test_adaptive_weights_with_full_windows_equal_the_python_engine(measure) -> None:
    """Windows smaller than the labels that arrive, so ``stream_precision`` counts each class at its arrived share
    (and ``precision`` at the windows'): the two measures differ, and each engine computes each the same."""
    events = list(simulate(SimConfig(events=12_000, seed=7, label_delay_s=2 * 3600.0)))
    s = load_settings(overrides={**_ADAPTIVE, "ensemble.adaptive.window": 30, "ensemble.adaptive.measure": measure,
                                 "engine.budget": 0.02, "ensemble.min_history": 100})
    assert _assert_same_detection(events, s.replace({"engine.core": "python"}), s) > 10
    co = new_engine(s)
    _run(co, events, 1000)
    legit, frauds = co.core.weights("order")[3]
    assert legit > 30 and frauds > 30, "a window never filled: the measures were not told apart"
    other = "precision" if measure == "stream_precision" else "stream_precision"
    co2 = new_engine(s.replace({"ensemble.adaptive.measure": other}))
    _run(co2, events, 1000)
    assert co.core.weights("order")[0] != co2.core.weights("order")[0]


def test_adaptive_weights_in_the_core_continue_from_a_checkpoint_and_the_raw_path_agrees(events) -> None:
    s = _settings("compiled", **_ADAPTIVE)
    whole, a_all, r_all, second, a1, r1, a2, r2 = _whole_and_resumed(s, events, 4100)
    assert r1 + r2 == r_all
    # (reasons read the models as they stand after each batch: the split at 4100 moves their numbers)
    key = [(a.alert_id, a.score, a.severity, a.action) for a in a_all]
    assert [(a.alert_id, a.score, a.severity, a.action) for a in a1 + a2] == key and len(a_all) > 20
    assert second.core.weights("order") == whole.core.weights("order")
    from stream.events import encode

    raw = new_engine(s)
    out, refused = raw.process_raw([encode(e) for e in events])
    assert not refused and out.risk.tolist() == r_all
    assert [(a.alert_id, a.score) for a in out.alerts] == [(a.alert_id, a.score) for a in a_all]
    assert raw.core.weights("order") == whole.core.weights("order")


def test_adaptive_weights_with_detection_in_python_learn_there(events, tmp_path) -> None:
    """A detector the core does not run (the supervised learner's forest) keeps detection in Python; the adaptive
    weights then learn in the Python ensembles, as in the reference engine."""
    cfg = tmp_path / "c.toml"
    cfg.write_text("[detectors.supervised]\nmodel = \"forest\"\nn_models = 3\n")
    s = load_settings(cfg, overrides={**_ADAPTIVE, "engine.budget": 0.02, "ensemble.min_history": 100})
    co, py = new_engine(s), new_engine(s.replace({"engine.core": "python"}))
    assert isinstance(co, CompiledEngine) and co.detection == "python"
    a_co, r_co = _run(co, events, 1000)
    a_py, r_py = _run(py, events, 1000)
    assert r_co == r_py and _alerts_json(a_co) == _alerts_json(a_py)
    assert co.ensembles["order"]._weights == py.ensembles["order"]._weights
    assert co.ensembles["order"]._weights != co.ensembles["order"].adapter.prior


def test_adaptive_pending_evidence_drops_the_oldest_after_each_event_in_both_engines() -> None:
    """An id seen again after its first copy was dropped, in one stretch: both engines drop after every event
    (so the same at any batch split), and learn the same labels."""
    from stream.events import Label, Order

    def order(i: int, eid: str) -> Order:
        return Order(event_id=eid, ts=1000.0 + i, user_id=f"u{i}", order_id=f"o{i}", amount=10.0 + i,
                     currency="EUR", merchant_id="m1")

    events = [order(i, eid) for i, eid in enumerate("ABCDA")]
    events += [Label(event_id="lb", ts=2000.0, ref_event_id="B", label=1),
               Label(event_id="la", ts=2001.0, ref_event_id="A", label=0)]
    over = {"ensemble.adaptive.enabled": True, "ensemble.adaptive.max_pending": 3, "links.graph": False}
    s = load_settings(overrides=over)
    for batch in (len(events), 1, 3):
        py, co = new_engine(s.replace({"engine.core": "python"})), new_engine(s)
        _run(py, events, batch)
        _run(co, events, batch)
        ad = py.ensembles["order"].adapter
        assert list(ad._pending) == ["C", "D"] and ad._filled == {0: 1, 1: 0}, batch  # B dropped, A learned
        _, _, pending, filled = co.core.weights("order")
        assert (pending, filled) == (2, (1, 0)), batch


# --- the supervised detector's logistic regression, compiled ---------------------------------------------------

_LOGREG = {"detectors.supervised": {"model": "logreg", "warmup": 5}, "engine.budget": 0.02,
           "ensemble.min_history": 100}


def _supervised_reasons(alerts) -> list[dict]:
    return [r for a in alerts for r in a.reasons if r.get("detector") == "supervised"]


@pytest.mark.parametrize("seed", [7, 11])
def test_supervised_logreg_in_the_core_equals_the_python_engine(seed) -> None:
    """``model = "logreg"`` runs in the core, trained on the rows its label store joins: the same probabilities
    (river's under-sampler, scaler and SGD steps, CPython's MT19937 draws), alerts and reasons byte for byte."""
    events = list(simulate(SimConfig(events=15_000, seed=seed, label_delay_s=2 * 3600.0)))
    s = load_settings(overrides=_LOGREG)
    co = new_engine(s)
    assert isinstance(co, CompiledEngine) and co.detection == "compiled" and co.learns_labels
    assert _assert_same_detection(events, s.replace({"engine.core": "python"}), s) > 20
    out = new_engine(s).process(events)
    assert (out.raw["supervised"] > 0).sum() > 1000, "the model never became ready: nothing was compared"
    assert _supervised_reasons(out.alerts), "no alert gave a supervised reason: the explain data is not compared"


def test_supervised_logreg_in_the_core_on_the_ulb_card_file_with_labels_an_hour_late() -> None:
    """Every feature of the event (V1..V28 pass through), labels joined an hour late."""
    import itertools

    from stream.eval.data import shared_data_dir
    from stream.eval.delayed_labels import DelayedLabels
    from stream.sources import ColumnMapping, FileSource

    where = shared_data_dir("creditcard_ulb", must_exist=False) / "creditcard.csv.gz"
    if not where.exists():
        pytest.skip(f"{where} is missing")
    m = ColumnMapping.parse(type="order", map_spec="ts=Time,amount=Amount,label=Class",
                            set_spec="user_id=card,merchant_id=unknown")
    src = DelayedLabels(FileSource([where], mapping=m, batch_size=5000), 3600.0, 600.0)
    try:
        events = list(itertools.islice((e for b in src for e in b.events), 60_000))
    finally:
        src.close()
    s = load_settings(overrides=_LOGREG)
    assert _assert_same_detection(events, s.replace({"engine.core": "python"}), s, 2000, 1500) > 10
    out = new_engine(s).process(events)
    assert (out.raw["supervised"] > 0).sum() > 1000


def test_supervised_logreg_continues_from_a_checkpoint_and_the_raw_path_agrees() -> None:
    """Its state (scaler, weights, the under-sampler's generator) and the rows waiting for their labels are in
    the checkpoint: a restored engine continues exactly; the JSON-records path gives the same scores."""
    from stream.events import encode

    events = list(simulate(SimConfig(events=15_000, seed=13, label_delay_s=2 * 3600.0)))
    s = load_settings(overrides=_LOGREG)
    whole, a_all, r_all, second, a1, r1, a2, r2 = _whole_and_resumed(s, events, 9100)
    assert r1 + r2 == r_all
    assert [(a.alert_id, a.score) for a in a1 + a2] == [(a.alert_id, a.score) for a in a_all] and len(a_all) > 20
    raw = new_engine(s)
    out, refused = raw.process_raw([encode(e) for e in events])
    assert not refused and out.risk.tolist() == r_all
    assert (out.raw["supervised"] > 0).sum() > 1000, "the model never became ready: the risk compared nothing of it"


def test_supervised_logreg_on_named_features_and_a_ratio_equals_the_python_engine() -> None:
    """``features`` named, one of them the ratio of two (0 where the denominator is 0), one absent from logins."""
    events = list(simulate(SimConfig(events=15_000, seed=17, label_delay_s=2 * 3600.0)))
    s = load_settings(overrides={**_LOGREG, "detectors.supervised": {
        "model": "logreg", "warmup": 5,
        "features": ["order_amount", "user_amount_24h/user_orders_24h", "account_age_days", "user_fresh_device"]}})
    assert _assert_same_detection(events, s.replace({"engine.core": "python"}), s) > 20
    out = new_engine(s).process(events)
    assert (out.raw["supervised"] > 0).sum() > 1000, "the model never became ready: nothing was compared"

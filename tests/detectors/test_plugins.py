"""Detector plug-ins: a config names a class (``module:Class`` or an entry point), the conformance suite of
:mod:`detectors.testing` checks it, and its reasons reach the alerts. The shipped example
(``docs/plugins/quantile_fence``) runs here, so CI runs it."""

from __future__ import annotations

import doctest
import importlib
import json
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from detectors import build
from detectors.testing import CHECKS, check_detector, run_check
from sinks.jsonl import read_alerts
from stream.cli import cli
from stream.config import load_settings
from stream.errors import ConfigError
from stream.pipeline import Engine, build_ensemble
from stream.sim import SimConfig, simulate

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "plugins" / "quantile_fence"
FENCE = {"class": "quantile_fence:QuantileFence", "q": 0.99, "window": 300, "min_count": 30,
         "features": ["order_amount", "user_amount_ratio_max", "user_amount_24h", "ip_logins_1m"]}


@pytest.fixture
def example(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE))
    return importlib.import_module("quantile_fence")


@pytest.fixture(scope="module")
def stream_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("sim") / "s.jsonl"
    res = CliRunner().invoke(cli, ["simulate", "--events", "5000", "--seed", "3", "--out", str(path)])
    assert res.exit_code == 0, res.output
    return path


def _settings(**detectors):
    return load_settings(None, env={}, overrides={f"detectors.{n}.{k}": v for n, p in detectors.items()
                                                  for k, v in p.items()})


def test_the_example_loads_from_a_config_and_passes_the_conformance_suite(example):
    ens = build_ensemble(_settings(fence=FENCE))
    det = ens.detectors["fence"]
    assert type(det) is example.QuantileFence and det.q == 0.99 and det.window == 300
    assert ens.config_dict()["detectors"]["fence"]["type"] == "quantile_fence.QuantileFence"
    # the class is part of the detection configuration: another class under the same name is another hash
    assert _settings(fence=FENCE).config_hash != _settings(fence={**FENCE, "class": "zscore"}).config_hash
    report = check_detector(lambda: build("fence", FENCE))
    assert report == dict.fromkeys(CHECKS, "passed")
    for params in example.QuantileFence._unit_test_params():
        check_detector(lambda p=params: example.QuantileFence(**p))
    failed, tried = doctest.testmod(example)
    assert tried and not failed


@pytest.mark.parametrize("check", CHECKS)
def test_one_pytest_test_per_check(example, check):
    """The other way a plug-in author runs the suite."""
    run_check(check, lambda: example.QuantileFence(window=200, min_count=20))


def test_the_example_plugin_reaches_the_alerts_through_the_cli(example, stream_file, tmp_path):
    cfg = tmp_path / "fence.toml"
    cfg.write_text(textwrap.dedent("""
        [ensemble]
        min_history = 200
        [ensemble.weights]
        fence = 3.0
        [detectors.fence]
        class = "quantile_fence:QuantileFence"
        window = 300
        min_count = 30
        features = ["order_amount", "user_amount_ratio_max", "user_amount_24h"]
    """))
    out, rep = tmp_path / "a.jsonl", tmp_path / "r.json"
    res = CliRunner().invoke(cli, ["replay", str(stream_file), "--config", str(cfg), "--budget", "0.02", "-q",
                                   "--alerts-out", str(out), "--report", str(rep)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    alerts = read_alerts(out)
    assert alerts and all("fence" in a.detector_scores for a in alerts)
    fence_reasons = [r for a in alerts for r in a.reasons if r["detector"] == "fence"]
    assert fence_reasons, "the plug-in's explanations reach the alerts"
    assert all(r["feature"] in ("order_amount", "user_amount_ratio_max", "user_amount_24h") for r in fence_reasons)
    assert any("quantile" in r["detail"] for r in fence_reasons), "its describe() gives the reason's detail"
    assert json.loads(rep.read_text())["events"] > 0


SPIKE = '''
from detectors import Detector


class Spike(Detector):
    """Fires on large orders: 1.0 when order_amount >= threshold."""

    def __init__(self, threshold: float = 500.0) -> None:
        self.threshold = threshold

    def score_one(self, x):
        return 1.0 if x.get("order_amount", 0.0) >= self.threshold else 0.0

    def learn_one(self, x):
        pass

    def explain(self, x, top=3):
        return [("order_amount", 1.0)] if self.score_one(x) else []


class Lazy(Detector):
    def score_one(self, x):
        return 0.0


class NotADetector:
    def score_one(self, x):
        return 0.0

    def learn_one(self, x):
        pass
'''


@pytest.fixture
def spike_module(tmp_path, monkeypatch):
    (tmp_path / "myplug.py").write_text(SPIKE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "myplug"


def test_a_plugin_that_fires_gives_alerts_whose_reasons_name_it(spike_module):
    s = _settings(spike={"class": "myplug:Spike", "threshold": 300.0},
                  hst={"enabled": False}, zscore={"enabled": False}, coldstart={"enabled": False},
                  rules={"enabled": False}, priors={"enabled": False})
    s = s.replace({"ensemble.min_history": 0, "engine.budget": 0.05})
    events = list(simulate(SimConfig(events=4000, seed=1)))
    out = Engine(s).process(events)
    big = {e.event_id for e in out.scored if e.type == "order" and e.amount >= 300.0}
    assert big and out.alerts
    for a in out.alerts:
        assert a.event_id in big
        assert [(r["detector"], r["feature"]) for r in a.reasons] == [("spike", "order_amount")]
        assert set(a.detector_scores) == {"spike"}


def test_entry_points_name_plugins(spike_module, tmp_path, monkeypatch):
    dist = tmp_path / "myplug-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: myplug\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[riskstream.detectors]\nspike = myplug:Spike\nbroken = myplug:Nope\n")
    # a section named after the entry point, and another section that names it as its class
    ens = build_ensemble(_settings(spike={"threshold": 10.0}, big={"class": "spike", "threshold": 99.0}))
    assert ens.detectors["spike"].threshold == 10.0 and ens.detectors["big"].threshold == 99.0
    assert type(ens.detectors["spike"]).__name__ == "Spike"
    with pytest.raises(ConfigError, match=r"^detectors\.x: entry point 'broken' = 'myplug:Nope' does not load: "):
        build_ensemble(_settings(x={"class": "broken"}))
    with pytest.raises(ConfigError, match=r"unknown detector 'nope'; known: .*spike"):
        build_ensemble(_settings(x={"class": "nope"}))


@pytest.mark.parametrize("cls, needle", [
    ("no_such_module:X", "detectors.mine: class 'no_such_module:X': cannot import 'no_such_module': "
                         "ModuleNotFoundError"),
    ("myplug:Missing", "detectors.mine: class 'myplug:Missing': module 'myplug' has no attribute 'Missing'"),
    ("myplug:NotADetector", "detectors.mine: myplug:NotADetector is not a detector: subclass detectors.Detector"),
    ("myplug:Lazy", "detectors.mine: myplug:Lazy does not implement learn_one"),
    ("myplug:", "expected \"package.module:Class\""),
])
def test_a_bad_plugin_class_is_a_one_line_config_error(spike_module, tmp_path, cls, needle):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(f'[detectors.mine]\nclass = "{cls}"\n')
    events = tmp_path / "e.jsonl"
    events.write_text("")
    # refused when the config is loaded, so by every command that reads it, before any event is read
    for args in (["replay", str(events), "--config", str(cfg), "-q"], ["config", "show", "--config", str(cfg)]):
        res = CliRunner().invoke(cli, args)
        assert res.exit_code == 2, (args, res.output)
        lines = res.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("riskstream: error: ") and needle in lines[0], res.output

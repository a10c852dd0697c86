"""``riskstream run`` with adaptive ensemble weights (detection and the weight adapter in the compiled core and its
checkpoint, labels from the labels topic): a member killed mid-stream restarts from its checkpoint and the alerts
equal an uninterrupted replay's; the labels did move the weights (the fixed ensemble scores its alerts otherwise)."""

from __future__ import annotations

import pytest

from stream.bench.harness import reference_alerts
from stream.compiled import new_engine

pytestmark = pytest.mark.kafka

# ~140 labels in all, spread over the partition units (each unit's engine has its own adapter): refresh often
ADAPTIVE = "[ensemble.adaptive]\nenabled = true\nrefresh_every = 10\nprior_positives = 2\n"


def test_run_with_adaptive_weights_resumes_from_its_checkpoint_like_an_uninterrupted_replay(scenario):
    sc = scenario(events=12_000, seed=29, sim={"label_delay_s": 600.0})  # labels 10 min late: the weights move
    sc.configure("[engine]\nbudget = 0.01\n\n" + ADAPTIVE)
    p, reference = sc.kill_and_resume()  # and the store and the topic hold exactly the replay's alerts
    assert new_engine(sc.settings).detection == "compiled"  # whole fetched batches went to the core
    assert "Python reference engine runs instead" not in p.output()
    fixed = reference_alerts(sc.settings.replace({"ensemble.adaptive.enabled": False}))
    # the same events scored with other weights: other risks (labels split over the partition units, so few of the
    # alerted events need change)
    assert {(a.event_id, a.score) for a in reference} != {(a.event_id, a.score) for a in fixed}, \
        "the labels never moved the weights"


def test_run_with_the_compiled_logistic_regression_resumes_like_an_uninterrupted_replay(scenario):
    """The supervised detector's logistic regression in the core: its rows wait in the label store, which is in the
    checkpoint, and it learns from the labels topic; a member killed mid-stream resumes to the replay's alerts."""
    sc = scenario(events=12_000, seed=31, sim={"label_delay_s": 600.0})
    sc.configure("[engine]\nbudget = 0.01\n\n[detectors.supervised]\nmodel = \"logreg\"\nwarmup = 3\n")
    p, reference = sc.kill_and_resume()  # and the store and the topic hold exactly the replay's alerts
    assert new_engine(sc.settings).detection == "compiled"
    assert "Python reference engine runs instead" not in p.output()
    without = reference_alerts(sc.settings.replace({"detectors.supervised.enabled": False}))
    assert {(a.event_id, a.score) for a in reference} != {(a.event_id, a.score) for a in without}, \
        "the model never learned: its scores changed nothing"
    assert any(r.get("detector") == "supervised" for a in reference for r in a.reasons)

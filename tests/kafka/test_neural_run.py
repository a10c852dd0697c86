"""``riskstream run`` with the neural detectors (detection in Python, the networks in the checkpoint): a member
killed mid-stream restarts from its checkpoint and the alerts equal an uninterrupted replay's. The multi-task
network is one model shared by the order and the login ensemble of each partition unit, in one checkpoint."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.kafka

AUTOENCODER = ("[detectors.autoencoder]\nhidden = [16, 4, 16]\nwarmup = 500\nlr = 0.005\n\n"
               "[ensemble.weights]\nautoencoder = 1.0\n")
MLP = ('[detectors.supervised]\nmodel = "mlp"\nwarmup = 5\n\n[ensemble.weights]\nsupervised = 2.0\n')


MULTITASK = "[detectors.multitask]\nwarmup = 5\n\n[ensemble.weights]\nmultitask = 2.0\n"


@pytest.mark.parametrize("detector, section", [("autoencoder", AUTOENCODER), ("supervised", MLP),
                                               ("multitask", MULTITASK)],
                         ids=["autoencoder", "supervised-mlp", "multitask"])
def test_run_with_a_neural_detector_resumes_from_its_checkpoint_like_an_uninterrupted_replay(
        scenario, detector, section):
    # labels 10 min late: the network trains; the multi-task one on logins' labels too
    sc = scenario(events=12_000, seed=23, sim={"label_delay_s": 600.0, "login_labels": detector == "multitask"})
    sc.configure("[engine]\nbudget = 0.01\n\n" + section)
    p, reference = sc.kill_and_resume()  # and the store and the topic hold exactly the replay's alerts
    assert any(r["detector"] == detector for a in reference for r in a.reasons), \
        f"{detector} drove some alert of the replay"
    assert f"detection runs in Python: detector '{detector}'" in p.output()

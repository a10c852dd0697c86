"""``riskstream run`` with the neural detectors (detection in Python, the networks in the checkpoint): a member
killed mid-stream restarts from its checkpoint and the alerts equal an uninterrupted replay's."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.kafka

AUTOENCODER = ("[detectors.autoencoder]\nhidden = [16, 4, 16]\nwarmup = 500\nlr = 0.005\n\n"
               "[ensemble.weights]\nautoencoder = 1.0\n")
MLP = ('[detectors.supervised]\nmodel = "mlp"\nwarmup = 5\n\n[ensemble.weights]\nsupervised = 2.0\n')


@pytest.mark.parametrize("detector, section", [("autoencoder", AUTOENCODER), ("supervised", MLP)],
                         ids=["autoencoder", "supervised-mlp"])
def test_run_with_a_neural_detector_resumes_from_its_checkpoint_like_an_uninterrupted_replay(
        scenario, detector, section):
    sc = scenario(events=12_000, seed=23, sim={"label_delay_s": 600.0})  # labels 10 min late: the network trains
    sc.configure("[engine]\nbudget = 0.01\n\n" + section)
    p, reference = sc.kill_and_resume()  # and the store and the topic hold exactly the replay's alerts
    assert any(r["detector"] == detector for a in reference for r in a.reasons), \
        f"{detector} drove some alert of the replay"
    assert f"detection runs in Python: detector '{detector}'" in p.output()

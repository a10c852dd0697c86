"""``riskstream run`` with the autoencoder (detection in Python, its network in the checkpoint): a member killed
mid-stream restarts from its checkpoint and the alerts equal an uninterrupted replay's."""

from __future__ import annotations

import pytest

from stream.bench.harness import settings_for

pytestmark = pytest.mark.kafka


def test_run_with_the_autoencoder_resumes_from_its_checkpoint_like_an_uninterrupted_replay(scenario):
    sc = scenario(events=12_000, seed=23)
    with open(sc.config, "a") as fh:
        fh.write("\n[engine]\nbudget = 0.01\n\n[detectors.autoencoder]\nhidden = [16, 4, 16]\nwarmup = 500\n"
                 "lr = 0.005\n\n[ensemble.weights]\nautoencoder = 1.0\n")
    sc.settings = settings_for(sc.config)
    p = sc.start("p1")
    at_kill = sc.wait_progress(0.4)
    p.kill()
    p.start()
    sc.wait_done(timeout=300)
    sc.stop_all()
    assert at_kill < 1.0, "the kill came after the input was consumed"
    reference = sc.reference()
    sc.assert_exact(reference)
    assert any(r["detector"] == "autoencoder" for a in reference for r in a.reasons), \
        "the autoencoder drove some alert of the replay"
    assert "detection runs in Python: detector 'autoencoder'" in p.output()

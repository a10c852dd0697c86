"""``riskstream run`` with issue 15's label-driven learners that are not networks: the review allocator (the
bandit, which keeps the Python engine) and the cohort prior (transfer: entity risk shrunk towards its kind's
rate, read by a supervised learner). A member killed mid-stream restarts from its checkpoint and the store and
the alerts topic hold exactly an uninterrupted replay's alerts; the learner did change them (the replay without
it scores its alerts otherwise)."""

from __future__ import annotations

import pytest

from stream.bench.harness import reference_alerts

pytestmark = pytest.mark.kafka

BANDIT = "[ensemble.bandit]\nenabled = true\nresample_every = 100\n"
PRIOR = ("[links]\nentity_risk = true\nrisk_prior = true\n\n"
         '[detectors.supervised]\nmodel = "logreg"\nwarmup = 5\n\n[ensemble.weights]\nsupervised = 2.0\n')


@pytest.mark.parametrize("section, driver, off", [(BANDIT, "bandit", {"ensemble.bandit.enabled": False}),
                                                  (PRIOR, "supervised", {"links.risk_prior": False})],
                         ids=["bandit", "cohort-prior"])
def test_run_with_a_label_learner_resumes_from_its_checkpoint_like_an_uninterrupted_replay(
        scenario, section, driver, off):
    sc = scenario(events=12_000, seed=31, sim={"label_delay_s": 600.0})  # labels 10 min late: they teach
    sc.configure("[engine]\nbudget = 0.01\n\n" + section)
    p, reference = sc.kill_and_resume()  # and the store and the topic hold exactly the replay's alerts
    assert any(r["detector"] == driver for a in reference for r in a.reasons), \
        f"{driver} drove some alert of the replay"
    without = reference_alerts(sc.settings.replace(off))
    assert {(a.event_id, a.score) for a in reference} != {(a.event_id, a.score) for a in without}, \
        "the learner never changed an alert"

"""The analyst console deploys a rule to a running consumer, end to end: ``riskstream run`` consumes the real broker
into a private store, ``riskstream console`` serves that store, and an admin in headless Chromium edits the rule
pack, backtests it on the recorded first half of the stream and deploys it. Every partition unit of the running
consumer switches to the new version without a restart; the alerts of the second half carry the new
``rules_version`` and the new rule's reasons, those of the first half the old version; the case page shows the
version on each alert, and the rules page counts the new rule's alerts."""

from __future__ import annotations

import re
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaProducer
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from sinks.alert import Alert
from stream.bench.harness import (
    PARTITIONS,
    RunProcess,
    committed_offsets,
    delete_topics,
    end_offsets,
    make_topics,
    store_alerts,
    wait_until,
    write_config,
)
from stream.events import Label, encode
from stream.sim import SimConfig, simulate
from stream.sim.world import write_jsonl
from tests.console.browser import open_browser, shot, sign_in, start_console, stop_console, text_of
from tests.console.conftest import PASSWORDS, riskstream

pytestmark = pytest.mark.kafka

#: Added on the rules page: it blocks large orders, so every order it fires on is an alert naming it.
NEW_RULE = '\n[[rules]]\nname = "huge_order"\nwhen = "order_amount > 250"\nscore = 5.0\naction = "block"\n'


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    yield from open_browser(tmp_path_factory)


def _produce(bootstrap: str, topics, events, user_of) -> None:  # noqa: ANN001 - the harness's Topics and events
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, acks="all")
    try:
        for e in events:
            if e.type == "label":
                key, topic = user_of.get(e.ref_event_id, e.ref_event_id), topics.labels
            else:
                key, topic = e.user_id, topics.orders if e.type == "order" else topics.logins
            producer.send(topic, key=key.encode(), value=encode(e))
        producer.flush()
    finally:
        producer.close()


def _rules(a: Alert) -> list[str]:
    return [str(r["feature"]) for r in a.reasons if r.get("detector") == "rules"]


def test_admin_deploys_a_rule_in_the_browser_to_a_running_consumer(
    kafka_bootstrap: str, alert_db: str, tmp_path: Path, processes: list[RunProcess], browser: webdriver.Chrome
) -> None:
    t0 = time.monotonic()
    topics = make_topics(kafka_bootstrap)
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    console = None
    try:
        stream = list(simulate(SimConfig(events=8000, seed=23)))
        user_of = {e.event_id: e.user_id for e in stream if not isinstance(e, Label)}
        first, second = stream[:4000], stream[4000:]
        recorded = tmp_path / "first-half.jsonl"  # the traffic the console backtests on
        write_jsonl(first, recorded)
        config = write_config(tmp_path / "riskstream.toml", kafka_bootstrap, topics, state_dir=tmp_path / "state",
                              database=alert_db, checkpoint_interval_s=0.5, rules_poll_interval_s=0.2)
        # four units of 2000 events each: alerts from the first fifty events of a type on, not the 500th
        config.write_text(config.read_text() + "\n[ensemble]\nmin_history = 50\n")

        # the store as an operator sets it up: schema, the configured pack as version 1, an admin
        for args in (("db", "upgrade", "--db", alert_db), ("rules", "list", "-c", str(config), "--db", alert_db)):
            r = riskstream(*args)
            assert r.returncode == 0, r.stderr
        assert r.stdout.startswith("* v1 "), r.stdout  # the configured pack, active
        r = riskstream("console", "adduser", "ada", "--role", "admin", "--db", alert_db,
                       env={"RISKSTREAM_CONSOLE_PASSWORD": PASSWORDS["ada"]})
        assert r.returncode == 0, r.stderr

        run = RunProcess(config, tmp_path / "run.log", database=alert_db, bootstrap=kafka_bootstrap)
        processes.append(run)
        console, url = start_console(alert_db, "--config", str(config), "--backtest-input", str(recorded),
                                     "--backtest-max-events", "4000")

        def at(end) -> bool:  # noqa: ANN001
            try:
                c = committed_offsets(admin, topics.group)
            except Exception:  # noqa: BLE001 - the group is still forming
                return False
            return all(c.get(tp, -1) >= off for tp, off in end.items())

        _produce(kafka_bootstrap, topics, first, user_of)
        end1 = end_offsets(kafka_bootstrap, topics.input_partitions())
        wait_until(lambda: at(end1), 60, "the first half committed", [run])
        early = store_alerts(alert_db)
        assert early, "no alerts from the first half"
        assert {a.rules_version for a in early} == {1}

        # the admin adds a rule, backtests it on the recorded first half and deploys it
        b = browser
        sign_in(b, url, "ada")
        b.get(url + "/rules")
        assert b.find_element(By.ID, "active-version").text == "v1"
        pack = b.find_element(By.ID, "pack")
        pack.send_keys(Keys.CONTROL, Keys.END)
        pack.send_keys(NEW_RULE)
        b.find_element(By.ID, "backtest").click()
        text_of(b, By.ID, "message", "Backtest done", timeout=30)
        assert int(b.find_element(By.ID, "bt-added").text) > 0
        assert "huge_order" in b.find_element(By.ID, "bt-diff").text
        shot(b, "console-live-backtest.png")
        b.find_element(By.ID, "comment").send_keys("block orders over 250")
        b.find_element(By.ID, "deploy").click()
        text_of(b, By.ID, "message", "Deployed rule pack v2 (was v1).")
        assert b.find_element(By.ID, "active-version").text == "v2"

        # the running consumer picks it up at its next checkpoint boundary, in every partition unit
        def switched() -> int:
            return len(set(re.findall(r"event=rules_switched unit=(\d+) version=2\b", run.output())))

        wait_until(lambda: switched() == PARTITIONS, 30, "every unit switched to version 2", [run], every=0.05)
        assert run.alive, run.output()[-3000:]

        _produce(kafka_bootstrap, topics, second, user_of)
        end2 = end_offsets(kafka_bootstrap, topics.input_partitions())
        wait_until(lambda: at(end2), 60, "the second half committed", [run])
        # the same process did it all: one start, no restart
        assert run.output().count("--- start") == 1

        alerts = store_alerts(alert_db)
        ids = {e.event_id for e in first}
        before = [a for a in alerts if a.event_id in ids]
        after = [a for a in alerts if a.event_id not in ids]
        assert before and after
        assert {a.rules_version for a in before} == {1}, "alerts of the first half carry the old version"
        assert {a.rules_version for a in after} == {2}, "alerts after the switch carry the new version"
        assert not any("huge_order" in _rules(a) for a in before)
        named = [a for a in after if "huge_order" in _rules(a)]
        assert named, "no alert of the second half names the new rule"
        assert {a.event_type for a in named} == {"order"}
        assert run.terminate() == 0, run.output()[-3000:]

        # the console: the rules page counts the new rule's alerts, the case page shows the version of each alert
        b.get(url + "/rules")
        assert b.find_element(By.ID, "active-version").text == "v2"
        row = next(r for r in b.find_elements(By.CSS_SELECTOR, "#live-rules tbody tr")
                   if r.find_elements(By.TAG_NAME, "td")[0].text == "huge_order")
        assert int(row.find_elements(By.TAG_NAME, "td")[4].text) == len(named)
        a = named[0]
        bucket = int(a.event_ts // (6 * 3600))  # the console's default --window-hours
        b.get(f"{url}/case?e={urllib.parse.quote(a.entity_key)}&b={bucket}")
        text_of(b, By.ID, "case-title", f"Case {a.entity_key}")
        row = b.find_element(By.ID, f"alert-{a.alert_id}")
        assert row.find_element(By.CSS_SELECTOR, "td.rules-version").text == "v2"
        assert "huge_order" in row.find_element(By.CSS_SELECTOR, "table.reasons").text
        shot(b, "console-live-case.png")
        elapsed = time.monotonic() - t0
        print(f"live deploy end to end: {elapsed:.1f} s, {len(before)} alerts at v1, {len(after)} at v2, "
              f"{len(named)} naming huge_order")
    finally:
        if console is not None:
            stop_console(console)
        admin.close()
        delete_topics(kafka_bootstrap, topics)

"""``riskstream demo``: simulate, replay and show alerts with their reasons, on embedded defaults."""

from __future__ import annotations

from pathlib import Path

import click
import orjson

from stream.cli.base import fail_cleanly
from stream.cli.replay import run_replay_with_outputs
from stream.cli.simulate import sim_config
from stream.config import load_settings
from stream.errors import SourceError


@click.command()
@click.option("--events", "-n", type=click.IntRange(min=1000), default=100_000, show_default=True,
              help="How many events to simulate (attacks and benign surprises included).")
@click.option("--seed", type=int, default=7, show_default=True, help="Random seed: same seed, same stream.")
@click.option("--dir", "out_dir", type=click.Path(file_okay=False), default="riskstream-demo", show_default=True,
              help="Folder for the simulated stream, alerts (JSONL + SQLite) and the report.")
@click.option("--budget", type=click.FloatRange(min=0, max=1, min_open=True, max_open=True), default=0.01,
              show_default=True, help="Alert budget: the fraction of events that may alert.")
@fail_cleanly
def demo(events: int, seed: int, out_dir: str, budget: float) -> None:
    """Simulate a realistic stream with attacks, replay it, and show alerts with their reasons. No server needed."""
    from stream.eval.metrics import WindowCollector
    from stream.sim import simulate as run_sim
    from stream.sim import write_jsonl
    from stream.sources import FileSource

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stream_path = out / "events.jsonl.gz"
    click.echo(f"1/2 simulating {events:,} events (seed {seed}) -> {stream_path}", err=True)
    write_jsonl(run_sim(sim_config(events, seed, None, ())), stream_path)
    settings = load_settings(None, overrides={"engine.budget": budget})
    for stale in ("alerts.jsonl", "alerts.db", "alerts.db-wal", "alerts.db-shm"):
        (out / stale).unlink(missing_ok=True)  # a fresh demo, not an append to the last one
    click.echo("2/2 replaying through the engine", err=True)
    source = FileSource([stream_path], batch_size=int(settings.engine["batch_size"]))
    window = WindowCollector()  # the evaluation `riskstream replay` adds (its defaults), so compare fills every row
    result = run_replay_with_outputs(
        source, settings, alerts_out=str(out / "alerts.jsonl"), db=f"sqlite:///{out / 'alerts.db'}",
        dead_letters=str(out / "dead-letters.jsonl"), top=8, input_bytes=stream_path.stat().st_size, title="demo",
        observe=window.add,
    )
    result["eval"] = window.report()
    (out / "report.json").write_bytes(orjson.dumps(dict(result), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    if result.get("error"):  # the stream file broke part-way (a full disk?): no next steps on half a stream
        raise SourceError(result["error"])
    report = out / "report-0.5pct.json"
    db_url = f"sqlite:///{out / 'alerts.db'}"
    password = _console_user(db_url)
    click.echo(f"\nNext: riskstream replay {stream_path} --budget 0.005 -q --report {report}\n"
               f"      riskstream compare {out / 'report.json'} {report}   # the two budgets side by side\n"
               f"      riskstream console --db {db_url}   # these alerts as cases: http://127.0.0.1:8080, "
               f"sign in as demo / {password}", err=True)


def _console_user(db_url: str) -> str:
    """An admin ``demo`` with a fresh random password in the demo's store, for the analyst console."""
    import secrets

    from sinks.sql import create_sql_engine
    from stream.console.store import ConsoleStore

    password = secrets.token_urlsafe(9)
    engine = create_sql_engine(db_url)
    try:
        ConsoleStore(engine).add_user("demo", password, "admin")
    finally:
        engine.dispose()
    return password

"""``riskstream nab``: the rate detector on the Numenta Anomaly Benchmark, scored as NAB scores (registered on
:data:`stream.cli.cli`)."""

from __future__ import annotations

import platform
import shlex
import time
from pathlib import Path
from typing import Any

import click
import orjson

from stream.cli.base import fail_cleanly
from stream.errors import ConfigError

__all__ = ["nab"]

_PROFILE_TITLES = {"standard": "standard", "reward_low_FP_rate": "low FP", "reward_low_FN_rate": "low FN"}


def _params(specs: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for spec in specs:
        name, eq, value = spec.partition("=")
        if not eq or not name:
            raise ConfigError(f"--param: expected NAME=VALUE, got {spec!r}")
        try:
            parsed = orjson.loads(value)
        except orjson.JSONDecodeError:
            parsed = value  # a bare string
        out[name] = tuple(parsed) if isinstance(parsed, list) else parsed
    return out


@click.command("nab")
@click.option("--data", "data_dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="NAB data folder (default: nab/ in $RISKSTREAM_DATA, else in ../shared/data beside the "
                   "repository; see its README.md).")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write the results as JSON.")
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE",
              help="A RateDetector parameter (JSON value), e.g. --param history=4000 --param 'levels=[10,30]'.")
@click.option("--published", multiple=True, metavar="DETECTOR",
              help="Also score a published detector (numenta, randomCutForest, ... or 'all') from its shipped "
                   "per-point scores with the same scorer, beside NAB's scoreboard.")
@click.option("--per-file", is_flag=True, help="Put each series' standard-profile score in the JSON.")
@fail_cleanly
def nab(data_dir: str | None, out: str | None, params: tuple[str, ...], published: tuple[str, ...],
        per_file: bool) -> None:
    """Run the rate detector on all 58 NAB series and score it with NAB's windowed scoring.

    \b
    Each series gets a fresh detector that scores each point, then learns it (no labels). Each profile's
    threshold is the one that maximises the corpus score (NAB's optimiser, as for every published
    detector); the first 15% of each series (at most 750 points) is not scored. Scores are normalised:
    0 = never detect, 100 = every window at its first point.
    \b
    riskstream nab --out bench/nab/results.json --published numenta --published randomCutForest
    """
    from rich.console import Console
    from rich.table import Table

    from detectors.rate import RateDetector
    from stream.eval import nab as nabmod

    data = Path(data_dir) if data_dir else nabmod.default_data_dir()
    config = {"feature": "value", "time_feature": nabmod.TIME_FEATURE, **_params(params)}
    try:
        full = RateDetector(**config)._get_params()
    except (TypeError, ValueError) as e:
        raise ConfigError(f"--param: {e}") from None

    err = Console(stderr=True, highlight=False)
    with err.status("running the rate detector on NAB") as status:
        result = nabmod.run_nab(lambda: RateDetector(**config), data, per_file=per_file,
                                on_series=lambda name, n: status.update(f"rate detector: {name} ({n} points)"))
    names = list(published)
    if "all" in names:
        names = sorted(nabmod.load_thresholds(data))
    comparison: dict[str, Any] = {}
    if names:
        started = time.perf_counter()
        with err.status(f"scoring {len(names)} published detector(s) from their shipped scores"):
            comparison = nabmod.score_published(names, data)
        err.print(f"published detectors scored in {time.perf_counter() - started:.1f} s")

    table = Table(title=f"NAB v1.1, {result['series']} series, {result['points']:,} points, "
                        f"{result['windows']} windows: normalised scores (this scorer | NAB's scoreboard)",
                  title_justify="left")
    table.add_column("detector")
    for title in _PROFILE_TITLES.values():
        table.add_column(title, justify="right")
        table.add_column("board", justify="right", style="dim")
    table.add_row("rate (this run)", *[c for p in _PROFILE_TITLES
                                       for c in (f"{result['profiles'][p]['score']:.2f}", "")])
    for d, row in comparison.items():
        board = row["published"]
        table.add_row(d, *[c for p in _PROFILE_TITLES for c in (
            f"{row['at_published_threshold'][p]:.2f}", f"{board[p]:.2f}" if board is not None else "")])
    out_console = Console(highlight=False)
    out_console.width = max(out_console.width, 100)  # not a terminal: rich assumes 80 columns
    out_console.print(table)
    std = result["profiles"]["standard"]
    click.echo(f"rate: standard profile {std['score']:.2f} (threshold {std['threshold']}), "
               f"{std['windows_detected']}/{std['windows']} windows detected, {std['fp']} false-positive points; "
               f"{result['points'] / max(result['seconds'], 1e-9):,.0f} points/s")
    if out:
        words = ["riskstream", "nab"] + (["--data", data_dir] if data_dir else []) + ["--out", out]
        words += [w for spec in params for w in ("--param", spec)]
        words += [w for d in published for w in ("--published", d)] + (["--per-file"] if per_file else [])
        doc = {
            "command": " ".join(shlex.quote(w) for w in words),
            "detector": {"name": "rate", "params": full},
            "rate": result,
            "published": comparison,
            "python": platform.python_version(),
        }
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
        click.echo(f"wrote {out}", err=True)

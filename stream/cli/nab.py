"""``riskstream nab``: the rate detector on the Numenta Anomaly Benchmark, scored as NAB scores (registered on
:data:`stream.cli.cli`)."""

from __future__ import annotations

import itertools
import platform
import shlex
import time
import tomllib
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


def _grid(path: str, base: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The candidates of a grid file (TOML, a list of values per RateDetector parameter): name -> overrides."""
    from detectors.rate import RateDetector

    try:
        doc = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"--grid {path}: {e}") from None
    if not doc:
        raise ConfigError(f"--grid {path}: no parameters")
    axes: list[list[tuple[str, Any]]] = []
    for name, values in doc.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"--grid {path}: {name} must be a non-empty list of values, got {values!r}")
        axis = []
        for v in values:
            value = tuple(v) if isinstance(v, list) else v
            try:
                RateDetector(**{**base, name: value})
            except (TypeError, ValueError) as e:
                raise ConfigError(f"--grid {path}: {name} = {v!r}: {e}") from None
            axis.append((name, value))
        axes.append(axis)
    return {" ".join(f"{k}={orjson.dumps(v).decode()}" for k, v in combo): dict(combo)
            for combo in itertools.product(*axes)}


def _cross_validate(data: Path, config: dict[str, Any], grid_path: str, candidates: dict[str, dict[str, Any]],
                    err: Any) -> dict[str, Any]:
    """Run every candidate of the grid (:func:`_grid`) on NAB and cross-validate them by category
    (``nabmod.cross_validate``)."""
    from detectors.rate import RateDetector
    from stream.eval import nab as nabmod

    full = RateDetector(**config)._get_params()
    prefer = next((k for k, over in candidates.items()
                   if RateDetector(**{**config, **over})._get_params() == full), None)
    corpus = nabmod.load_corpus(data)
    scores: dict[str, dict[str, Any]] = {}
    started = time.perf_counter()
    with err.status("cross-validating") as status:
        for i, (name, over) in enumerate(candidates.items(), 1):
            status.update(f"candidate {i}/{len(candidates)}: {name}")
            params = {**config, **over}
            scores[name] = nabmod.corpus_scores(lambda p=params: RateDetector(**p), corpus)
        status.update("choosing on the other categories")
        cv = nabmod.cross_validate(corpus, scores, nabmod.load_profiles(data), prefer=prefer)
    err.print(f"{len(candidates)} candidates run and cross-validated in {time.perf_counter() - started:.0f} s")
    return {"grid": grid_path, "candidates": {k: {n: list(v) if isinstance(v, tuple) else v for n, v in o.items()}
                                              for k, o in candidates.items()}, **cv}


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
@click.option("--grid", "grid_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Also cross-validate the parameters of this grid (TOML: a list of values per parameter; "
                   "bench/nab/grid.toml): each NAB category is scored with the candidate chosen on the others.")
@fail_cleanly
def nab(data_dir: str | None, out: str | None, params: tuple[str, ...], published: tuple[str, ...],
        per_file: bool, grid_path: str | None) -> None:
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
    candidates = _grid(grid_path, config) if grid_path else None  # a bad grid fails before anything runs
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
    cv: dict[str, Any] | None = None
    if grid_path and candidates is not None:
        cv = _cross_validate(data, config, grid_path, candidates, err)
        _print_cross_validation(cv, out_console)
    if out:
        words = ["riskstream", "nab"] + (["--data", data_dir] if data_dir else []) + ["--out", out]
        words += [w for spec in params for w in ("--param", spec)]
        words += [w for d in published for w in ("--published", d)] + (["--per-file"] if per_file else [])
        words += ["--grid", grid_path] if grid_path else []
        doc = {
            "command": " ".join(shlex.quote(w) for w in words),
            "detector": {"name": "rate", "params": full},
            "rate": result,
            "published": comparison,
            "python": platform.python_version(),
        }
        if cv is not None:
            doc["cross_validation"] = cv
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
        click.echo(f"wrote {out}", err=True)


def _print_cross_validation(cv: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    table = Table(title="Leave one category out: each category scored with the candidate chosen on the other six "
                        "(standard profile)", title_justify="left")
    for col, justify in (("held-out category", "left"), ("series", "right"), ("windows", "right"),
                         ("chosen on the others", "left"), ("its score on the others", "right")):
        table.add_column(col, justify=justify)
    prefer = cv["prefer"]
    for c, fold in cv["folds"].items():
        pick = "(the defaults)" if fold["pick"] == prefer else fold["pick"]
        table.add_row(c, str(fold["series"]), str(fold["windows"]), pick, f"{fold['train_score']:.2f}")
    console.print(table)
    scores = cv["in_sample"]["standard"]
    top = max(scores, key=lambda k: (scores[k], k == prefer))
    default = f"the defaults {scores[prefer]:.2f}, " if prefer is not None else ""
    click.echo(f"chosen on all of NAB (in sample): {default}the best candidate {scores[top]:.2f} ({top})")
    click.echo(f"held out by category, standard profile: parameters held out "
               f"{cv['parameters_held_out']['standard']['score']:.2f}, parameters and threshold held out "
               f"{cv['all_held_out']['standard']['score']:.2f}")
    if prefer is not None:
        click.echo(f"the defaults everywhere, each category at the threshold chosen on the others: "
                   f"{cv['prefer_all_held_out']['standard']['score']:.2f}")

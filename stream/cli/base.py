"""What every command shares: error mapping, settings loading, the column-mapping options and time parsing.

Commands are thin: they validate arguments, call one library function, print, and map riskstream's errors to
one-line messages and exit codes (2: bad configuration or argument; 1: a failure while running).
"""

from __future__ import annotations

import functools
import logging
import re
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from sinks.errors import DatabaseURLError
from stream.config import Settings, load_settings
from stream.errors import ERRORS, ConfigError

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("riskstream")


def fail_cleanly(fn: F) -> F:
    """Turn riskstream's own errors into one line, ``riskstream: error: <message>``, and an exit code: 2 for a
    :class:`ConfigError` or a :class:`click.UsageError` the command raises (a bad configuration, or options
    that do not go together), 1 for a failure while running. (click's own errors about a single option, raised
    before the command runs, keep click's format: usage, then one ``Error:`` line.)"""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (ConfigError, DatabaseURLError) as e:  # a database URL that cannot work is a configuration error
            click.echo(f"riskstream: error: {e}", err=True)
            sys.exit(2)
        except click.UsageError as e:
            click.echo(f"riskstream: error: {e.format_message()}", err=True)
            sys.exit(2)
        except ERRORS as e:
            click.echo(f"riskstream: error: {e}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("riskstream: interrupted", err=True)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


def settings_from(config: str | None, overrides: dict[str, Any]) -> Settings:
    """The settings of ``config`` (or the defaults) with the options the user gave laid over them."""
    return load_settings(config, overrides={k: v for k, v in overrides.items() if v is not None})


def mapping_options(fn: F) -> F:
    opts = [
        click.option("--format", "fmt", type=click.Choice(["jsonl", "csv", "parquet", "arrow"]), default=None,
                     help="Input format (default: from the file name)."),
        click.option("--type", "etype", type=click.Choice(["order", "login", "label"]), default=None,
                     help="Event type of every record, when the data has no `type` column."),
        click.option("--map", "map_spec", multiple=True, metavar="FIELD=COLUMN,...",
                     help="Map event fields onto your columns, e.g. ts=TX_DATETIME,user_id=CUSTOMER_ID."),
        click.option("--set", "set_spec", multiple=True, metavar="FIELD=VALUE,...",
                     help="Fill a field your data lacks with a constant, e.g. merchant_id=unknown."),
        click.option("--features", "feature_cols", default="auto", show_default=True,
                     help="Columns passed through as numeric features: auto (every unmapped numeric column), "
                          "none, or a comma-separated list."),
        click.option("--drop", default=None, metavar="COL,...",
                     help="Columns never passed through as features (ids, leaked labels)."),
        click.option("--ts-origin", default=None,
                     help="Origin of a numeric ts column given in seconds (ISO-8601 or epoch seconds; default 0)."),
        click.option("--ts-unit", type=click.Choice(["s", "ms"]), default="s", show_default=True,
                     help="Unit of a numeric ts column: seconds from --ts-origin, or epoch milliseconds."),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def column_mapping(etype, map_spec, set_spec, feature_cols, drop, ts_origin, ts_unit):
    from stream.sources import ColumnMapping

    return ColumnMapping.parse(type=etype, map_spec=list(map_spec), set_spec=list(set_spec),
                               features=feature_cols, drop=drop, ts_origin=ts_origin, ts_unit=ts_unit)


def parse_day(option: str, text: str | None, *, end: bool) -> float | None:
    """Epoch seconds of an ISO-8601 date or time (UTC); a bare date is its start, or with ``end`` its end."""
    if text is None:
        return None
    from stream.errors import InvalidEvent
    from stream.events import parse_ts

    try:
        ts = parse_ts(text.strip(), option)
    except InvalidEvent as e:
        raise click.UsageError(f"{option}: {e.problem}") from None
    if end and len(text.strip()) == 10:  # YYYY-MM-DD: through the end of that day
        ts += 86400.0
    return ts


def parse_when(option: str, text: str | None) -> float | None:
    """Epoch seconds from ISO-8601 text (UTC unless an offset is given) or a number of epoch seconds."""
    if text is None:
        return None
    from stream.errors import InvalidEvent
    from stream.events import parse_ts

    try:
        return float(text)
    except ValueError:
        pass
    try:
        return parse_ts(text, option)
    except InvalidEvent as e:
        raise ConfigError(f"{option}: {text!r} is not an ISO-8601 time or epoch seconds") from e


def input_size(path: str) -> int:
    try:
        return Path(path).stat().st_size
    except OSError:
        return 0


#: A duration with its unit (``30m``, ``1h``): a bare number is no duration here, it would be epoch seconds.
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")


def is_duration(text: str) -> bool:
    """Whether ``text`` is a duration such as ``30m``, ``1h``, ``2d`` or ``1w`` (else it should be a time)."""
    return _DURATION.match(text) is not None


def parse_since(text: str, *, now: float | None = None) -> float:
    """Epoch seconds from ``30m`` / ``1h`` / ``2d`` / ``1w`` (that long before ``now``) or ISO-8601 text.

    >>> parse_since("1h", now=7200.0), parse_since("1970-01-01T00:01:00Z")
    (3600.0, 60.0)
    """
    if is_duration(text):
        from stream.eval.delayed_labels import parse_duration

        return (time.time() if now is None else now) - parse_duration(text.strip())
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(
            f"--since: expected a duration (30m, 1h, 2d, 1w) or an ISO-8601 time, not {text!r}") from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()

"""The ``riskstream`` command: one module per command, registered here explicitly.

Each module in this package holds one command (or one command group) and only parses arguments, calls the
library and prints; :mod:`stream.cli.base` holds what they share (error mapping, settings loading, the column
mapping options). A bad argument or configuration exits with status 2 and one line naming the problem; a
failure while running exits with status 1.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

import click

from stream.cli.alerts import alerts
from stream.cli.bench import bench
from stream.cli.compare import compare
from stream.cli.config import config
from stream.cli.console import console
from stream.cli.db import db
from stream.cli.demo import demo
from stream.cli.labels import label
from stream.cli.nab import nab
from stream.cli.replay import replay
from stream.cli.rules import rules
from stream.cli.run import run
from stream.cli.simulate import simulate

__all__ = ["main", "cli", "COMMANDS"]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("-v", "--verbose", count=True,
              help="More log output: -v adds info lines and the Kafka client library's own log, -vv debug.")
@click.version_option(package_name="riskstream")
def cli(verbose: int) -> None:
    """riskstream: a streaming risk-control engine for e-commerce.

    \b
    First run:   riskstream demo
    Backtest:    riskstream replay events.jsonl.gz --budget 0.01 --report report.json
    Production:  riskstream run --config riskstream.toml
    """
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(level=max(level, logging.DEBUG), format="%(asctime)s %(levelname)s %(name)s %(message)s",
                        stream=sys.stderr)
    # kafka-python logs every failed connection attempt (some 30 lines for a broker that is down) before it
    # gives up; riskstream then says what happened in one line. At the default verbosity its log stays out of
    # stderr; -v shows it again.
    logging.getLogger("kafka").setLevel(logging.CRITICAL + 1 if verbose == 0 else logging.NOTSET)


#: Every command, in the order ``riskstream --help`` lists them.
COMMANDS: tuple[click.Command, ...] = (demo, simulate, replay, compare, bench, run, alerts, console, rules, db, label,
                                       nab, config)
for _command in COMMANDS:
    cli.add_command(_command)


def main(argv: Sequence[str] | None = None) -> None:
    cli.main(args=list(argv) if argv is not None else None, prog_name="riskstream")



"""Live rule packs: what a running consumer (and a replay of its group) needs to switch rule packs in place.

A running ``riskstream run`` reads the store's active rule pack version (``rule_pack_active``, one primary-key
row) at checkpoint boundaries, at most every ``kafka.rules_poll_interval_s``; when it differs from the version a
unit runs, the unit records a *switch* in its decision log (a cut with :data:`~stream.kafka.units.RULES_KEY`: the
unit's next offsets and the version), then swaps its engine's rules (:meth:`stream.pipeline.Engine.set_rules`)
before it processes the next record. A successor, a restart and ``replay_kafka(..., group=G)`` read the switch back
and apply it at the same offsets, with the pack text stored in ``rule_packs``. See docs/console.md.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from stream.config import Settings
from stream.errors import CheckpointError, ConfigError

__all__ = ["RuleWatch", "open_rule_watch"]

log = logging.getLogger("riskstream.runtime")


class RuleWatch:
    """The active rule pack version of a store, polled at most every ``interval_s``, and the engine parameters
    of any stored version (validated against ``settings``, cached).

    ``version`` is the last active version read (None: nothing stored yet, or never read).
    """

    def __init__(self, store: Any, settings: Settings, interval_s: float = 1.0) -> None:
        self.store = store
        self.settings = settings
        self.interval_s = float(interval_s)
        self.version: int | None = None
        self._next = 0.0
        self._params: dict[int, dict[str, Any]] = {}

    def poll(self, *, force: bool = False) -> int | None:
        """Read the active version (unless read less than ``interval_s`` ago); a store error is logged and the
        last version read is kept."""
        now = time.monotonic()
        if not force and now < self._next:
            return self.version
        self._next = now + self.interval_s
        try:
            self.version = self.store.active_version()
        except Exception as e:  # noqa: BLE001 - the store is down: keep running the rules we have
            log.warning("event=rules_poll_failed error=%s", f"{type(e).__name__}: {e}".replace("\n", " ")[:300])
        return self.version

    def params(self, version: int) -> dict[str, Any]:
        """The ``detectors.rules`` parameters of stored version ``version`` (``LookupError`` if there is none, a
        :class:`ConfigError` if it does not validate against the current configuration, a
        :class:`CheckpointError`, retriable when the database may come back, if the store cannot be read)."""
        got = self._params.get(version)
        if got is None:
            from sqlalchemy import select

            from stream.rulepacks import parse_pack, rule_packs_table, settings_with_pack

            try:
                with self.store.engine.connect() as conn:
                    text = conn.execute(select(rule_packs_table.c.pack)
                                        .where(rule_packs_table.c.version == int(version))).scalar_one_or_none()
            except SQLAlchemyError as e:
                from sinks.sql import describe_error

                reason, retriable = describe_error(e, None)
                err = CheckpointError(f"cannot read rule pack version {version}: {reason}")
                err.retriable = retriable
                raise err from e
            if text is None:
                raise LookupError(f"no rule pack version {version} in the store")
            got = dict(settings_with_pack(self.settings, parse_pack(str(text))).detectors["rules"])
            self._params[version] = got
        return got

    def close(self) -> None:
        self.store.engine.dispose()


def open_rule_watch(settings: Settings, url: str | None = None) -> RuleWatch | None:
    """A :class:`RuleWatch` on the alert store (``url``, else ``sinks.database``), or None when there is none or
    ``kafka.rules_poll_interval_s`` is 0 (the configured rules only)."""
    from sinks.sql import create_sql_engine
    from stream.rulepacks import RulePackStore

    url = url or str(settings.sinks.get("database") or "")
    interval = float(settings.kafka.get("rules_poll_interval_s", 1.0))
    if not url or interval <= 0:
        return None
    try:
        engine = create_sql_engine(url)
    except Exception as e:  # noqa: BLE001
        raise ConfigError(f"rule packs: cannot open the store: {type(e).__name__}: {e}") from None
    return RuleWatch(RulePackStore(engine, settings), settings, interval)

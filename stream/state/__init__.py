"""Where partition-unit checkpoints live: files (:class:`LocalStateStore`) or PostgreSQL (:class:`PgStateStore`).

:func:`open_state_store` builds the one the ``[state]`` settings section names. See :mod:`stream.state.base`
for the checkpoint record and the protocol every store implements.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from stream.errors import ConfigError
from stream.state.base import FORMAT_VERSION, Checkpoint, DecisionLog, StateStore
from stream.state.local import LocalStateStore

if TYPE_CHECKING:
    from stream.state.postgres import PgStateStore

__all__ = ["Checkpoint", "StateStore", "DecisionLog", "LocalStateStore", "PgStateStore", "open_state_store",
           "FORMAT_VERSION"]


def open_state_store(state: Mapping[str, Any], *, key: str | None = None, database: str | None = None) -> StateStore:
    """The store the ``[state]`` settings section names.

    ``store = "local"``: files under ``dir``. ``store = "postgres"``: the ``riskstream_checkpoints`` table at
    ``state.database`` (else ``database``, the alert store's URL), each checkpoint signed with HMAC-SHA256 under
    ``key`` (the loader reads it from the environment variable that ``state.key_env`` names).
    """
    kind = str(state.get("store", "local"))
    if kind == "local":
        directory = str(state.get("dir") or "")
        if not directory:
            raise ConfigError('state.dir must name a directory when state.store = "local"')
        return LocalStateStore(directory)
    if kind == "postgres":
        url = str(state.get("database") or "") or (database or "")
        if not url:
            raise ConfigError('state.store = "postgres" needs state.database or sinks.database '
                              "(or RISKSTREAM_DATABASE_URL)")
        if not key:
            raise ConfigError(f'state.store = "postgres" needs an HMAC key in the environment variable '
                              f'{state.get("key_env") or "RISKSTREAM_STATE_KEY"} (e.g. `openssl rand -hex 32`)')
        from stream.state.postgres import PgStateStore

        try:
            return PgStateStore(url, key=key, accept_v1_mac=bool(state.get("accept_v1_mac", False)))
        except ValueError as e:
            raise ConfigError(f"state store: {e}") from None
    raise ConfigError(f'state.store must be "local" or "postgres", not {kind!r}')


def __getattr__(name: str) -> Any:
    # PgStateStore imports SQLAlchemy: load it only when asked for.
    if name == "PgStateStore":
        from stream.state.postgres import PgStateStore

        return PgStateStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

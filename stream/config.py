"""One frozen settings object, loaded in one place.

Sources, lowest precedence first:

1. the embedded defaults (``stream/defaults/riskstream.toml``),
2. a TOML file (``--config``), laid over the defaults key by key,
3. the environment: ``RISKSTREAM_DATABASE_URL`` (``sinks.database``), ``RISKSTREAM_KAFKA_BOOTSTRAP``
   (``kafka.bootstrap_servers``), and ``RISKSTREAM__SECTION__KEY=<TOML value>`` for any other key,
4. explicit overrides from the CLI.

Every key is checked against the defaults: an unknown key or a value of the wrong type is a
:class:`~stream.errors.ConfigError` naming the key. So is a weight in ``[ensemble.weights]`` that is not a number
>= 0 or names no configured detector, and a rule (or any detector with ``unknown_features``) that names a feature
the engine never computes and ``features.upstream`` does not list. Components never read the environment
themselves.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import math
import os
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import orjson

from stream.errors import ConfigError

__all__ = ["Settings", "load_settings", "default_settings", "DEFAULTS"]


def _load_defaults() -> dict[str, Any]:
    text = resources.files("stream").joinpath("defaults/riskstream.toml").read_text()
    return tomllib.loads(text)


DEFAULTS: dict[str, Any] = _load_defaults()
#: Sections whose content changes what gets scored and alerted; they make up the configuration hash.
_DETECTION_SECTIONS = ("engine", "features", "ensemble", "detectors", "labels", "links")
#: Sections that hold free-form tables (keys are checked by their consumers, not against the defaults).
_OPEN_TABLES = {("detectors",), ("ensemble", "weights"), ("ensemble", "calibration"),
                ("detectors", "rules", "blocklists")}


#: Options added after alert ids were first issued: ``(section, kept, keys)``. While ``kept(section)`` is false (the
#: option is off, or at the default it was added with) its keys stay out of :meth:`Config.detection_dict`, so the
#: config hash, and with it every alert id made before the option existed, does not change.
_LATER_OPTIONS: tuple[tuple[str, Callable[[dict[str, Any]], bool], tuple[str, ...]], ...] = (
    ("ensemble", lambda s: s.get("risk", "rank") != "rank", ("risk",)),
    ("ensemble", lambda s: bool(s.get("bandit", {}).get("enabled", False)), ("bandit",)),
    ("ensemble", lambda s: bool(s.get("adaptive", {}).get("enabled", False)), ("adaptive",)),
    ("ensemble", lambda s: any(v != "rank" for v in s.get("calibration", {}).values()), ("calibration",)),
    ("links", lambda s: bool(s.get("risk_prior", False)), ("risk_prior", "prior_strength")),
    ("features", lambda s: s.get("max_entities") != DEFAULTS["features"]["max_entities"], ("max_entities",)),
    ("links", lambda s: s.get("max_entities") != DEFAULTS["links"]["max_entities"], ("max_entities",)),
)


@dataclass(frozen=True)
class Settings:
    """Validated configuration. ``data`` is the full merged tree; use the section properties to read it."""

    data: Mapping[str, Any]
    source: str = "<defaults>"
    #: The checkpoint HMAC key read from the variable ``state.key_env`` names; kept out of ``data`` so that
    #: ``config show`` and logs never print it.
    state_key: str | None = field(default=None, repr=False)

    def section(self, name: str) -> dict[str, Any]:
        return copy.deepcopy(dict(self.data[name]))

    @property
    def engine(self) -> dict[str, Any]:
        return self.section("engine")

    @property
    def features(self) -> dict[str, Any]:
        """The feature extractor's parameters (``upstream`` only names pass-through features for the checks)."""
        out = self.section("features")
        out.pop("upstream", None)
        return out

    @property
    def ensemble(self) -> dict[str, Any]:
        return self.section("ensemble")

    @property
    def detectors(self) -> dict[str, dict[str, Any]]:
        """Enabled detectors and their parameters (``enabled = false`` removes one)."""
        out = {}
        for name, params in self.section("detectors").items():
            params = dict(params)
            if params.pop("enabled", True):
                out[name] = params
        return out

    @property
    def sinks(self) -> dict[str, Any]:
        return self.section("sinks")

    @property
    def kafka(self) -> dict[str, Any]:
        return self.section("kafka")

    @property
    def state(self) -> dict[str, Any]:
        return self.section("state")

    @property
    def metrics(self) -> dict[str, Any]:
        return self.section("metrics")

    @property
    def budget(self) -> float:
        return float(self.data["engine"]["budget"])

    def detection_dict(self) -> dict[str, Any]:
        """The part of the configuration that decides scores and alerts (no addresses, paths or ports)."""
        out = {k: self.data[k] for k in _DETECTION_SECTIONS}
        out = copy.deepcopy(out)
        out["engine"].pop("batch_size", None)  # results do not depend on it
        out["engine"].pop("core", None)  # nor on which engine computes them (tests/core/)
        out["features"].pop("upstream", None)  # only checked against the rules, changes no score
        for section, keeps, keys in _LATER_OPTIONS:
            part = out.get(section)
            if isinstance(part, dict) and not keeps(part):
                for key in keys:
                    part.pop(key, None)
        # Adaptive weights stopped handing a blind detector's weight to the others (detectors/adaptive.py): with
        # labels the same configuration decides differently than before, so it must not keep the hash (and alert
        # ids, and checkpoints) of before. A version of the adapter's rules, not an option.
        adaptive = out["ensemble"].get("adaptive")
        if isinstance(adaptive, dict):
            adaptive["blind"] = "kept"
            if adaptive.get("measure") == "auc":  # the measure before the option existed
                del adaptive["measure"]
        # `priors` joined the defaults later: disabled, it and its weight stay out (the hash before it returns)
        priors = out["detectors"].get("priors")
        if isinstance(priors, dict) and priors.get("enabled", True) is False:
            del out["detectors"]["priors"]
            weights = out["ensemble"].get("weights")
            if isinstance(weights, dict):
                weights.pop("priors", None)
        # the z-score's window entered the defaults (4096, the panel's pick) where the detector's own default, 2048,
        # had applied unstated: stated at 2048 it is the detector of before, and hashes as before (so the configs
        # pinned "as measured" keep the hashes of their committed results)
        zscore = out["detectors"].get("zscore")
        if isinstance(zscore, dict) and zscore.get("window") == 2048:
            del zscore["window"]
        return out

    @property
    def config_hash(self) -> str:
        """Short hash of :meth:`detection_dict`; part of every alert id."""
        blob = orjson.dumps(self.detection_dict(), option=orjson.OPT_SORT_KEYS)
        return hashlib.sha256(blob).hexdigest()[:16]

    def to_toml(self) -> str:
        """The settings as TOML, every password in a URL-valued key (``sinks.database``, ``state.database``,
        any other ``scheme://user:password@...`` string) shown as ``***``; :attr:`config_hash` is still of the
        real settings."""
        return _dump_toml(_masked(self.data))

    def replace(self, overrides: Mapping[str, Any]) -> Settings:
        """A copy with dotted-key overrides applied (``{"engine.budget": 0.01}``), validated."""
        data = copy.deepcopy(dict(self.data))
        for dotted, value in overrides.items():
            _set_dotted(data, dotted, value)
        _validate(data, DEFAULTS, ())
        _check_database_urls(data)
        _check_detection(data)
        return Settings(data, self.source, self.state_key)


def default_settings() -> Settings:
    return load_settings(None, env={})


def load_settings(
    path: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Load defaults, then ``path``, then the environment (``os.environ`` unless ``env`` is given), then overrides."""
    data = copy.deepcopy(DEFAULTS)
    source = "<defaults>"
    if path is not None:
        p = Path(path)
        try:
            text = p.read_text()
        except OSError as e:
            raise ConfigError(f"config file {p}: {e.strerror or e}") from None
        try:
            user = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"config file {p}: invalid TOML: {e}") from None
        _merge(data, user, ())
        source = str(p)
    environ = os.environ if env is None else env
    if url := environ.get("RISKSTREAM_DATABASE_URL"):
        data["sinks"]["database"] = url
    if boot := environ.get("RISKSTREAM_KAFKA_BOOTSTRAP"):
        data["kafka"]["bootstrap_servers"] = boot
    for key, raw in environ.items():
        if key.startswith("RISKSTREAM__"):
            dotted = ".".join(part.lower() for part in key[len("RISKSTREAM__") :].split("__"))
            try:
                value = tomllib.loads(f"v = {raw}")["v"]
            except tomllib.TOMLDecodeError:
                value = raw  # a bare string
            _set_dotted(data, dotted, value)
    for dotted, value in (overrides or {}).items():
        _set_dotted(data, dotted, value)
    _validate(data, DEFAULTS, ())
    _check_database_urls(data)
    _check_detection(data)
    key_env = str(data["state"].get("key_env") or "")
    return Settings(data, source, environ.get(key_env) if key_env else None)


# --- helpers ---------------------------------------------------------------------------------------------------


def _merge(base: dict[str, Any], new: Mapping[str, Any], path: tuple[str, ...]) -> None:
    for key, value in new.items():
        here = (*path, key)
        if key not in base and path not in _OPEN_TABLES and here[:1] != ("detectors",):
            raise ConfigError(f"unknown config key {'.'.join(here)!r}")
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value, here)
        else:
            base[key] = copy.deepcopy(value)


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for i, part in enumerate(parts[:-1]):
        nxt = node.get(part)
        if nxt is None and tuple(parts[: i + 1])[:1] == ("detectors",):
            nxt = node[part] = {}
        if not isinstance(nxt, dict):
            raise ConfigError(f"unknown config key {dotted!r}")
        node = nxt
    if parts[-1] not in node and tuple(parts[:-1]) not in _OPEN_TABLES and parts[:1] != ["detectors"]:
        raise ConfigError(f"unknown config key {dotted!r}")
    node[parts[-1]] = value


def _validate(data: Mapping[str, Any], ref: Mapping[str, Any], path: tuple[str, ...]) -> None:
    if path in _OPEN_TABLES or path[:1] == ("detectors",):
        return  # detector parameters are checked when the detector is built
    for key, value in data.items():
        here = (*path, key)
        name = ".".join(here)
        if key not in ref:
            raise ConfigError(f"unknown config key {name!r}")
        expected = ref[key]
        if isinstance(expected, dict):
            if not isinstance(value, dict):
                raise ConfigError(f"config key {name!r} must be a table")
            _validate(value, expected, here)
        elif isinstance(expected, bool):
            if not isinstance(value, bool):
                raise ConfigError(f"config key {name!r} must be true or false, not {value!r}")
        elif isinstance(expected, int | float):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"config key {name!r} must be a number, not {value!r}")
            if isinstance(expected, int) and not isinstance(value, int) and not isinstance(expected, bool):
                if not float(value).is_integer():
                    raise ConfigError(f"config key {name!r} must be a whole number, not {value!r}")
            if value < 0:
                raise ConfigError(f"config key {name!r} must be >= 0, not {value!r}")
        elif isinstance(expected, str):
            if not isinstance(value, str):
                raise ConfigError(f"config key {name!r} must be a string, not {value!r}")
        elif isinstance(expected, list) and not isinstance(value, list):
            raise ConfigError(f"config key {name!r} must be a list, not {value!r}")
    if path == ("kafka",) and "decision_prune_interval_s" in data:
        v = data["decision_prune_interval_s"]
        if not math.isfinite(v):
            raise ConfigError(f"config key 'kafka.decision_prune_interval_s' must be a finite number of seconds "
                              f"(0 = never prune), not {v!r}")
    if path == ("links",) and "prior_strength" in data:
        v = data["prior_strength"]
        if not (math.isfinite(v) and v > 0):
            raise ConfigError(f"config key 'links.prior_strength' must be a finite number of labels > 0 (the "
                              f"cohort's weight), not {v!r}")
    if path == ("engine",):
        b = data.get("budget", 0.005)
        if not 0 < b < 1:
            raise ConfigError(f"config key 'engine.budget' must be between 0 and 1 (exclusive), not {b!r}")
        if int(data.get("batch_size", 1)) < 1:
            raise ConfigError("config key 'engine.batch_size' must be at least 1")
        if data.get("core", "compiled") not in ("compiled", "python"):
            raise ConfigError(f"config key 'engine.core' must be \"compiled\" or \"python\", not {data.get('core')!r}")


#: Keys holding a SQLAlchemy URL ("" = none), checked when settings are loaded.
DATABASE_URL_KEYS = (("sinks", "database"), ("state", "database"))


def _check_database_urls(data: Mapping[str, Any]) -> None:
    """Each database URL parses, names PostgreSQL or SQLite, a known installed driver and a numeric port; the
    message names the key and the URL with its password hidden (see :func:`sinks.sql.check_database_url`)."""
    for section, key in DATABASE_URL_KEYS:
        url = data[section][key]
        if url:
            from sinks.sql import DatabaseURLError, check_database_url  # here: SQLAlchemy only when a URL is set

            try:
                check_database_url(url)
            except DatabaseURLError as e:
                raise ConfigError(f"config key '{section}.{key}': {e}") from None


def _masked(value: Any) -> Any:
    """``value`` with the password of every URL in its strings replaced by ``***``."""
    if isinstance(value, str):
        if "://" in value and "@" in value:
            from sinks.sql import mask_url_password

            return mask_url_password(value)
        return value
    if isinstance(value, Mapping):
        return {k: _masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v) for v in value]
    return value


def _did_you_mean(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, sorted(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_detection(data: Mapping[str, Any]) -> None:
    """What the per-key checks cannot see: weights against the configured detectors, and the feature names
    the detectors read (rules' ``when``) against those the engine computes."""
    configured = data["detectors"]
    for name, w in data["ensemble"]["weights"].items():
        key = f"ensemble.weights.{name}"
        if isinstance(w, bool) or not isinstance(w, int | float) or not math.isfinite(w) or w < 0:
            raise ConfigError(f"config key {key!r} must be a number >= 0, not {w!r}")
        if name not in configured:
            hint = _did_you_mean(name, configured) or f" (configured: {', '.join(sorted(configured))})"
            raise ConfigError(f"config key {key!r} weighs detector {name!r}, which is not configured{hint}")
    for name, how in data["ensemble"].get("calibration", {}).items():
        key = f"ensemble.calibration.{name}"
        if how not in ("rank", "gaussian"):
            raise ConfigError(f"config key {key!r} must be \"rank\" or \"gaussian\", not {how!r}")
        if name not in configured:
            hint = _did_you_mean(name, configured) or f" (configured: {', '.join(sorted(configured))})"
            raise ConfigError(f"config key {key!r} calibrates detector {name!r}, which is not configured{hint}")
    _check_feature_names(data)


#: The settings the feature names the engine can emit depend on (besides ``detectors``).
_NAME_KEYS = (("features", "windows"), ("features", "passthrough"), ("features", "upstream"),
              ("links", "risk_kinds"), ("links", "risk_windows"))


def _check_feature_names(data: Mapping[str, Any], *, force: bool = False) -> None:
    """Each detector section's class is resolved (one that does not load is a :class:`ConfigError`); each
    enabled detector that can tell which features it reads (``unknown_features(known)``, e.g. rules, under any
    section name) is built and given the names the engine computes; a name it reads beyond them is a
    :class:`ConfigError`.

    The embedded defaults pass (a test says so), so unless ``force``, a configuration that changes none of
    the settings involved is not checked again: loading it does not import the detectors.
    """
    if not force and data["detectors"] == DEFAULTS["detectors"] and all(
            data[s][k] == DEFAULTS[s][k] for s, k in _NAME_KEYS):
        return
    from detectors.registry import available, build, resolve  # here: loading river costs a second

    available()  # registers the built-in detectors
    checked = []
    for name, params in data["detectors"].items():
        if not isinstance(params, Mapping):
            continue
        try:  # a plug-in class that does not load fails here, not mid-run
            cls = resolve(str(params.get("class", name)))
        except ValueError as e:
            raise ConfigError(f"detectors.{name}: {e}") from None
        if params.get("enabled", True) is not False and hasattr(cls, "unknown_features"):
            checked.append((name, params))
    if not checked:
        return
    known = engine_feature_names(data)
    for name, params in checked:
        try:
            det = build(name, {k: v for k, v in params.items() if k != "enabled"})
            unknown = det.unknown_features(frozenset(known))  # type: ignore[attr-defined]
        except ValueError as e:
            raise ConfigError(f"detectors.{name}: {e}") from None
        if unknown:
            where, feature = unknown[0]
            if not data["features"]["passthrough"]:
                upstream = "; features.passthrough is false, so no event feature reaches the detectors"
            else:
                upstream = "; list features your events carry in features.upstream"
            hint = _did_you_mean(feature, known) or upstream
            raise ConfigError(f"detectors.{name}: {where} names unknown feature {feature!r}{hint}")


def engine_feature_names(data: Mapping[str, Any]) -> set[str]:
    """Every feature name an engine with this configuration can put in a feature vector: the extractor's (for
    its windows), the link and entity-risk features (whether those are switched on or not), and the
    pass-through names ``features.upstream`` lists (as the extractor renames them: ``in_<name>`` on a clash)."""
    from stream.features import FeatureExtractor
    from stream.links import LINK_FEATURES, risk_feature_names

    features, links = data["features"], data["links"]
    try:
        names = set(FeatureExtractor(windows=features["windows"]).feature_names())
        names.update(LINK_FEATURES)
        names.update(risk_feature_names(links["risk_kinds"], links["risk_windows"], prior=True))
    except (TypeError, ValueError) as e:
        raise ConfigError(f"features/links: {e}") from None
    if features["passthrough"]:
        for up in features["upstream"]:
            if not isinstance(up, str) or not up:
                raise ConfigError(f"config key 'features.upstream' must list feature names, not {up!r}")
            while up in names:
                up = "in_" + up
            names.add(up)
    return names


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return orjson.dumps(v).decode()
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{" + ", ".join(f"{_key(str(k))} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(type(v))


def _key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() else orjson.dumps(k).decode()


def _dump_toml(data: Mapping[str, Any], prefix: str = "") -> str:
    lines: list[str] = []
    tables: list[tuple[str, Mapping[str, Any]]] = []
    for k, v in data.items():
        if isinstance(v, dict) and v:
            tables.append((f"{prefix}{_key(k)}", v))
        else:
            lines.append(f"{_key(k)} = {_toml_value(v)}")
    out = "\n".join(lines)
    for name, table in tables:
        body = _dump_toml(table, name + ".")
        out += f"\n\n[{name}]\n{body}" if out or prefix else f"[{name}]\n{body}"
    return out.strip() + "\n"

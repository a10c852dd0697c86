"""The Python API: ``from stream import ...``, lazy, and the runnable example of docs/python-api.md."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _python(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env = {k: v for k, v in env.items() if not k.startswith("RISKSTREAM_")}  # the defaults, whatever the shell has
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_the_example_script_runs_and_prints_top_alerts_and_the_auc():
    res = _python("docs/examples/python_api.py", "--events", "6000", "--budget", "0.02")
    assert res.returncode == 0, res.stderr
    out = res.stdout
    m = re.search(r"^(\d+) events scored, (\d+) alerts \(budget 2\.00%\)$", out, re.M)
    assert m and int(m.group(1)) > 5000 and int(m.group(2)) > 0, out
    top = re.findall(r"^  (0\.\d{4})  (low|medium|high|critical) +(order|login) +user=\S+  .+$", out, re.M)
    assert len(top) == 5 and [float(s) for s, *_ in top] == sorted((float(s) for s, *_ in top), reverse=True), out
    auc = re.search(r"^ROC AUC (\d\.\d{3}) \(report\), (\d\.\d{3}) \(from the outcomes\)$", out, re.M)
    assert auc and auc.group(1) == auc.group(2) and float(auc.group(1)) > 0.8, out
    raw = r"^riskiest event \S+: raw scores hst=\S+, zscore=\S+, coldstart=\S+, priors=\S+, rules=\S+$"
    assert re.search(raw, out, re.M), out


def test_import_stream_is_light_and_every_public_name_resolves():
    code = (
        "import sys, stream\n"
        "assert 'stream.pipeline' not in sys.modules and 'numpy' not in sys.modules, sorted(sys.modules)\n"
        "import stream.replay\n"  # the submodule first: stream.replay must still be the function
        "from stream import *\n"
        "import stream as s\n"
        "assert callable(replay) and replay is s.replay and replay.__module__ == 'stream.replay'\n"
        "missing = [n for n in s.__all__ if getattr(s, n, None) is None]\n"
        "assert not missing, missing\n"
        "assert set(s.__all__) <= set(dir(s)) and sorted(s.__all__) == sorted(s._EXPORTS)\n"
        "print('ok')\n"
    )
    res = _python("-c", code)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr


def test_the_api_in_process():
    import stream
    from sinks import MemorySink

    settings = stream.load_settings(env={}, overrides={"engine.budget": 0.02, "ensemble.min_history": 100})
    sink = MemorySink()
    result = stream.replay(stream.ListSource(stream.simulate(stream.SimConfig(events=3000, seed=4))), settings,
                           sinks=[sink])
    assert isinstance(result, stream.ReplayResult) and isinstance(result.engine, stream.Engine)
    assert result["alerts"] == len(sink.alerts) > 0

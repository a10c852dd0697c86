"""What a soak's partition units hold: each unit's latest local checkpoint restored into an engine of the soak's
config, and its state counts printed as one JSON line (entities per kind and their estimated bytes, link-graph
entries, label-store vectors held), with the checkpoint's size and events absorbed.

    python bench/faults/soak_state.py WORKDIR/riskstream.toml WORKDIR/state >> state.jsonl

Run it beside ``soak.py --workdir WORKDIR`` every few minutes to see the state reach its caps (``soak.py
--config bench/faults/soak-caps.toml``); it only reads the checkpoint files (``state.store = "local"``).
"""

from __future__ import annotations

import glob
import sys
import time

import orjson

from stream.compiled import new_engine
from stream.config import load_settings
from stream.state.base import Checkpoint


def main(argv: list[str]) -> int:
    config, state_dir = argv
    settings = load_settings(config)
    units = {}
    for path in sorted(glob.glob(f"{state_dir}/**/unit-*.ckpt", recursive=True)):
        with open(path, "rb") as fh:
            ck = Checkpoint.from_bytes(fh.read(), where=path)
        engine = new_engine(settings)
        engine.restore(ck.state)
        units[path.rsplit("/", 1)[1]] = {"events": ck.events, "state_bytes": len(ck.state),
                                         "stats": engine.memory_stats(), "labels": engine.label_store_stats()}
    print(orjson.dumps({"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "units": units}).decode(),
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Experiment (not a default, not a config option): window counts without the bucket sawtooth.

A window of ``W`` seconds is counted in ``BUCKETS`` (12) buckets ``W / 12`` wide plus the current, partial one
(`stream/features.py`, `_roll`), so it covers between ``W`` and ``13 W / 12`` of the past. For an entity with a
steady rate ``r`` the count climbs from ``r W`` to ``13 r W / 12`` across a bucket and drops back when the oldest
bucket leaves: a sawtooth of 1/12 of the count, which says nothing about the entity. The z-score reads it as a
level shift at every drop; its learning gate then refuses the low values it flags, so its window keeps the
high ones and the feature keeps scoring for most of the next bucket.

Here the oldest bucket counts for the part of it still inside ``[t - W, t]``, its events assumed spread evenly:
``count - f x (its count)`` and ``sum - f x (its sum)``, ``f`` how far ``t`` is into the current bucket. A steady
rate then gives a flat count. Patched into the Python reference engine (``[engine] core = "python"``) for this one
command, by rewriting ``stream/features.py``'s source as it is imported (each replaced piece must be found, or it
stops), so the report's configuration hash is the defaults'; the compiled core does not have it.

    python bench/panel/interpolated_windows.py replay $CACHE/kdd_http.csv.gz --type order \\
        --map ts=ts,label=label --set user_id=host,merchant_id=http,amount=0 \\
        --features duration,src_bytes,dst_bytes --budget 0.005 -q --report /tmp/http__interpolated.json

Everything after the script's name is a ``riskstream`` command line; its ``-c`` file (if any) is used with
``[engine] core = "python"`` added.
Results: ``bench/panel/README.md``, "What the z-score's window really measured on HTTP" (counting the oldest
bucket in proportion).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import source_patch  # noqa: E402

ROLL_OLD = '''    for q, b in zip(rec[-len(bs) :], bs):  # noqa: B905 - same length; strict= would cost a keyword call
        if q:
            if q[-3] == b:  # same bucket as the entity's last event: nothing can have expired
                out.append(n - q[1])
                out.append(s - q[2])
                continue
'''
ROLL_NEW = '''    for q, bf in zip(rec[-len(bs) :], bs):  # noqa: B905 - same length; strict= would cost a keyword call
        b = float(math.floor(bf))
        f = bf - b
        if q:
            if q[-3] == b:  # same bucket as the entity's last event: nothing can have expired
                _emit(q, b, f, n, s, out)
                continue
'''
TAIL_OLD = '''                del q[:3]
                while q[0] < lo:
                    del q[:3]
            out.append(n - q[1])
            out.append(s - q[2])
        else:
            out += _ZERO2
        q.fromlist([b, n, s])
'''
TAIL_NEW = '''                del q[:3]
                while q[0] < lo:
                    del q[:3]
            _emit(q, b, f, n, s, out)
        else:
            out += _ZERO2
        q.fromlist([b, n, s])


def _emit(q, b, f, n, s, out):
    """The window's count and sum, the oldest bucket counted for the part of it still inside the window."""
    c = n - q[1]
    t = s - q[2]
    if q[0] == b - _NB and f > 0:
        nn, ns = (q[4], q[5]) if len(q) > 3 else (n, s)
        c -= f * (nn - q[1])
        t -= f * (ns - q[2])
    out.append(c)
    out.append(t)
'''
BUCKET_IDS = [  # the bucket ids handed to _roll become fractional: t / width, floored inside _roll
    ("bs = [t // g for g in self._widths]", "bs = [t / g for g in self._widths]"),
    ("[t // g for g in self._promo_widths]", "[t / g for g in self._promo_widths]"),
    ("bs = [t // g for g in self._login_widths]", "bs = [t / g for g in self._login_widths]"),
]


def patched_source() -> str:
    return source_patch.patched("stream/features.py", [(ROLL_OLD, ROLL_NEW), (TAIL_OLD, TAIL_NEW), *BUCKET_IDS],
                                "interpolated_windows")


def main(argv: list[str]) -> None:
    source_patch.install("stream.features", "stream/features.py", patched_source())
    source_patch.run(argv, "interpolated_windows")


if __name__ == "__main__":
    main(sys.argv[1:])

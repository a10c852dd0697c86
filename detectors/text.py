"""Numbers in alert reasons: a few significant digits, never float noise such as ``0.21000000000000002``."""

from __future__ import annotations

import math
from collections.abc import Callable

__all__ = ["number", "number_keeping"]


def number(v: float, digits: int = 4) -> str:
    """``v`` to ``digits`` significant digits; whole numbers (and anything from ``10 ** digits`` up) as integers.

    >>> [number(v) for v in (0.07111956018540594, 0.21000000000000002, 6.0, 242.5193, 5968.100000000001, -0.0)]
    ['0.07112', '0.21', '6', '242.5', '5968', '0']
    >>> number(18.5714, 3), number(0.74131, 3), number(2592000.0), number(3.2e-05, 3), number(float("inf"))
    ('18.6', '0.741', '2592000', '3.2e-05', 'inf')
    """
    v = float(v)
    if not math.isfinite(v):
        return str(v)
    if abs(v) < 1e15 and (v.is_integer() or abs(v) >= 10**digits):
        return str(int(round(v)))  # -0.0 -> "0"
    return f"{v:.{digits}g}"


def number_keeping(v: float, holds: Callable[[float], bool], digits: int = 4) -> str:
    """:func:`number`, with as many more digits as it takes for the printed value to still satisfy ``holds``
    (a rule's clause: ``9.9996 < 10`` must not print as ``10 < 10``).

    >>> number_keeping(9.9996, lambda x: x < 10), number(9.9996)
    ('9.9996', '10')
    """
    for d in range(digits, 18):
        text = number(v, d)
        if holds(float(text)):
            return text
    return repr(float(v))

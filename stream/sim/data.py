"""The simulated world's fixed tables: cities, IP prefixes, user agents, promo codes, the diurnal curve."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from typing import Any

__all__ = [
    "CITIES", "PREFIXES", "HOSTING", "ATTACK_CITIES", "UAS_PHONE", "UAS_DESKTOP", "UAS_BOT", "PROMOS_NORMAL",
    "PROMOS_ABUSED", "SALE_CODE", "CURVE_RAW", "CURVE", "CURVE_MAX", "ORDER_COUNTS", "CUM_ORDER_COUNTS", "P_TYPO",
    "P_PASSWORD", "EVENTS_PER_SESSION", "P_SIGNUP", "HOUR", "DAY", "stratified", "km", "pick",
]


# fmt: off
# (country, city, lat, lon, UTC offset in hours, share of users)
CITIES: tuple[tuple[str, str, float, float, float, float], ...] = (
    ("US", "New York", 40.71, -74.01, -5, 0.08), ("US", "Chicago", 41.88, -87.63, -6, 0.05),
    ("US", "Houston", 29.76, -95.37, -6, 0.04), ("US", "Los Angeles", 34.05, -118.24, -8, 0.05),
    ("CA", "Toronto", 43.65, -79.38, -5, 0.03), ("MX", "Mexico City", 19.43, -99.13, -6, 0.03),
    ("BR", "Sao Paulo", -23.55, -46.63, -3, 0.05), ("GB", "London", 51.51, -0.13, 0, 0.07),
    ("GB", "Manchester", 53.48, -2.24, 0, 0.03), ("DE", "Berlin", 52.52, 13.40, 1, 0.05),
    ("DE", "Munich", 48.14, 11.58, 1, 0.04), ("DE", "Hamburg", 53.55, 9.99, 1, 0.03),
    ("FR", "Paris", 48.86, 2.35, 1, 0.06), ("FR", "Lyon", 45.76, 4.84, 1, 0.03),
    ("ES", "Madrid", 40.42, -3.70, 1, 0.035), ("ES", "Barcelona", 41.39, 2.17, 1, 0.025),
    ("IT", "Rome", 41.90, 12.50, 1, 0.03), ("IT", "Milan", 45.46, 9.19, 1, 0.03),
    ("NL", "Amsterdam", 52.37, 4.90, 1, 0.04), ("PL", "Warsaw", 52.23, 21.01, 1, 0.04),
    ("SE", "Stockholm", 59.33, 18.07, 1, 0.02), ("RO", "Bucharest", 44.43, 26.10, 2, 0.01),
    ("NG", "Lagos", 6.52, 3.38, 1, 0.01), ("IN", "Mumbai", 19.08, 72.88, 5.5, 0.025),
    ("IN", "Delhi", 28.61, 77.21, 5.5, 0.025), ("VN", "Hanoi", 21.03, 105.85, 7, 0.005),
    ("ID", "Jakarta", -6.20, 106.85, 7, 0.005), ("JP", "Tokyo", 35.68, 139.69, 9, 0.03),
    ("AU", "Sydney", -33.87, 151.21, 10, 0.03),
)

# residential prefixes, then one mobile-carrier prefix (last) per country
PREFIXES: dict[str, tuple[str, ...]] = {
    "US": ("73.162", "98.207", "174.63", "24.14", "172.56"), "CA": ("99.224", "70.48", "174.88"),
    "MX": ("187.190", "201.141", "189.203"), "BR": ("177.32", "189.6", "179.220"),
    "GB": ("81.106", "86.14", "90.241", "92.40"), "DE": ("84.150", "91.64", "79.227", "109.40"),
    "FR": ("90.84", "82.64", "86.253", "37.167"), "ES": ("83.45", "88.12", "31.4"),
    "IT": ("79.12", "93.34", "151.38"), "NL": ("84.104", "145.53", "31.20"), "PL": ("83.4", "89.64", "37.47"),
    "SE": ("78.70", "90.230", "31.208"), "RO": ("86.120", "79.117", "5.12"),
    "NG": ("105.112", "197.210", "102.89"), "IN": ("49.36", "122.161", "106.200"),
    "VN": ("113.161", "14.226", "27.72"), "ID": ("36.68", "114.124", "110.136"),
    "JP": ("126.15", "153.205", "49.96"), "AU": ("101.160", "120.148", "1.136"),
}
# hosting / proxy ranges attackers rent: (prefix, index in CITIES of where they geolocate)
HOSTING: tuple[tuple[str, int], ...] = (
    ("185.220", 18), ("45.134", 9), ("104.244", 0), ("198.98", 3), ("193.32", 21), ("103.152", 25),
)
# where attackers themselves sit, weighted: (index in CITIES, weight)
ATTACK_CITIES: tuple[tuple[int, float], ...] = (
    (22, 3.0), (21, 3.0), (25, 2.0), (26, 2.0), (6, 1.5), (23, 1.0), (18, 1.0), (0, 1.0), (27, 0.5),
    (19, 1.0),
)

UAS_PHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_3 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.3 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/121.0.6167.164 "
    "Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 13; Pixel 7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.230 "
    "Mobile Safari/537.36",
    "ShopApp/5.12.0 (iOS 17.2; iPhone14,5)",
    "ShopApp/5.11.3 (Android 14; SM-A546B)",
)
UAS_DESKTOP = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/121.0.0.0 "
    "Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 "
    "Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:122.0) Gecko/20100101 Firefox/122.0",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
)
UAS_BOT = (
    "python-requests/2.31.0",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.0.0 "
    "Safari/537.36",
    "okhttp/4.12.0",
)
PROMOS_NORMAL = ("SPRING10", "WELCOME10", "FREESHIP", "VIP20", "APP5")
PROMOS_ABUSED = ("WELCOME10", "NEWUSER15", "REFER20")
SALE_CODE = "SALE24"

# relative session rate by local hour (0..23): a night trough, lunch and evening peaks
CURVE_RAW = (0.35, 0.2, 0.12, 0.08, 0.07, 0.1, 0.25, 0.5, 0.75, 0.95, 1.05, 1.15,
              1.3, 1.25, 1.15, 1.1, 1.1, 1.2, 1.4, 1.6, 1.75, 1.65, 1.2, 0.7)
# fmt: on
CURVE = tuple(v * 24 / sum(CURVE_RAW) for v in CURVE_RAW)
CURVE_MAX = max(CURVE)

# session shape: orders per session (0..3), failed-password typo per session, sign-ups per session
ORDER_COUNTS = (0.40, 0.42, 0.13, 0.05)
CUM_ORDER_COUNTS = tuple(sum(ORDER_COUNTS[: i + 1]) for i in range(len(ORDER_COUNTS)))
P_TYPO = 0.04
P_PASSWORD = 0.6
EVENTS_PER_SESSION = 1.0 + P_TYPO * 1.1 + sum(i * p for i, p in enumerate(ORDER_COUNTS))
P_SIGNUP = 0.015

HOUR = 3600.0
DAY = 86400.0


def stratified(name: str, n: int, lo: float, hi: float, r: random.Random) -> Iterator[tuple[float, str]]:
    """``n`` increasing times in ``[lo, hi)``, one uniformly at random in each of ``n`` equal strata."""
    width = (hi - lo) / n
    for i in range(n):
        yield lo + (i + r.random()) * width, name


def km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in km."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 12742.0 * math.asin(min(1.0, math.sqrt(a)))


def pick(r: random.Random, seq: Any) -> Any:
    """``r.choice(seq)``, faster (one float draw)."""
    return seq[int(r.random() * len(seq))]

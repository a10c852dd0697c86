"""Cost of one online training step of the autoencoder's network: riskstream's numpy ``Net`` against torch.

The network is the autoencoder's default, ``d -> 32 -> 8 -> 32 -> d`` with ``tanh`` hidden layers, a linear
output, mean squared error and Adam, ``d = 30`` (ULB's V1..V28, amount and one more). Two regimes:

* ``batch 1``: score one event (a forward pass) and take one Adam step on it, what an event-by-event online
  learner does;
* ``batch 64``: score 64 events in one pass and take one Adam step on their mean loss (what
  :class:`detectors.neural.Autoencoder` does with its default ``batch_size``), reported per event.

Usage (torch is never a dependency of riskstream: run its half from a scratch environment)::

    python bench/neural_step_bench.py --impl numpy                 # riskstream's venv
    /tmp/torchvenv/bin/python bench/neural_step_bench.py --impl torch   # python -m venv + pip install torch numpy

Prints wall-clock and CPU microseconds per event for each regime, one JSON line (``--out`` appends it to a file).
torch runs with ``torch.set_num_threads(1)`` (one consumer per core, like the engine).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

D, SIZES = 30, [30, 32, 8, 32, 30]


def bench(fn, n: int) -> tuple[float, float]:
    fn()  # warm up
    w, c = time.perf_counter(), time.process_time()
    for _ in range(n):
        fn()
    return (time.perf_counter() - w) / n * 1e6, (time.process_time() - c) / n * 1e6


def numpy_impl(x1: np.ndarray, x64: np.ndarray, n: int) -> dict[str, float]:
    from detectors.neural import Net

    net = Net(SIZES, lr=0.002, seed=0)

    def one() -> None:
        net.forward(x1)
        net.step(x1, lambda out: 2.0 * (out - x1) / x1.size)

    def many() -> None:
        net.forward(x64)
        net.step(x64, lambda out: 2.0 * (out - x64) / x64.size)

    w1, c1 = bench(one, n)
    w64, c64 = bench(many, n // 8)
    return {"batch1_wall_us": w1, "batch1_cpu_us": c1, "batch64_wall_us_per_event": w64 / 64,
            "batch64_cpu_us_per_event": c64 / 64}


def torch_impl(x1: np.ndarray, x64: np.ndarray, n: int) -> dict[str, float]:
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    layers: list[torch.nn.Module] = []
    for i, (a, b) in enumerate(zip(SIZES[:-1], SIZES[1:], strict=True)):
        layers.append(torch.nn.Linear(a, b, dtype=torch.float64))
        if i < len(SIZES) - 2:
            layers.append(torch.nn.Tanh())
    net = torch.nn.Sequential(*layers)
    opt = torch.optim.Adam(net.parameters(), lr=0.002)
    t1, t64 = torch.from_numpy(x1), torch.from_numpy(x64)

    def step(t: torch.Tensor) -> None:
        with torch.no_grad():
            net(t)  # the score
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(net(t), t)
        loss.backward()
        opt.step()

    w1, c1 = bench(lambda: step(t1), n)
    w64, c64 = bench(lambda: step(t64), n // 8)
    return {"torch": torch.__version__, "batch1_wall_us": w1, "batch1_cpu_us": c1,
            "batch64_wall_us_per_event": w64 / 64, "batch64_cpu_us_per_event": c64 / 64}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--impl", choices=["numpy", "torch"], required=True)
    ap.add_argument("-n", type=int, default=20000, help="batch-1 steps timed (batch-64 steps: n / 8)")
    ap.add_argument("--out", default=None, help="append the JSON line to this file")
    args = ap.parse_args()
    rng = np.random.default_rng(1)
    x1, x64 = rng.normal(size=(1, D)), rng.normal(size=(64, D))
    res = (numpy_impl if args.impl == "numpy" else torch_impl)(x1, x64, args.n)
    res = {"impl": args.impl, "numpy": np.__version__, "sizes": SIZES, **{k: (round(v, 2) if isinstance(v, float)
                                                                              else v) for k, v in res.items()}}
    line = json.dumps(res)
    print(line)
    if args.out:
        with open(args.out, "a") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    main()

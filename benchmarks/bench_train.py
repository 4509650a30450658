"""The cost of the core's trainer against a hand-written training loop on the same chip.

    python benchmarks/bench_train.py [--quick] [--threads 1,2]

One epoch of backprop on a 784-256-10 MLP (batch 100, 6000 images) through
:class:`neuroemu.train.Trainer` with :class:`neuroemu.rules.backprop.Backprop`, against the same
epoch written by hand (forward, transposed reads, scheme updates, bias steps, clock) on an
identical chip, both measured in the same run. ratio = hand-loop time / trainer time (1.0 = no
overhead). The trainer adds the rule's generator and the divergence watch per batch, and per epoch
an evaluation the hand loop does not make: a recorder snapshot of every tile (device statistics,
conductance histograms) and the chip's counters. Target: >= 0.9 on every chip, at each thread count
of ``--threads`` (BLAS and numba together).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import neuroemu  # noqa: F401 - before numpy: it sets the thread pools' idle policy (neuroemu/__init__.py)
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.timing import add_threads_option, at_threads, median_times  # noqa: E402

from neuroemu import Hardware, Periphery, Protocol, Trainer  # noqa: E402
from neuroemu.data.classification import ClassificationTask  # noqa: E402
from neuroemu.models.mlp import MLP  # noqa: E402
from neuroemu.rules.backprop import Backprop, softmax  # noqa: E402

TARGET = 0.9


def hand_epoch(chip, x, y, batch, lr, rng):
    """The loop the trainer replaces: what a study wrote before the core existed."""
    order = rng.permutation(len(x))
    layers = list(chip)
    for i in range(0, len(x) - batch + 1, batch):
        xb, yb = x[order[i:i + batch]], y[order[i:i + batch]]
        acts, h = [xb], xb
        for k, layer in enumerate(layers):
            z = layer.forward(h) + layer.bias
            h = np.maximum(z, 0.0) if k < len(layers) - 1 else z
            acts.append(h)
        d = softmax(h)
        d[np.arange(len(yb)), yb] -= 1.0
        d /= len(yb)
        for k in range(len(layers) - 1, -1, -1):
            d_prev = layers[k].backward(d) * (acts[k] > 0) if k > 0 else None
            layers[k].scheme.update(acts[k], d, lr)
            layers[k].bias -= lr * d.sum(axis=0)
            d = d_prev
        chip.advance(0.01)


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="few repetitions (smoke test)")
    add_threads_option(ap)
    args = ap.parse_args(argv)
    repeat = 2 if args.quick else 7
    rng = np.random.default_rng(0)
    x = rng.random((6000, 784), dtype=np.float32)
    y = rng.integers(0, 10, 6000)
    chips = [("exact float", Hardware.exact()),
             ("ideal card, ideal periphery", Hardware.ideal()),
             ("PCM, mixed precision, default periphery",
              Hardware(card="pcm_nandakumar2018", scheme="mixed_precision", periphery=Periphery())),
             ("RRAM, stochastic coincidence", Hardware(card="rram_gong2018", scheme="stochastic_coincidence",
                                                       periphery=Periphery()))]

    def measure(_n):
        rows = []
        for label, hw in chips:
            model = MLP([784, 256, 10])
            hand_chip, core_chip = model.build(hw, rng=1), model.build(hw, rng=1)
            task = ClassificationTask(x, y, batch_size=100, rng=2)

            def core():
                Trainer(core_chip, Backprop(0.01), task, Protocol(epochs=1, seconds_per_update=0.01),
                        observe_start=False, progress=False).run()

            base, t = median_times([lambda: hand_epoch(hand_chip, x, y, 100, 0.01, np.random.default_rng(2)),
                                    core], repeat, warmup=1)
            rows.append({"chip": label, "hand_ms": base * 1e3, "trainer_ms": t * 1e3, "ratio": base / t})
        return rows

    rows = at_threads(args.threads, measure)
    print(f"one epoch of backprop, 784-256-10, 6000 images, batch 100; baseline = the hand-written loop; "
          f"median of {repeat}")
    print(f"{'threads':>7} {'chip':<42} {'hand ms':>9} {'trainer ms':>11} {'ratio':>6}")
    for r in rows:
        print(f"{r['threads']:>7} {r['chip']:<42} {r['hand_ms']:>9.1f} {r['trainer_ms']:>11.1f} {r['ratio']:>6.2f}")
    for n in sorted({r["threads"] for r in rows}):
        worst = min(r["ratio"] for r in rows if r["threads"] == n)
        print(f"target at {n} thread(s): ratio >= {TARGET} on every chip: {'met' if worst >= TARGET else 'NOT met'}")
    return rows


if __name__ == "__main__":
    main()

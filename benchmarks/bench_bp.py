"""Backprop training throughput of the self-defined-target networks against a plain-numpy step.

    python benchmarks/bench_bp.py [--quick] [--threads 1,2] [--batch B]

Networks (those of ``examples/sdt``, built by the experiment, float32, seed 0), each trained one
step on a batch of random images towards its self-defined target (k-WTA of y − H, homeostasis):
* 784-2000 MLP, clip(x, 0, 1) outputs, SGD (the unsupervised one-layer network);
* the CNN's output layer on frozen conv features: 6272 -> 3000, Adam (``train_conv: false``);
* the CNN end to end, conv layers trained (50 % pruned), Adam.

Baseline, measured in the same run: the same forward, target and loss, then the full backward
(down to the input gradient) and the optimiser written as plain numpy (Adam: the twin in
``tests/reference/optim.py``), on the network's own float32 arrays. Ours: one step of the study's
rule (:class:`neuroemu.rules.sdt.SelfDefinedTargets` around
:class:`~neuroemu.rules.sdt.TargetBackprop`) on the network placed on an exact float chip
(``Hardware.exact()``: every step reads the chip's float32 weights and writes the optimiser's change
back; the backward stops at the lowest weights; Adam is one fused numba pass per array). Both start from the
same weights and the benchmark checks that one step of each gives the same weights. Ratio = baseline
time / our time (higher is better); throughput = training samples per second. Each network is built,
checked and timed at each thread count of ``--threads`` (BLAS and numba together).

A second table times the CNN's max pooling (4×4 windows, stride 2, padding 1, after each conv layer
on a batch of 16), forward and backward: the numba kernels of ``nn.MaxPool2d`` against their numpy
twin (``tests/reference/pool.py``, one strided comparison or add per window offset), checked to give
the same bits.

A third table times our CNN step (end to end, 1 thread) in two fresh processes: with glibc's own
malloc thresholds, and with freed large blocks kept for reuse as the command line has it
(:mod:`neuroemu.alloc`; the first two tables run with the latter, ``--malloc default`` for the former).

A fourth table times the backward of the semi-supervised network's first layer (784 → 5000, batch 256,
1 thread) on errors with a share of subnormal entries, as a softmax sure of its class gives them:
``nn.Linear.backward``, which sets them to zero first, against the same two matrix products on the
errors as they are. The ratio depends on the processor: x86 cores that take a microcode assist per
subnormal operand (many Intel ones) slow down the most.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import neuroemu  # noqa: F401 - before numpy: it sets the thread pools' idle policy (neuroemu/__init__.py)
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.timing import add_threads_option, at_threads, median_times  # noqa: E402
from tests.reference import pool as numpy_pool  # noqa: E402
from tests.reference.optim import adam_step as numpy_adam  # noqa: E402

from neuroemu.alloc import keep_freed_memory  # noqa: E402
from neuroemu.chip import Hardware  # noqa: E402
from neuroemu.config import validate  # noqa: E402
from neuroemu.nn import mse_loss  # noqa: E402
from neuroemu.rules.base import run_step  # noqa: E402
from neuroemu.rules.sdt import SelfDefinedTarget, TargetBatch  # noqa: E402
from neuroemu.studies import sdt  # noqa: E402
from neuroemu.threads import limit  # noqa: E402

CASES = [
    ("MLP 784-2000, SGD", {"hidden": [2000]}, {"optimizer": "sgd", "lr": 0.008}, (784,), 6),
    ("CNN output layer 6272-3000, Adam", {"arch": "cnn", "outputs": 3000},
     {"optimizer": "adam", "lr": 2.5e-6, "train_conv": False}, (1, 28, 28), 1),
    ("CNN end to end, Adam", {"arch": "cnn", "outputs": 3000}, {"optimizer": "adam", "lr": 2.5e-6},
     (1, 28, 28), 1),
]


class PlainStep:
    """The baseline: the network's float32 layers trained with the full backward and numpy optimisers."""

    def __init__(self, model, lrs, sgd: bool):
        self.model, self.lrs, self.sgd = model, lrs, sgd
        self.trained = [model.names[n] for n in model.trained]
        self.state = [[(np.zeros_like(p), np.zeros_like(p)) for p in layer.params] for layer in self.trained]
        self.t = 0

    def __call__(self, x, target):
        layers = list(self.model.net)[self.model.start:]
        y = x
        for layer in layers:
            y = layer.forward(y)
        loss, g = mse_loss(y, target(y), None)
        for layer in reversed(layers):
            g = layer.backward(g)
        self.t += 1
        a, r = 1.0 / (1 - 0.9 ** self.t), 1.0 / np.sqrt(1 - 0.999 ** self.t)
        for lr, layer, state in zip(self.lrs, self.trained, self.state):
            for p, gp, (m, s) in zip(layer.params, layer.grads, state):
                if self.sgd:
                    p -= lr * gp
                else:
                    numpy_adam(p, gp.astype(p.dtype), m, s, lr * a, 0.9, 0.999, r, 1e-8)
        for name, mask in self.model.masks.items():
            self.model.names[name].w *= mask
        return loss


def steps(case: tuple, nb: int):
    """(ours, baseline) for one network of CASES, on a batch of nb random images: two step functions
    that start from the same weights and are checked to give the same weights after one step."""
    name, run_opts, bp, shape, k = case
    run = validate({"trainer": "bp", **run_opts}, sdt.RUN, "run")
    run["bp"] = validate(bp, sdt.BP, "bp")
    run["sdt"] = {**validate({}, sdt.SDT, "sdt"), "k": k, "gamma": 0.3}
    model, inner, rule = sdt._network(run, np.random.default_rng(0), np.random.default_rng(2))
    chip = model.build(Hardware.exact(), 0)
    rule.bind(chip)
    twin, _, _ = sdt._network(run, np.random.default_rng(0), np.random.default_rng(2))
    plain = PlainStep(twin, inner.lrs, bp["optimizer"] == "sgd")
    x = np.random.default_rng(1).random((nb, *shape), dtype=np.float32)
    x, x_twin = model.features(chip, x, nb), twin.features(chip, x, nb)
    target = SelfDefinedTarget(sdt._n_out(run), k=k, gamma=0.3)

    def ours():
        return run_step(rule, chip, TargetBatch(x, None, 1))["loss"]

    def baseline():
        return plain(x_twin, target)

    ours(), baseline()  # one step each from the same weights: the same result
    for layer in model.trained:
        np.testing.assert_allclose(chip[layer].weights(), twin.names[layer].w, rtol=1e-4, atol=1e-6)
    return ours, baseline


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="few repetitions (smoke test)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--malloc", choices=("keep", "default"), default="keep",
                    help="keep: glibc keeps freed large blocks, as the command line has it (neuroemu.alloc); "
                         "default: glibc's own thresholds")
    ap.add_argument("--cnn-step-ms", type=int, metavar="REPEAT", help=argparse.SUPPRESS)  # the allocator table's child
    add_threads_option(ap)
    args = ap.parse_args(argv)
    repeat, nb = (3 if args.quick else 10), args.batch
    if args.malloc == "keep":
        keep_freed_memory()
    if args.cnn_step_ms:
        with limit(1):
            ours, _ = steps(CASES[-1], nb)
            print(median_times([ours], args.cnn_step_ms)[0] * 1e3)
        return []

    def measure(_n):
        rows = []
        for case in CASES:
            ours, baseline = steps(case, nb)
            times = median_times([baseline, ours], repeat)
            for what, t in zip(("plain numpy step", "ours"), times):
                rows.append({"network": case[0], "case": what, "ms": t * 1e3, "samples_per_s": nb / t,
                             "ratio": times[0] / t})
        return rows

    rows = at_threads(args.threads, measure)
    print(f"backprop training step to the self-defined target, batch {nb}, float32; median of {repeat}")
    print(f"{'threads':>7} {'network':<34} {'case':<17} {'ms':>9} {'samples/s':>11} {'ratio':>7}")
    for r in rows:
        print(f"{r['threads']:>7} {r['network']:<34} {r['case']:<17} {r['ms']:>9.2f} {r['samples_per_s']:>11.0f} "
              f"{r['ratio']:>7.2f}")
    print(f"\nthe CNN end to end (ours), batch {nb}, 1 thread, in a fresh process per allocator; median of "
          f"{3 * repeat}")
    mallocs = allocator(nb, 3 * repeat)
    print(f"{'allocator':<46} {'ms':>9} {'ratio':>7}")
    for r in mallocs:
        print(f"{r['allocator']:<46} {r['ms']:>9.2f} {r['ratio']:>7.2f}")
    pools = pooling(nb, 10 * repeat)
    print(f"\nthe CNN's max pooling (4×4, stride 2, padding 1), forward + backward, batch {nb}, float32, 1 thread; "
          f"median of {10 * repeat}")
    print(f"{'input':<18} {'numpy twin ms':>14} {'kernel ms':>10} {'ratio':>7}")
    for r in pools:
        print(f"{r['input']:<18} {r['numpy_ms']:>14.2f} {r['kernel_ms']:>10.2f} {r['ratio']:>7.2f}")
    subs = subnormal_errors(repeat)
    print(f"\nbackward of Linear(784, 5000), batch 256, float32, 1 thread, errors with subnormal entries; median of "
          f"{repeat}")
    print(f"{'subnormal share':<16} {'unflushed ms':>13} {'ours ms':>9} {'ratio':>7}")
    for r in subs:
        print(f"{r['share']:<16} {r['numpy_ms']:>13.2f} {r['ours_ms']:>9.2f} {r['ratio']:>7.2f}")
    return rows + mallocs + pools + subs


def subnormal_errors(repeat: int) -> list[dict]:
    """Linear(784, 5000).backward against gy.T @ x and gy @ w on the unflushed errors."""
    from neuroemu.nn import Linear

    rng = np.random.default_rng(0)
    layer = Linear(784, 5000, rng=0)
    x = rng.random((256, 784), dtype=np.float32)
    layer.forward(x)
    rows = []
    with limit(1):
        for share in (0.0, 0.001, 0.01):
            gy = rng.standard_normal((256, 5000)).astype(np.float32) * np.float32(1e-3)
            gy[rng.random(gy.shape) < share] = np.finfo(np.float32).tiny / 4

            def unflushed():
                return gy.T @ x, gy @ layer.w

            def ours():
                return layer.backward(gy)

            times = median_times([unflushed, ours], repeat)
            rows.append({"share": f"{share:.1%}", "numpy_ms": times[0] * 1e3, "ours_ms": times[1] * 1e3,
                         "ratio": times[0] / times[1]})
    return rows


def allocator(nb: int, repeat: int) -> list[dict]:
    """Our CNN step under glibc's own malloc thresholds and with freed large blocks kept
    (:func:`neuroemu.alloc.keep_freed_memory`), each in a fresh process of this script."""
    ms = {}
    for malloc in ("default", "keep"):
        out = subprocess.run([sys.executable, __file__, "--malloc", malloc, "--batch", str(nb), "--cnn-step-ms",
                              str(repeat)], capture_output=True, text=True, check=True)
        ms[malloc] = float(out.stdout.split()[-1])
    return [{"allocator": text, "ms": ms[m], "ratio": ms["default"] / ms[m]}
            for m, text in (("default", "glibc's thresholds"), ("keep", "freed large blocks kept (the command line)"))]


def pooling(nb: int, repeat: int) -> list[dict]:
    """The CNN's two poolings, forward + backward: nn.MaxPool2d's kernels against the numpy twin."""
    from neuroemu._kernels import pool as kernel
    from neuroemu.nn import MaxPool2d

    rows = []
    for shape in ((nb, 32, 28, 28), (nb, 128, 14, 14)):
        layer = MaxPool2d(4, 2, 1)
        x = np.random.default_rng(0).random(shape, dtype=np.float32)
        xp = layer._padded(x, -np.inf)
        ho, wo = layer._sizes(x)
        gy = np.random.default_rng(1).standard_normal((*shape[:2], ho, wo)).astype(np.float32)
        out = {}

        def step(impl):
            def run():
                arg = np.empty(gy.shape, np.int16)
                y = impl.max_pool_forward(xp, 4, 2, ho, wo, arg)
                gx = np.zeros(xp.shape, np.float32)
                impl.max_pool_backward(arg, gy, 4, 2, gx)
                out[impl.__name__] = (y, gx)
            return run

        fns = [step(numpy_pool), step(kernel)]
        times = median_times(fns, repeat)
        (y0, g0), (y1, g1) = out[numpy_pool.__name__], out[kernel.__name__]
        assert y0.tobytes() == y1.tobytes() and g0.tobytes() == g1.tobytes()
        rows.append({"input": "×".join(map(str, shape)), "numpy_ms": times[0] * 1e3, "kernel_ms": times[1] * 1e3,
                     "ratio": times[0] / times[1]})
    return rows


if __name__ == "__main__":
    main()

"""FastHebb (Lagani et al. 2022): batched Hebbian updates against the per-sample computation.

    python benchmarks/bench_hebb.py [--quick] [--threads 1,2] [--batch B]

Shapes of the issue, batch 64, float32, weights at random unit vectors, ZCA-free random inputs
(the cost does not depend on the values):
* fully connected 784 -> 2000;
* convolutional: 96 filters 5×5 on 28×28 single-channel images: 64 × 576 = 36 864 patches of 25
  values per batch, every patch one sample of the rule.

For every rule (soft-WTA with the raised-cosine similarity, k-WTA, Sanger HPCA, Oja) the update of
one batch is timed three ways, all computing the same ΔW (equal to float tolerance, checked here):
* per-sample: :meth:`HebbianRule.per_sample_loop` — the per-sample equations, one sample at a time
  (its response, then its update, added up), as a Hebbian rule is usually written;
* per-sample, vectorised over samples: :meth:`HebbianRule.per_sample_sum` — every sample's own
  update formed as an (N, K, D) tensor, 256 samples at a time, and summed (the form Hebbian
  libraries used before FastHebb);
* batched: :meth:`HebbianRule.update` — the FastHebb matrix-product form.
ratio = baseline time / batched time (higher is better; the paper: up to 50× on a GPU).
Also the images per second of a whole Hebbian training epoch of the conv layer on Fashion-MNIST
shapes (batched, 1000 images, the rule on exact float weights through the trainer). Everything is
measured at each thread count of ``--threads`` (numba kernels and BLAS together).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import neuroemu  # noqa: F401 - before numpy: it sets the thread pools' idle policy (neuroemu/__init__.py)
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.timing import add_threads_option, at_threads, median_times  # noqa: E402

from neuroemu.chip import Hardware  # noqa: E402
from neuroemu.models.hebbian import LAYER, ConvLayer, DenseLayer  # noqa: E402
from neuroemu.rules.hebbian import Hebbian, HebbianRule, Unlabelled  # noqa: E402
from neuroemu.train import Protocol, Trainer  # noqa: E402

RULES = {"swta": dict(rule="swta", temperature=0.02, sim="raised_cosine"), "kwta": dict(rule="kwta", k=5),
         "hpca": dict(rule="hpca"), "oja": dict(rule="oja")}


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="few repetitions (smoke test)")
    ap.add_argument("--batch", type=int, default=64)
    add_threads_option(ap)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    repeat = 1 if args.quick else 3
    images = rng.standard_normal((args.batch, 1, 28, 28)).astype(np.float32)
    x = rng.standard_normal((250 if args.quick else 1000, 1, 28, 28)).astype(np.float32)

    def measure(_n):
        rows = []
        for name, kw in RULES.items():
            rule = HebbianRule(lr=0.01, weighting="mean", **kw)
            for layer_name, model in (("dense 784->2000", DenseLayer(784, 2000)),
                                      ("conv 96x5x5 on 28x28", ConvLayer(1, 96, 5))):
                w = model.build(Hardware.exact(), 1)[LAYER].weights()
                p = model.samples(images)  # dense: the flattened images; conv: every patch
                batched = rule.update(w, p)
                for name_b, fn in (("loop", rule.per_sample_loop), ("tensor", rule.per_sample_sum)):
                    err = float(np.abs(fn(w, p) - batched).max() / max(np.abs(batched).max(), 1e-30))
                    if err > 1e-3:
                        raise AssertionError(f"{name} {layer_name}: {name_b} and batched updates differ "
                                             f"(rel. {err:.2e})")
                t_loop, t_per, t_batch = median_times([lambda: rule.per_sample_loop(w, p),
                                                       lambda: rule.per_sample_sum(w, p),
                                                       lambda: rule.update(w, p)], repeat=repeat, warmup=1)
                rows.append({"rule": name, "layer": layer_name, "samples": len(p), "loop_ms": t_loop * 1e3,
                             "per_sample_ms": t_per * 1e3, "batched_ms": t_batch * 1e3,
                             "ratio_loop": t_loop / t_batch, "ratio": t_per / t_batch})
        t = time.perf_counter()
        Trainer(ConvLayer(1, 96, 5).build(Hardware.exact(), 2), Hebbian("swta", lr=0.1, weighting="responses"),
                Unlabelled(x, args.batch, 3), Protocol(epochs=1), observe_start=False, progress=False).run()
        rows.append({"rule": "swta", "layer": "conv epoch", "images_per_s": len(x) / (time.perf_counter() - t)})
        return rows

    rows = at_threads(args.threads, measure)
    print(f"FastHebb batched vs per-sample Hebbian update, batch {args.batch} images, float32")
    print(f"{'threads':>7} {'rule':<6} {'layer':<22} {'samples':>8} {'per-sample ms':>14} {'vectorised ms':>14} "
          f"{'batched ms':>11} {'ratio':>7} {'ratio (vect.)':>14}")
    for r in rows:
        if "images_per_s" not in r:
            print(f"{r['threads']:>7} {r['rule']:<6} {r['layer']:<22} {r['samples']:>8} {r['loop_ms']:>14.1f} "
                  f"{r['per_sample_ms']:>14.1f} {r['batched_ms']:>11.2f} {r['ratio_loop']:>7.1f} {r['ratio']:>14.1f}")
    for r in rows:
        if "images_per_s" in r:
            print(f"Hebbian training (soft-WTA, conv 96x5x5, batched) at {r['threads']} thread(s): "
                  f"{r['images_per_s']:.0f} images/s")
    return rows


if __name__ == "__main__":
    main()

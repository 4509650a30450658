"""Train the sparse-SNN network of Perez-Nieves & Goodman (2021) on latency-coded Fashion-MNIST and
export it as a NIR graph, ``sparse_snn_fmnist.nir`` next to this script: the network that
``examples/nir/deploy.yaml`` deploys on emulated hardware.

The network and its training are the defaults of the ``sparse_snn`` study
(:mod:`neuroemu.studies.sparse_snn`): 784-200-200-10 LIF (τ_mem = τ_out = 10 ms, dt = 1 ms, reset by
subtraction, threshold 1), leaky read-out whose maximum over time gives the logits, the sparse
surrogate-gradient backward (B_th = 0.2, fast-sigmoid scale 100, the paper's spike-count
regularisers), Adam with the paper's constant lr 2e-4, batch 256; latency code of 100 steps,
τ_eff = 20 steps, θ = 0.2. To keep the run short it trains for ONE epoch over the full training set
(60000 images; about a minute and a half on 2 CPU cores), in float32 as the study does.

The exported graph (:func:`neuroemu.interop.nir.to_nir` of the trained network on an exact float
chip): Input → layer1 (Linear) → lif1 (LIF) → layer2 → lif2 → layer3 → readout (LI) → Output, the
weights stored as float32 (as trained; the file stays well under 2 MB), time constants in seconds,
metadata ``neuroemu.reset = subtract`` on the LIF nodes and ``neuroemu.readout = max_over_time`` on
the read-out. The script then reads the file back (``from_nir``, the same dt, method ``exact``) and
checks that it classifies the test set exactly as the exporting network does (evaluated in float64:
the arithmetic of the imported network). It prints both test accuracies and the check.

    python examples/nir/export_sparse_snn.py
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
import zlib
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DT = 1e-3  # s per time step: the network's dt (SparseSNN default)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Train the sparse-SNN Fashion-MNIST network and export it as NIR.")
    p.add_argument("--epochs", type=int, default=1, help="training epochs (default 1)")
    p.add_argument("--train-limit", type=int, default=None, help="first N training images (default: all 60000)")
    p.add_argument("--test-limit", type=int, default=None, help="first N test images (default: all 10000)")
    p.add_argument("--data-dir", default=None, help="directory with the Fashion-MNIST IDX files")
    p.add_argument("--seed", type=int, default=0, help="initial weights and batch order (default 0)")
    p.add_argument("--out", default=str(HERE / "sparse_snn_fmnist.nir"), help="the .nir file to write")
    return p.parse_args(argv)


def accuracy_of(predict, x, y, batch=500) -> float:
    correct = 0
    for i in range(0, len(x), batch):
        correct += int((predict(x[i:i + batch]).argmax(axis=1) == y[i:i + batch]).sum())
    return correct / len(x)


def main(argv=None) -> int:
    args = parse_args(argv)
    import nir

    from neuroemu.chip import Hardware
    from neuroemu.data import load_fashion_mnist
    from neuroemu.data.encoders import latency_encode
    from neuroemu.interop.nir import from_nir, to_nir
    from neuroemu.models.snn import SNN
    from neuroemu.rules.sparse import SparseSNN
    from neuroemu.rules.surrogate import Adam
    from neuroemu.studies.sparse_snn import SCHEMA

    m, tr, enc = ({k: opt.default for k, opt in SCHEMA[s].items()} for s in ("model", "train", "encoding"))
    encode = functools.partial(latency_encode, t_steps=enc["t_steps"], tau_eff=enc["tau_eff"], theta=enc["theta"])
    xtr, ytr = load_fashion_mnist("train", data_dir=args.data_dir, limit=args.train_limit)
    xte, yte = load_fashion_mnist("test", data_dir=args.data_dir, limit=args.test_limit)

    # the study's seeding: initial weights and batch order from (seed, crc32("ssgd"))
    rng_init, rng_data = (np.random.default_rng(s) for s in
                          np.random.SeedSequence([args.seed, zlib.crc32(b"ssgd")]).spawn(2))
    n = m["hidden"]
    net = SparseSNN((784, n, n, 10), dt=DT, tau_mem=m["tau_mem"], tau_out=m["tau_out"], b_th=m["b_th"],
                    backward=m["backward"], surrogate_scale=m["surrogate_scale"], rng=rng_init)
    opt = Adam(tr["lr"])
    bs = tr["batch_size"]
    t0 = time.perf_counter()
    for epoch in range(args.epochs):
        order = rng_data.permutation(len(xtr))
        steps = len(xtr) // bs
        for k in range(steps):
            idx = order[k * bs:(k + 1) * bs]
            loss, acc, _ = net.train_step(encode(xtr[idx]), ytr[idx], opt)
            if k % 50 == 0 or k == steps - 1:
                print(f"epoch {epoch + 1} batch {k + 1}/{steps}: loss {loss:.3f} acc {acc:.3f} "
                      f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    train_s = time.perf_counter() - t0

    chip = SNN(net).build(Hardware.exact(), rng=0)  # the float chip holds the weights as trained
    acc32 = accuracy_of(lambda x: chip.forward(encode(x)), xte, yte)
    graph = to_nir(chip, dt=DT)
    for node in graph.nodes.values():  # float32 weights, as trained (float64 would double the file)
        if isinstance(node, nir.Linear):
            node.weight = np.asarray(node.weight, np.float32)
    graph.metadata["neuroemu"]["source"] = "examples/nir/export_sparse_snn.py: SNN(SparseSNN) 784-200-200-10"
    out = Path(args.out)
    nir.write(out, graph)
    size = out.stat().st_size

    # the exporting network in float64 (weights as trained): the arithmetic of the imported network
    net64 = SparseSNN(net.sizes, dt=DT, tau_mem=m["tau_mem"], tau_out=m["tau_out"], rng=0, dtype=np.float64)
    net64.set_weights(net.weights)
    chip64 = SNN(net64).build(Hardware.exact(), rng=0)
    acc64 = accuracy_of(lambda x: chip64.forward(encode(x)), xte, yte)
    imported = from_nir(out, dt=DT, method="exact").build(Hardware.exact())
    acc_nir = accuracy_of(lambda x: imported.model.logits(imported, np.asarray(encode(x), np.float64)), xte, yte)

    print(f"trained {args.epochs} epoch(s) on {len(xtr)} images in {train_s:.0f} s")
    print(f"wrote {out} ({size / 1e6:.2f} MB)")
    print(f"test accuracy ({len(xte)} images), exporting network on Hardware.exact(): "
          f"{100 * acc32:.2f} % (float32, as trained), {100 * acc64:.2f} % (float64)")
    print(f"test accuracy, the .nir file imported back (from_nir, dt {DT:g} s, exact) on Hardware.exact(): "
          f"{100 * acc_nir:.2f} %")
    same = acc_nir == acc64
    print(f"check: the imported network gives the exporting network's accuracy: {'yes' if same else 'NO'}")
    return 0 if same and size < 2e6 else 1


if __name__ == "__main__":
    sys.exit(main())

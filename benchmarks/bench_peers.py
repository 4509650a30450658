"""Peers: the same workloads on neuroemu and, when installed, on PyTorch, snnTorch and aihwkit.

    python benchmarks/bench_peers.py [--quick] [--threads 1,2] [--no-memory]

Every side runs the same shapes in float32, timed in one run as medians of alternating calls
(:func:`benchmarks.timing.median_times`), one table per thread count (numba and BLAS through
:func:`neuroemu.threads.limit`, torch through ``torch.set_num_threads``). ratio = the workload's
baseline time / the row's time (higher is faster). A peer that is not installed is skipped with a
line saying so and how to install it (``pip install -e '.[peers]'`` gives torch and snnTorch;
aihwkit is built from its sdist, see docs/peers.md).

1. Spiking network, forward + backward (surrogate gradient), 784-200-10, T = 100, batch 256; input
   5 %-dense random binary spikes. Hidden LIF with reset by subtraction, a non-spiking leaky
   readout, logits = max over time, softmax cross-entropy (the equations of
   :mod:`neuroemu.rules.sparse`; no spike-count regulariser), surrogate σ'(v) = 1/(100|v − 1| + 1)²,
   β = exp(−1/10), β_out = exp(−1/10). Sides: neuroemu ``SparseSNN`` with the dense and the sparse
   backward, neuroemu ``SpikingMLP`` (current-based LIF neurons, reset to zero: a different neuron,
   for scale), PyTorch (the same recursion written with an autograd Function for the surrogate),
   snnTorch (``Leaky`` layers with the same β, threshold, reset and ``fast_sigmoid(slope=100)``).
   Baseline: PyTorch when installed, else neuroemu dense. Every side gets the same weights; the
   PyTorch side's loss and gradients are checked against neuroemu's dense backward. Peak memory:
   each side runs once more in its own process (one thread) after a small warm-up; the peak
   resident set (VmHWM, reset before the workload where the kernel allows) is printed with the
   growth over the process's size before the workload.
2. Analog forward 784 → 256, batch 256, inputs U[0, 1): numpy float32 ``x @ W.T`` (baseline),
   torch ``x @ W.T``, neuroemu ``Tile`` (linear_step card, 7-bit DAC with noise management, output
   noise, 9-bit ADC), aihwkit ``AnalogLinear`` with ``InferenceRPUConfig`` (its default periphery:
   7-bit DAC, 9-bit ADC, output noise).
3. Pulsed update 784 → 256, batch 100 (x U[0, 1) with half zeros, d ~ N(0, 0.01²), lr 0.01): numpy
   float32 SGD ``W -= lr d.T @ x`` (baseline), torch SGD, neuroemu's stochastic coincidence, mixed
   precision and Tiki-Taka on linear_step and mixed precision on PCM (``make_scheme`` on a
   ``Tile``), aihwkit's pulsed updates on the matching devices (``ConstantStepDevice``,
   ``MixedPrecisionCompound``, Tiki-Taka ``TransferCompound``, ``PCMPresetDevice``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import neuroemu  # noqa: F401 - before numpy: it sets the thread pools' idle policy (neuroemu/__init__.py)
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_update import cycle, make_data  # noqa: E402
from benchmarks.timing import add_threads_option, at_threads, median_times  # noqa: E402

from neuroemu.hardware.crossbar import Periphery, Tile  # noqa: E402
from neuroemu.hardware.schemes import make_scheme  # noqa: E402
from neuroemu.rules.sparse import SparseSNN  # noqa: E402
from neuroemu.rules.surrogate import SpikingMLP  # noqa: E402

N_IN, N_HID, N_OUT, T, BATCH, DENSITY = 784, 200, 10, 100, 256, 0.05
THETA, SCALE = 1.0, 100.0
FWD = (256, 784, 256)  # n_out, n_in, batch
UPD = (256, 784, 100)
LR = 0.01

INSTALL = {
    "torch": "pip install -e '.[peers]' (or pip install torch)",
    "snntorch": "pip install -e '.[peers]' (or pip install snntorch)",
    "aihwkit": "no wheel for this Python: build it from the sdist against CPU torch, see docs/peers.md",
}
SNN_SIDES = ["neuroemu SparseSNN dense", "neuroemu SparseSNN sparse", "neuroemu SpikingMLP (CUBA)",
             "PyTorch", "snnTorch"]


# ----------------------------------------------------------------------------- peers
def find_peers(quiet: bool = False) -> dict:
    """{name: module or None} for torch, snntorch and aihwkit; prints a line for each absent one."""
    peers = {}
    for name in ("torch", "snntorch", "aihwkit"):
        try:
            peers[name] = importlib.import_module(name)
            msg = f"{name} {getattr(peers[name], '__version__', '?')}: found"
        except Exception as exc:  # noqa: BLE001 - ImportError, or a broken install
            peers[name] = None
            why = "not installed" if isinstance(exc, ImportError) else f"import failed ({type(exc).__name__}: {exc})"
            msg = f"{name}: {why} - skipped; to install: {INSTALL[name]}"
        if not quiet:
            print(msg)
    return peers


# ----------------------------------------------------------------------------- workload 1
def snn_data(seed: int = 0, t: int = T, batch: int = BATCH):
    rng = np.random.default_rng(seed)
    s = (rng.random((t, batch, N_IN)) < DENSITY).astype(np.float32)
    return s, rng.integers(0, N_OUT, batch)


def _torch_snn(torch, w1, w2, beta, beta_out, r_out):
    """Plain PyTorch: the LIF recursion of neuroemu.rules.sparse with a surrogate autograd Function."""

    class Spike(torch.autograd.Function):
        @staticmethod
        def forward(ctx, v):
            ctx.save_for_backward(v)
            return (v > THETA).to(v.dtype)

        @staticmethod
        def backward(ctx, g):
            (v,) = ctx.saved_tensors
            return g / (SCALE * (v - THETA).abs() + 1.0) ** 2

    W1 = torch.tensor(w1, requires_grad=True)
    W2 = torch.tensor(w2, requires_grad=True)

    def loss_and_grads(s, labels):
        nt, nb, _ = s.shape
        cur = (s.reshape(nt * nb, -1) @ W1.T).reshape(nt, nb, -1)
        v = torch.zeros(nb, W1.shape[0])
        z = torch.zeros_like(v)
        zs = []
        for t in range(nt):
            v = beta * v + cur[t] - z.detach() * THETA  # reset by subtraction, not differentiated
            z = Spike.apply(v)
            zs.append(z)
        cur2 = (torch.stack(zs).reshape(nt * nb, -1) @ W2.T).reshape(nt, nb, -1)
        y = torch.zeros(nb, W2.shape[0])
        ys = []
        for t in range(nt):
            y = beta_out * y + r_out * cur2[t]  # the read-out of Perez-Nieves & Goodman: r_out = 1 − β_out
            ys.append(y)
        logits = torch.stack(ys).max(dim=0).values
        loss = torch.nn.functional.cross_entropy(logits, labels)
        W1.grad = W2.grad = None
        loss.backward()
        return loss.item(), [W1.grad, W2.grad]

    return loss_and_grads


def _snntorch_snn(torch, snn, w1, w2, beta, beta_out, r_out):
    from snntorch import surrogate

    fc1 = torch.nn.Linear(N_IN, N_HID, bias=False)
    fc2 = torch.nn.Linear(N_HID, N_OUT, bias=False)
    with torch.no_grad():
        fc1.weight.copy_(torch.from_numpy(w1))
        fc2.weight.copy_(torch.from_numpy(w2))
    grad = surrogate.fast_sigmoid(slope=SCALE)
    lif1 = snn.Leaky(beta=beta, threshold=THETA, spike_grad=grad, reset_mechanism="subtract")
    out = snn.Leaky(beta=beta_out, threshold=THETA, spike_grad=grad, reset_mechanism="none")

    def loss_and_grads(s, labels):
        nt, nb, _ = s.shape
        cur = fc1(s)  # all steps in one matmul, as the other sides
        mem = lif1.reset_mem()
        spk = []
        for t in range(nt):
            z, mem = lif1(cur[t], mem)
            spk.append(z)
        cur2 = r_out * fc2(torch.stack(spk))  # Leaky adds its whole input: scaled as the read-out's
        mem2 = out.reset_mem()
        ys = []
        for t in range(nt):
            _, mem2 = out(cur2[t], mem2)
            ys.append(mem2)
        logits = torch.stack(ys).max(dim=0).values
        loss = torch.nn.functional.cross_entropy(logits, labels)
        fc1.weight.grad = fc2.weight.grad = None
        loss.backward()
        return loss.item(), [fc1.weight.grad, fc2.weight.grad]

    return loss_and_grads


def snn_sides(peers: dict, s: np.ndarray, labels: np.ndarray) -> dict:
    """{side name: fn()} doing forward + backward on (s, labels) for every available side."""
    dense = SparseSNN((N_IN, N_HID, N_OUT), backward="dense", reg=None, rng=0)
    sparse = SparseSNN((N_IN, N_HID, N_OUT), backward="sparse", reg=None, rng=0)
    mlp = SpikingMLP((N_IN, N_HID, N_OUT), reg=None, rng=0)
    sides = {SNN_SIDES[0]: lambda: dense.loss_and_grads(s, labels),
             SNN_SIDES[1]: lambda: sparse.loss_and_grads(s, labels),
             SNN_SIDES[2]: lambda: mlp.loss_and_grads(s, labels)}
    torch = peers.get("torch")
    if torch is not None:
        w1, w2 = dense.weights
        ts, tl = torch.from_numpy(s), torch.from_numpy(labels.astype(np.int64))
        fn = _torch_snn(torch, w1, w2, dense.beta, dense.beta_out, dense.readout_scale)
        sides[SNN_SIDES[3]] = lambda: fn(ts, tl)
        if peers.get("snntorch") is not None:
            fs = _snntorch_snn(torch, peers["snntorch"], w1, w2, dense.beta, dense.beta_out, dense.readout_scale)
            sides[SNN_SIDES[4]] = lambda: fs(ts, tl)
    sides["_nets"] = (dense, sparse)
    return sides


def snn_check(sides: dict) -> list[str]:
    """The peers' loss and gradients against neuroemu's dense backward on the same weights."""
    out = []
    loss, _, grads, stats = sides[SNN_SIDES[0]]()
    out.append(f"hidden layer: {stats['mean_count'][0]:.2f} spikes per neuron and sample, active fraction "
               f"(|v - 1| < 0.2) {stats['active_fraction'][0]:.4f}")
    for name in SNN_SIDES[3:]:
        if name in sides:
            l_p, g_p = sides[name]()
            rel = max(float(np.max(np.abs(g.numpy() - g_ne))) / float(np.max(np.abs(g_ne)))
                      for g, g_ne in zip(g_p, grads))
            out.append(f"check {name} vs neuroemu dense: loss {l_p:.6f} vs {loss:.6f}, max |dW diff| / max |dW| "
                       f"= {rel:.1e}")
    return out


# ----------------------------------------------------------------------------- memory (subprocess)
def _status(key: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return float(line.split()[1]) / 1024.0  # kB -> MB
    except OSError:
        pass
    return None


def memory_worker(side: str) -> None:
    """Run one side of workload 1 once in this process (one thread) and print its memory as JSON."""
    import resource

    from neuroemu.threads import limit

    peers = {n: None for n in ("torch", "snntorch", "aihwkit")}
    if side in ("PyTorch", "snnTorch"):
        peers["torch"] = importlib.import_module("torch")
        peers["torch"].set_num_threads(1)
        if side == "snnTorch":
            peers["snntorch"] = importlib.import_module("snntorch")
    with limit(1):
        small, small_lab = snn_data(1, t=5, batch=8)
        sides = snn_sides(peers, small, small_lab)
        sides[side]()  # warm-up: numba compilation, allocator pools
        s, labels = snn_data(0)
        sides = snn_sides(peers, s, labels)
        reset = True
        try:
            Path("/proc/self/clear_refs").write_text("5")  # reset the peak RSS (VmHWM)
        except OSError:
            reset = False
        before = _status("VmRSS")
        sides[side]()
        peak = _status("VmHWM")
        if peak is None:  # not Linux: ru_maxrss (KiB on Linux, bytes on macOS)
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024.0 ** 2 if sys.platform == "darwin"
                                                                         else 1024.0)
    print(json.dumps({"side": side, "peak_mb": peak, "before_mb": before, "reset": reset}))


def measure_memory(sides: list[str]) -> list[dict]:
    rows = []
    for side in sides:
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--memory-worker", side],
                              capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        line = next((ln for ln in reversed(proc.stdout.splitlines()) if ln.startswith("{")), None)
        if proc.returncode != 0 or line is None:
            err = (proc.stderr.strip().splitlines() or ["?"])[-1]
            rows.append({"side": side, "error": err})
        else:
            rows.append(json.loads(line))
    return rows


# ----------------------------------------------------------------------------- workload 2
def _aihwkit_linear(aihwkit, torch, w, rpu_config):
    from aihwkit.nn import AnalogLinear

    layer = AnalogLinear(w.shape[1], w.shape[0], bias=False, rpu_config=rpu_config)
    layer.set_weights(torch.from_numpy(w), None)
    layer.eval()
    return layer


def forward_sides(peers: dict) -> tuple[dict, list[str]]:
    n_out, n_in, batch = FWD
    rng = np.random.default_rng(0)
    x = rng.random((batch, n_in), dtype=np.float32)
    w = rng.uniform(-0.3, 0.3, (n_out, n_in)).astype(np.float32)
    tile = Tile(n_out, n_in, "linear_step", periphery=Periphery(read_noise=False), rng=1)
    tile.write(w)
    sides = {"numpy float32 x @ W.T": lambda: x @ w.T,
             "neuroemu Tile (linear_step, DAC 7b, ADC 9b, out noise)": lambda: tile.forward(x)}
    notes = []
    torch = peers.get("torch")
    if torch is not None:
        tx, tw = torch.from_numpy(x), torch.from_numpy(w)
        sides["PyTorch float32 x @ W.T"] = lambda: tx @ tw.T
    if peers.get("aihwkit") is not None and torch is not None:
        try:
            from aihwkit.simulator.configs import InferenceRPUConfig

            layer = _aihwkit_linear(peers["aihwkit"], torch, w, InferenceRPUConfig())
            tx = torch.from_numpy(x)

            def aihw():
                with torch.no_grad():
                    return layer(tx)
            aihw()
            sides["aihwkit AnalogLinear (InferenceRPUConfig)"] = aihw
        except Exception as exc:  # noqa: BLE001 - API differences between aihwkit versions
            notes.append(f"aihwkit AnalogLinear: failed ({type(exc).__name__}: {exc})")
    return sides, notes


# ----------------------------------------------------------------------------- workload 3
NEUROEMU_UPDATES = [  # (row, scheme, card)
    ("stochastic coincidence (linear_step)", "stochastic_coincidence", "linear_step"),
    ("mixed precision (linear_step)", "mixed_precision", "linear_step"),
    ("Tiki-Taka (linear_step)", "tiki_taka", "linear_step"),
    ("mixed precision (PCM)", "mixed_precision", "pcm_nandakumar2018"),
]


def update_data():
    n_out, n_in, batch = UPD
    return make_data(n_out, n_in, batch, 0.01)


def _aihwkit_update_configs():
    """(row, rpu_config factory) for aihwkit's pulsed updates on the devices matching neuroemu's rows."""
    from aihwkit.simulator import configs as C

    try:
        from aihwkit.simulator.presets.devices import PCMPresetDevice
    except ImportError:  # older layout
        from aihwkit.simulator.presets import PCMPresetDevice

    return [
        ("aihwkit stochastic coincidence (ConstantStepDevice)",
         lambda: C.SingleRPUConfig(device=C.ConstantStepDevice())),
        ("aihwkit mixed precision (ConstantStepDevice)",
         lambda: C.DigitalRankUpdateRPUConfig(device=C.MixedPrecisionCompound(device=C.ConstantStepDevice()))),
        ("aihwkit Tiki-Taka (TransferCompound, 2x ConstantStepDevice)",
         lambda: C.UnitCellRPUConfig(device=C.TransferCompound(
             unit_cell_devices=[C.ConstantStepDevice(), C.ConstantStepDevice()]))),
        ("aihwkit mixed precision (PCMPresetDevice)",
         lambda: C.DigitalRankUpdateRPUConfig(device=C.MixedPrecisionCompound(device=PCMPresetDevice()))),
    ]


def update_sides(peers: dict, data) -> tuple[dict, list[str]]:
    n_out, n_in, _ = UPD
    w = np.zeros((n_out, n_in), np.float32)

    def sgd(x, d):
        np.subtract(w, LR * (d.T @ x), out=w)

    sides = {"numpy float32 SGD": cycle(data, sgd)}
    notes = []
    torch = peers.get("torch")
    if torch is not None:
        tw = torch.zeros(n_out, n_in)
        tdata = [(torch.from_numpy(x), torch.from_numpy(d)) for x, d in data]
        sides["PyTorch float32 SGD"] = cycle(tdata, lambda x, d: tw.addmm_(d.T, x, alpha=-LR))
    for row, scheme, card in NEUROEMU_UPDATES:
        sch = make_scheme(scheme, Tile(n_out, n_in, card, rng=1), rng=2)
        sides[f"neuroemu {row}"] = cycle(data, lambda x, d, sch=sch: sch.update(x, d, LR))
    if peers.get("aihwkit") is not None and torch is not None:
        try:
            cfgs = _aihwkit_update_configs()
        except Exception as exc:  # noqa: BLE001
            cfgs = []
            notes.append(f"aihwkit update configs: failed ({type(exc).__name__}: {exc})")
        tdata = [(torch.from_numpy(x), torch.from_numpy(d)) for x, d in data]
        for row, make in cfgs:
            try:
                layer = _aihwkit_linear(peers["aihwkit"], torch, w, make())
                tile = next(layer.analog_tiles())
                tile.set_learning_rate(LR)
                fn = cycle(tdata, lambda x, d, tile=tile: tile.update(x, d))
                fn()
                sides[row] = fn
            except Exception as exc:  # noqa: BLE001 - API differences between aihwkit versions
                notes.append(f"{row}: failed ({type(exc).__name__}: {exc})")
    return sides, notes


# ----------------------------------------------------------------------------- tables
def table(title: str, rows: list[dict], baseline: str) -> None:
    print(f"\n{title}; ratio = {baseline} / row (higher is faster)")
    print(f"{'threads':>7}  {'side':<60} {'ms':>9} {'ratio':>7}")
    for r in rows:
        print(f"{r['threads']:>7}  {r['side']:<60} {r['ms']:>9.2f} {r['ratio']:>7.2f}")


def timed(sides: dict, baseline: str, repeat: int, warmup: int) -> list[dict]:
    names = [n for n in sides if not n.startswith("_")]
    times = median_times([sides[n] for n in names], repeat, warmup=warmup)
    base = times[names.index(baseline)]
    return [{"side": n, "ms": t * 1e3, "ratio": base / t} for n, t in zip(names, times)]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="few repetitions (smoke test)")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory runs of workload 1")
    ap.add_argument("--memory-worker", default=None, help=argparse.SUPPRESS)
    add_threads_option(ap)
    args = ap.parse_args(argv)
    if args.memory_worker:
        memory_worker(args.memory_worker)
        return {}
    snn_rep, snn_warm = (1, 1) if args.quick else (10, 2)
    fast_rep = 5 if args.quick else 50

    peers = find_peers()
    torch = peers["torch"]
    s, labels = snn_data(0)
    snn = snn_sides(peers, s, labels)
    fwd, fwd_notes = forward_sides(peers)
    upd, upd_notes = update_sides(peers, update_data())
    snn_base = SNN_SIDES[3] if SNN_SIDES[3] in snn else SNN_SIDES[0]
    print(f"machine: {os.cpu_count()} cores; float32; numba + BLAS threads via neuroemu.threads.limit"
          + (f", torch {torch.__version__} via torch.set_num_threads" if torch is not None else ""))
    for line in snn_check(snn) + fwd_notes + upd_notes:
        print(line)

    def measure(n: int) -> list[dict]:
        if torch is not None:
            torch.set_num_threads(n)
        rows = [{"workload": 1, **r} for r in timed(snn, snn_base, snn_rep, snn_warm)]
        rows += [{"workload": 2, **r} for r in timed(fwd, "numpy float32 x @ W.T", fast_rep, 2)]
        rows += [{"workload": 3, **r} for r in timed(upd, "numpy float32 SGD", fast_rep, 2)]
        return rows

    rows = at_threads(args.threads, measure)
    table(f"1. spiking network {N_IN}-{N_HID}-{N_OUT} LIF, T {T}, batch {BATCH}, {DENSITY:.0%}-dense random input, "
          f"forward + backward; median of {snn_rep}", [r for r in rows if r["workload"] == 1], snn_base)
    table(f"2. analog forward {FWD[1]}->{FWD[0]}, batch {FWD[2]}; median of {fast_rep}",
          [r for r in rows if r["workload"] == 2], "numpy float32 x @ W.T")
    table(f"3. pulsed update {UPD[1]}->{UPD[0]}, batch {UPD[2]}, lr {LR}; median of {fast_rep}",
          [r for r in rows if r["workload"] == 3], "numpy float32 SGD")

    mem = []
    if not args.no_memory:
        mem = measure_memory([n for n in SNN_SIDES if n in snn])
        print("\npeak memory of workload 1 (own process, 1 thread): peak RSS, and its growth over the process "
              "before the workload (inputs, weights, imports and a warm-up included in the first)")
        print(f"{'side':<32} {'peak RSS MB':>12} {'workload MB':>12}")
        for m in mem:
            if "error" in m:
                print(f"{m['side']:<32} failed: {m['error']}")
            else:
                grow = m["peak_mb"] - m["before_mb"] if m.get("before_mb") is not None and m["reset"] else math.nan
                print(f"{m['side']:<32} {m['peak_mb']:>12.0f} {grow:>12.0f}")
    return {"rows": rows, "memory": mem, "peers": {k: v is not None for k, v in peers.items()}}


if __name__ == "__main__":
    main()

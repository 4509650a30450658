"""LIF sampling: the numba sampling kernel against a plain-numpy LIF sampler on the same network.

    python benchmarks/bench_sampling.py [--quick] [--threads 1,2]

Network: a random Boltzmann machine (``random_bm``, K = 10 and K = 100 units) mapped onto K
sampling neurons with ``synaptic_weights`` and ``Activation.leak`` (each neuron's activation
measured by a short ``calibrate_activation``, not timed), Poisson background of 3 kHz per channel
and neuron, dt 0.1 ms, 2000 ms of biological time per run (200 ms with ``--quick``), 1 and 16 chains,
every state recorded (one per step), no burn-in; median of 3 runs (1 with ``--quick``). Three
kinds of neuron: ideal conductance-based (``SamplingNeurons.ideal(K, 'coba')``), ideal
current-based (``'cuba'``) and the current-based analog neurons of the ``brainscales2`` card
(``SamplingNeurons.analog(K, 'brainscales2', rng=0)``: per-neuron parameters, membrane noise,
rails). neuroemu's side is ``Sampler.sample`` (kernel :mod:`neuroemu._kernels.sampling`, compiled
by a warm-up run before timing; its chains are spread over the threads). Every case is
timed at each thread count of ``--threads`` (numba and BLAS together; the networks are built once).

The baseline, measured in the same run on the same network, is a numpy loop over time,
vectorised over (chains, neurons), doing the kernel's update: last step's spikes arrive through W
(excitatory and inhibitory channels; renewing synapses, as ``Sampler``'s default), Poisson background drawn by ``Generator.poisson``, the exact
exponential membrane step (conductance- or current-based), membrane noise, rails, refractory
hold at the reset, threshold, channel decay, and the states z = (refractory) recorded every step.
It draws its own random numbers (not the kernel's keyed ones).

Columns: wall time (median); neuron-steps/s (chains × K × steps per second); samples/s, counting
one independent sample per chain every τ_ref (the refractory period, 10 ms), not the states
recorded every step (τ_ref/dt = 100 times as many); biological ms per wall second, per chain (all
chains advance together); the emulation's wall time over the physical chip's time for the same
biological time (BrainScaleS-2 runs 1000× faster than biology, a BrainScaleS-1-like chip 10⁴×;
chains side by side on the chip); ratio = numpy time / kernel time (higher is better).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import neuroemu  # noqa: F401 - before numpy: it sets the thread pools' idle policy (neuroemu/__init__.py)
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.timing import add_threads_option, at_threads, median_times  # noqa: E402

from neuroemu.boltzmann import random_bm  # noqa: E402
from neuroemu.hardware.sampling import Sampler, SamplingNeurons, calibrate_activation, synaptic_weights  # noqa: E402

ACCELERATIONS = {"BSS-2": 1e3, "BSS-1": 1e4}  # chip speed over biology: BrainScaleS-2, a BrainScaleS-1-like chip


def numpy_sampler(neurons: SamplingNeurons, wt, e_l, steps: int, rng: np.random.Generator):
    """The baseline: ``steps`` steps of the sampling network, free neurons, vectorised over (chains,
    neurons); ``wt`` (n, n) is Wᵀ (presynaptic rows), ``e_l`` (chains, n) the realised leak
    potentials. Returns the states (steps, chains, n) uint8 and the spike counts (chains, n)."""
    nb = neurons
    dt, n_ref = nb.dt, nb.n_ref
    decay = np.exp(-dt / nb.tau_syn)
    log_decay = -dt / nb.tau_syn
    decay_m = np.exp(-dt * nb.g_l / nb.c_m)
    lam = nb.rate * dt  # background events per step and channel
    noise = nb.noise * np.sqrt(1.0 - np.exp(-2.0 * dt * nb.g_l / nb.c_m))
    noisy = bool(np.any(noise > 0))
    w_exc, w_inh = np.maximum(wt, 0.0), np.maximum(-wt, 0.0)
    chains, n = e_l.shape
    v = e_l + (nb.v_th - e_l) * rng.random((chains, n))
    ge, gi = np.zeros((chains, n)), np.zeros((chains, n))
    r = np.zeros((chains, n), np.int32)
    fired = np.zeros((chains, n), bool)
    since = np.full((chains, n), 10 ** 9, np.int64)
    gap = np.full((chains, n), 10 ** 9, np.int64)
    counts = np.zeros((chains, n), np.int64)
    rec = np.empty((steps, chains, n), np.uint8)
    for t in range(steps):
        c, j = np.nonzero(fired)  # renewing synapses: each arrival scaled by 1 − decay^(gap between its spikes)
        if len(c):
            scale = -np.expm1(gap[c, j][:, None] * log_decay[None, :])
            np.add.at(ge, c, w_exc[j] * scale)
            np.add.at(gi, c, w_inh[j] * scale)
        ge += nb.w_bg * rng.poisson(lam, (chains, n))
        gi += nb.w_bg * rng.poisson(lam, (chains, n))
        np.subtract(r, 1, out=r, where=r > 0)
        held = r > 0
        if nb.conductance:
            g = nb.g_l + ge + gi
            v_inf = (nb.g_l * e_l + ge * nb.e_exc + gi * nb.e_inh) / g
            v = v_inf + (v - v_inf) * np.exp(-dt * g / nb.c_m)
        else:
            v_inf = e_l + (ge - gi) / nb.g_l
            v = v_inf + (v - v_inf) * decay_m
        if noisy:
            v += noise * rng.standard_normal((chains, n))
        np.clip(v, nb.v_lo, nb.v_hi, out=v)
        spike = ~held & (v > nb.v_th)
        v = np.where(held | spike, nb.v_reset, v)
        r[spike] = n_ref
        fired = spike
        counts += spike
        gap[spike] = since[spike]
        since[spike] = 0
        since += 1
        ge *= decay
        gi *= decay
        rec[t] = r > 0
    return rec, counts


def network(kind: str, k: int, chains: int, quick: bool):
    """The sampler, synaptic weights and requested leak potentials of a random K-unit machine."""
    neurons = SamplingNeurons.analog(k, "brainscales2", rng=0) if kind == "analog" else SamplingNeurons.ideal(k, kind)
    sampler = Sampler(neurons, k)
    activation, _ = calibrate_activation(sampler, points=8, duration_ms=200.0 if quick else 500.0, rng=1)
    w, b = random_bm(k, rng=2)
    w_syn = synaptic_weights(w, activation, neurons, neurons.rate)
    leak = np.broadcast_to(activation.leak(b), (chains, k))
    return sampler, w_syn, leak


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="shorter runs, one repetition (smoke test)")
    add_threads_option(ap)
    args = ap.parse_args(argv)
    repeat = 1 if args.quick else 3
    bio_ms = 200.0 if args.quick else 2000.0
    cases = [(kind, k, c) for kind in ("coba", "cuba", "analog") for k in (10, 100) for c in (1, 16)]
    networks = [network(kind, k, chains, args.quick) for kind, k, chains in cases]

    def measure(_n):
        rows = []
        for (kind, k, chains), (sampler, w_syn, leak) in zip(cases, networks):
            nb = sampler.neurons
            steps = int(round(bio_ms / nb.dt))
            wt = sampler.weights(w_syn)
            e_l = np.ascontiguousarray(nb.leak(leak))
            out = {}
            sample = lambda: out.update(kernel=sampler.sample(w_syn, leak, bio_ms, burn_in_ms=0.0, rng=3))  # noqa: E731
            baseline = lambda: out.update(  # noqa: E731
                numpy=numpy_sampler(nb, wt, e_l, steps, np.random.default_rng(3)))
            sampler.sample(w_syn, leak, 10 * nb.dt, burn_in_ms=0.0, rng=3)  # warm-up: numba compile / cache load
            t_np, t_k = median_times([baseline, sample], repeat, warmup=0)
            run, (z_np, _) = out["kernel"], out["numpy"]
            rows.append({"kind": kind, "K": k, "chains": chains, "ms": t_k * 1e3,
                         "updates_per_s": chains * k * steps / t_k, "numpy_updates_per_s": chains * k * steps / t_np,
                         "samples_per_s": chains * bio_ms / nb.tau_ref / t_k, "bio_ms_per_s": bio_ms / t_k,
                         **{f"vs_{name}": t_k / (bio_ms * 1e-3 / acc) for name, acc in ACCELERATIONS.items()},
                         "on": float(run.states.mean()), "on_numpy": float(z_np.mean()), "ratio": t_np / t_k})
        return rows

    rows = at_threads(args.threads, measure)

    print(f"LIF sampling, random Boltzmann machines, Poisson background, dt 0.1 ms, {bio_ms:g} ms of biological "
          f"time per run, every step recorded; median of {repeat}. Chip time for {bio_ms:g} ms: "
          + ", ".join(f"{name} {bio_ms / acc * 1e3:g} µs" for name, acc in ACCELERATIONS.items()))
    print(f"{'threads':>7} {'neurons':<8} {'K':>4} {'chains':>6} {'ms':>9} {'neuron-steps/s':>15} {'numpy n-s/s':>12} "
          f"{'samples/s':>10} {'bio ms/s':>9} {'x BSS-2':>8} {'x BSS-1':>8} {'on':>5} {'ratio':>6}")
    for r in rows:
        print(f"{r['threads']:>7} {r['kind']:<8} {r['K']:>4} {r['chains']:>6} {r['ms']:>9.1f} "
              f"{r['updates_per_s']:>15.3e} {r['numpy_updates_per_s']:>12.3e} {r['samples_per_s']:>10.3g} "
              f"{r['bio_ms_per_s']:>9.3g} {r['vs_BSS-2']:>8.3g} {r['vs_BSS-1']:>8.3g} {r['on']:>5.2f} {r['ratio']:>6.1f}")
    print("samples/s: one independent sample per chain every tau_ref (10 ms); x BSS-2 / x BSS-1: the "
          "emulation's wall time over the chip's time; on: mean state (kernel), a check that both sample "
          "(numpy: " + ", ".join(f"{r['on_numpy']:.2f}" for r in rows) + ")")
    return rows


if __name__ == "__main__":
    main()

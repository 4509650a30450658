"""One e-prop update on the emulated PCM chip against the same network with float weights.

    python benchmarks/bench_eprop.py [--quick] [--study] [--threads 1,2]

Shape (pattern generation, Demirag et al. 2021): 100 Poisson inputs, 100 recurrent LIF neurons,
1 readout, 1000 steps, batch 1. The baseline, measured in the same run, is the float network
(:class:`neuroemu.rules.eprop.EpropNetwork`: forward, e-prop gradients, plain gradient step). The
chip update does the same on three PCM tiles: noisy reads of every time step (input and output
tiles through their spike path, the recurrent tile inside the neuron loop), gradients, the
mixed-precision scheme's pulses, and the drift clock. ratio = chip time / float time (lower is
better; target <= 3). Refresh rows: in the short runs of a benchmark no pair saturates, so each of
these chip updates first SETs both sides of ``--saturate`` (default 3) random synapses of every tile
(+20 pulses on one side, 2 on the other: common mode about ``refresh_high``), and the chip runs its
refresh policy every 10 updates (the study's), never (0) or after every update (1); each chip is
built from the same seed. ``vs refresh 10`` is the time per update against the refresh_every 10 row
(target for refresh_every 1: <= 3); ``refreshed`` the synapses re-programmed per update. Tables at
every ``--threads`` count (kernels and BLAS; default 1 and 2). A second table times one refresh alone
(``Tile.refresh`` after ``--saturate`` synapses were driven into saturation) on the e-prop tile
(100 x 100) and on a 400 x 500 tile (400k devices), against the whole-tile program-and-verify it
replaced (every device read with noise and a full-size count array pulsed in each round; kept in
``tests/reference/verify.py``), on identical tiles doing identical refreshes. ``--study`` also times the whole default study of
``examples/eprop_pcm/schemes.yaml`` (all schemes and seeds, the configured workers).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import neuroemu  # noqa: F401 - before numpy: it sets the thread pools' idle policy (neuroemu/__init__.py)
import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.timing import add_threads_option, at_threads, median_times  # noqa: E402

from neuroemu.config import validate  # noqa: E402
from neuroemu.hardware.crossbar import Tile  # noqa: E402
from neuroemu.data.tasks import pattern_generation  # noqa: E402
from neuroemu.studies import eprop_pcm  # noqa: E402
from neuroemu.rules.base import run_step  # noqa: E402
from neuroemu.rules.eprop import EpropNetwork  # noqa: E402

CONFIG = ROOT / "examples" / "eprop_pcm" / "schemes.yaml"


REFRESH = (10, 0, 1)  # refresh_every of the refresh rows (the study's first)


def saturate(tile: Tile, pick: np.random.Generator, n: int) -> None:
    """SET both sides of n random synapses (+20 pulses on one side, 2 on the other)."""
    k = pick.choice(tile.n_synapses, min(n, tile.n_synapses), replace=False)
    up, down = np.zeros(tile.n_synapses, np.int32), np.zeros(tile.n_synapses, np.int32)
    up[k], down[k] = 20, -2
    tile.pulse(up.reshape(tile.shape))
    tile.pulse(down.reshape(tile.shape))


def refresh_rows(n_sat: int, repeat: int) -> list[dict]:
    """One refresh of a tile with n_sat saturating synapses: the tile's gathered program-and-verify
    against the whole-tile reference, on identical tiles (same seed, same synapses, same results)."""
    from tests.reference.verify import refresh_full

    rows = []
    for shape in ((100, 100), (400, 500)):
        tiles = [Tile(*shape, "pcm_nandakumar2018", rng=0) for _ in range(2)]
        picks = [np.random.default_rng(1) for _ in range(2)]
        high = 0.75 * tiles[0].prm.g_max
        done = [0, 0]

        def one(j, fn):
            def go():
                saturate(tiles[j], picks[j], n_sat)
                tiles[j].advance(1.0)
                done[j] += fn(tiles[j])
            return go

        t_new, t_old = median_times([one(0, lambda t: t.refresh(high)), one(1, lambda t: refresh_full(t, high))],
                                    repeat)
        assert done[0] == done[1] and np.array_equal(tiles[0].g, tiles[1].g)  # the same refreshes, bit for bit
        per = done[0] / (repeat + 2)
        rows.append({"case": f"{shape[0]}x{shape[1]} tile, whole-tile verify", "ms": t_old * 1e3,
                     "refreshed": per, "speedup": 1.0})
        rows.append({"case": f"{shape[0]}x{shape[1]} tile, gathered verify", "ms": t_new * 1e3,
                     "refreshed": per, "speedup": t_old / t_new})
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="few repetitions (smoke test)")
    ap.add_argument("--study", action="store_true", help="also time the whole default study")
    ap.add_argument("--saturate", type=int, default=3, metavar="N",
                    help="synapses per tile driven into saturation before each update of the refresh rows")
    add_threads_option(ap)
    args = ap.parse_args(argv)
    repeat = 3 if args.quick else 20
    raw = yaml.safe_load(CONFIG.read_text())
    raw.pop("tune", None)  # the tune command's section, not the study's
    raw["runs"] = [r for r in raw["runs"] if r.get("scheme") == "mixed_precision"]
    cfg = eprop_pcm.check(validate(raw, eprop_pcm.SCHEMA, str(CONFIG)), str(CONFIG))
    job = eprop_pcm.jobs(cfg)[0]
    lr, lr_out = cfg["train"]["lr"], cfg["train"]["lr_out"]
    task = pattern_generation(n_in=cfg["task"]["n_in"], t_steps=cfg["task"]["t_steps"], rng=0)

    def chip_with(refresh_every):
        run = {**job["run"], "scheme_params": {**job["run"].get("scheme_params", {}), "refresh_every": refresh_every}}
        chip, rule = eprop_pcm.network({**job, "run": run}, task.x.shape[2], 1, np.random.default_rng(0))
        rule.bind(chip)
        return chip, rule

    chip, rule = chip_with(REFRESH[0])
    net = EpropNetwork(rule.cfg, *chip.weights().values())

    def float_update():
        net.apply(net.gradients(task.x, task.target, task.mask), {"w_in": lr, "w_rec": lr, "w_out": lr_out,
                                                                  "b_out": lr_out})

    saturate_tile = saturate

    def chip_update(chip, rule, saturate=0):
        tiles = [layer.tile for layer in chip if layer.tile is not None]
        pick = np.random.default_rng(1)

        def update():
            for t in tiles if saturate else ():
                saturate_tile(t, pick, saturate)
            run_step(rule, chip, task)
            chip.advance(1.0)
        return update

    def refreshed(chip):
        return sum(layer.stats().get("refreshes", 0) for layer in chip)

    def measure(n):
        chips = [chip_with(r) for r in (REFRESH[0],) + REFRESH]  # fresh chips at every thread count
        fns = [float_update, chip_update(*chips[0])] + [chip_update(c, r, args.saturate) for c, r in chips[1:]]
        before = [refreshed(c) for c, _ in chips]
        times = median_times(fns, repeat)
        calls = repeat + 2  # median_times' warm-up rounds too
        t_float = times[0]
        out = [{"case": "float network (numpy + numba e-prop)", "ms": t_float * 1e3, "ratio": 1.0},
               {"case": f"PCM chip, refresh_every {REFRESH[0]}", "refresh_every": REFRESH[0], "ms": times[1] * 1e3,
                "ratio": times[1] / t_float, "refreshed": (refreshed(chips[0][0]) - before[0]) / calls}]
        for every, t, (c, _), b in zip(REFRESH, times[2:], chips[1:], before[1:]):
            out.append({"case": f"  + {args.saturate} saturating/tile, refresh_every {every}", "refresh_every": every,
                        "saturate": args.saturate, "ms": t * 1e3, "ratio": t / t_float,
                        "vs_refresh10": t / times[2], "refreshed": (refreshed(c) - b) / calls})
        return out + [{"table": "refresh", **r} for r in refresh_rows(args.saturate, repeat)]

    rows = at_threads(args.threads, measure)
    print(f"one e-prop update: {task.x.shape[2]} inputs, {cfg['model']['n_rec']} LIF, {task.x.shape[0]} steps, "
          f"batch 1; mixed precision, noisy reads; median of {repeat}")
    for n in sorted({r["threads"] for r in rows}):
        print(f"threads: {n}")
        print(f"{'case':<44} {'ms':>9} {'ratio':>7} {'vs refresh 10':>14} {'refreshed':>10}")
        for r in rows:
            if r["threads"] == n and "table" not in r:
                vs = f"{r['vs_refresh10']:.2f}" if "vs_refresh10" in r else ""
                ref = f"{r['refreshed']:.1f}" if "refreshed" in r else ""
                print(f"{r['case']:<44} {r['ms']:>9.2f} {r['ratio']:>7.2f} {vs:>14} {ref:>10}")
        print(f"one refresh of a PCM tile after {args.saturate} synapses saturated (threads: {n})")
        print(f"{'case':<44} {'ms':>9} {'speed-up':>9} {'refreshed':>10}")
        for r in rows:
            if r["threads"] == n and r.get("table") == "refresh":
                print(f"{r['case']:<44} {r['ms']:>9.3f} {r['speedup']:>9.2f} {r['refreshed']:>10.1f}")
    if args.study:
        from neuroemu.studies import run_experiment

        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            run_experiment(CONFIG, tmp, quiet=True)
            wall = time.perf_counter() - t
        print(f"whole default study ({CONFIG.relative_to(ROOT)}): {wall:.0f} s")
        rows.append({"case": "whole default study", "s": wall})
    return rows


if __name__ == "__main__":
    main()

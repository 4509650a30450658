"""e-prop on an emulated PCM chip: online training of a recurrent spiking network whose input,
recurrent and output weights are differential PCM pairs, one run per weight-update scheme
(Demirag, Frenkel, Payvand & Indiveri 2021, arXiv:2108.01804).

Every update is one presentation of the task sequence (batch 1 for pattern generation). The
forward pass reads the chip: the input currents through the input tile (one noisy read per time
step of the active rows), the recurrent currents inside the neuron loop with the exact
output-referred per-device read noise of the active rows, the read-out through the output tile.
e-prop (:mod:`neuroemu.rules.eprop`) turns the recorded traces into the gradient it wants for each
matrix; the run's update scheme applies ΔW = −lr·g to the tiles as device pulses (or exact writes
for the float reference). The read-out bias is digital. Between updates the chip's clock advances
by the sequence length, so devices drift (time since programming is tracked per device; with the
Nandakumar card the drift power law acts only once t − t_p ≥ T0 = 38.6 s — before that a device
keeps its programmed conductance, see ``drift_t0`` in the card).

Autapses are excluded: the recurrent diagonal never enters the dynamics and is never updated.
The normalised MSE is mean_t (y − y*)² / mean_t (y* − mean y*)² (1 = predicting the mean).

Every update checks the error of its forward pass (the NMSE, or the task's cross-entropy for
classification) before the update is applied: a NaN/inf error, or at an evaluation (and on the
final pass after training) an NMSE above ``diverge_factor`` (default 1000) × the untrained
network's, stops the run and marks it diverged (:mod:`.divergence`; the recorded sign-scheme runs
reach ~300×). Long runs print a progress line from inside the job
(:class:`neuroemu.progress.JobProgress`).
"""

from __future__ import annotations

import time
import zlib
from typing import Any

import numpy as np

from ..cards import load_card
from ..config import Opt, check_delays, check_seeds
from ..errors import ConfigError, did_you_mean
from ..plot import delay_key, delay_label
from ..progress import job_messages
from ..schemes import SCHEMES, PulseLimitWarning
from . import divergence, tables
from .crossbar_mlp import TILE_RUN, check_tile_run

NAME = "eprop_pcm"

TASKS = ("pattern_generation", "evidence_accumulation")

SCHEMA: dict[str, Any] = {
    "experiment": Opt("str", NAME, choices=(NAME,)),
    "description": Opt("str", ""),
    "seeds": Opt("list", [0, 1, 2], check=check_seeds, doc="network, task and chip seed"),
    "workers": Opt("int", 2, 1, 256, doc="local worker processes (1 = serial)"),
    "diverge_factor": divergence.option(divergence.NMSE_FACTOR),
    "task": {
        "name": Opt("str", "pattern_generation", choices=TASKS),
        "n_in": Opt("int", 100, 1, 100000),
        "t_steps": Opt("int", 1000, 1, 10**7, doc="pattern generation: steps of one sequence (1 ms each); "
                       "evidence accumulation trials last 2250 steps"),
        "batch": Opt("int", 1, 1, 4096, doc="sequences per update"),
    },
    "model": {
        "n_rec": Opt("int", 100, 1, 100000),
        "n_alif": Opt("int", 0, 0, 100000, doc="how many of the recurrent neurons are ALIF"),
        "tau_m": Opt("float", 30e-3, 1e-6, 10.0),
        "tau_out": Opt("float", 30e-3, 1e-6, 10.0),
        "tau_a": Opt("float", 200e-3, 1e-6, 100.0),
        "beta": Opt("float", 0.266, 0, 100, doc="ALIF threshold increase per spike, in units of v_th"),
        "v_th": Opt("float", 1.0, 1e-6, 1e6),
        "n_ref": Opt("int", 2, 0, 1000, doc="refractory steps"),
        "feedback": Opt("str", "symmetric", choices=("symmetric", "random", "adaptive")),
        "c_reg": Opt("float", 1e-4, 0, 1e6, doc="firing-rate regulariser"),
        "f_target": Opt("float", 12.0, 0, 1000, doc="target rate (Hz)"),
        "init_gain": Opt("float", 1.0, 0, 100, doc="scale of the initial input and recurrent weights (1: the authors' "
                         "init)"),
        "out_gain": Opt("float", 0.1, 0, 100, doc="initial read-out weights N(0, out_gain²/n_rec)"),
    },
    "train": {
        "updates": Opt("int", 250, 1, 10**7, doc="weight updates (the full protocol: 750)"),
        "lr": Opt("float", 1e-5, 1e-12, 1e6, doc="input and recurrent weights: ΔW = −lr·g, g summed over the steps"),
        "lr_out": Opt("float", 3e-6, 1e-12, 1e6, doc="read-out weights and bias (their gradient is larger)"),
        "eval_every": Opt("int", 10, 1, 10**7, doc="record the learning curve every this many updates"),
    },
    "hardware": {
        "w_max": Opt("float", 1.0, 1e-9, 1e9, doc="weight mapped to a full conductance side"),
        "n_devices": Opt("int", 1, 1, 64),
        "read_noise": Opt("bool", True, doc="per-device read noise at every read"),
    },
    "eval": {
        "delays": Opt("list", [3600.0, 86400.0], check=check_delays,
                      doc="seconds after training at which the error is measured again"),
        "trials": Opt("int", 256, 1, 100000, doc="classification tasks: test trials (the regression pattern is "
                      "its own test)"),
    },
    "runs": Opt("list", doc="list of runs: {name, card, scheme, scheme_params, n_devices, w_max}"),
}

RUN = {
    **TILE_RUN,
    "exact_reads": Opt("bool", False, doc="read the tiles without noise (the float reference)"),
}

_DENSE = ("ideal", "digital", "sign", "stochastic", "multi_device", "mixed_precision", "tiki_taka")


def check(cfg: dict[str, Any], where: str) -> dict[str, Any]:
    """Validate every run by building its card, tile and scheme once on a tiny tile."""
    from ..config import validate
    from ..runner import check_run_names

    if cfg["model"]["n_alif"] > cfg["model"]["n_rec"]:
        raise ConfigError(f"{where} model.n_alif: expected at most model.n_rec ({cfg['model']['n_rec']}), "
                          f"got {cfg['model']['n_alif']}")
    if not cfg["runs"]:
        raise ConfigError(f"{where} runs: expected at least one run")
    runs = []
    for i, raw in enumerate(cfg["runs"]):
        w = f"{where} runs[{i}]"
        run = validate(raw, RUN, w)
        if run["scheme"] in SCHEMES and run["scheme"] not in _DENSE:
            raise ConfigError(f"{w}.scheme: e-prop's gradient is a sum over time, not one outer product; expected "
                              f"one of {', '.join(_DENSE)}, got {run['scheme']!r}")
        if run["scheme"] not in _DENSE:
            raise ConfigError(f"{w}.scheme: expected one of {', '.join(_DENSE)}, got {run['scheme']!r}"
                              f"{did_you_mean(run['scheme'], _DENSE)}")
        card = check_tile_run(run, w, n_devices=cfg["hardware"]["n_devices"])
        if run["name"] is None:
            n = run["n_devices"]
            run["name"] = f"{card.name}/{run['scheme']}" + (f"/N{n}" if n and n > 1 else "")
        runs.append(run)
    check_run_names(runs, where)
    cfg["runs"] = runs
    return cfg


def prepare(cfg: dict[str, Any]) -> None:
    """Nothing to fetch: the tasks are generated."""


def jobs(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    from .. import __version__

    common = {k: cfg[k] for k in ("task", "model", "train", "hardware", "eval", "diverge_factor")}
    return [{"id": f"{run['name']}@seed{seed}", "run": run, "seed": seed, "neuroemu": __version__, **common}
            for run in cfg["runs"] for seed in cfg["seeds"]]


# ---------------------------------------------------------------------------------------- the chip
def _task(job: dict[str, Any], rng: np.random.Generator, batch: int | None = None):
    from ..data import tasks

    t = job["task"]
    if t["name"] == "pattern_generation":
        return tasks.pattern_generation(n_in=t["n_in"], t_steps=t["t_steps"], rng=rng)
    return tasks.evidence_accumulation(batch or t["batch"], n_in=t["n_in"], rng=rng)


def _config(job: dict[str, Any]):
    from ..rules.eprop import EpropConfig

    m = job["model"]
    loss = "mse" if job["task"]["name"] == "pattern_generation" else "ce"
    return EpropConfig(dt=1e-3, tau_m=m["tau_m"], tau_out=m["tau_out"], tau_a=m["tau_a"], beta=m["beta"] * m["v_th"],
                       v_th=m["v_th"], n_ref=m["n_ref"], n_alif=m["n_alif"], loss=loss, c_reg=m["c_reg"],
                       f_target=m["f_target"])


class Chip:
    """The network's three weight matrices on tiles of one card, each trained through the run's scheme."""

    def __init__(self, job: dict[str, Any], n_in: int, n_out: int, rng: np.random.Generator,
                 run_rng: np.random.Generator | None = None):
        """``rng`` draws the initial weights and the devices (the same for every run of a seed);
        ``run_rng`` (default ``rng``) the read noise and the schemes' random pulses."""
        from ..crossbar import Periphery, make_tile
        from ..rules.eprop import EpropNetwork
        from ..schemes import make_scheme

        run, hw, m = job["run"], job["hardware"], job["model"]
        card = load_card(run["card"])
        self.cfg = _config(job)
        n_rec = m["n_rec"]
        per = Periphery(dac_bits=0, adc_bits=0, adc_range=0.0, out_noise=0.0,
                        read_noise=hw["read_noise"] and not run["exact_reads"], noise_management=False)
        self.read_noise = per.read_noise
        # the authors' LIF init, N(0, 1)·(1 − α)/√n at v_th = 0.03, expressed at our threshold
        gain = m["init_gain"] * (1.0 - self.cfg.alpha) * m["v_th"] / 0.03
        net = EpropNetwork.init(self.cfg, n_in, n_rec, n_out, feedback=m["feedback"], rng=rng, in_gain=gain,
                                rec_gain=gain, out_gain=m["out_gain"])
        self.names = ("input", "recurrent", "output")
        self.tiles = []
        for name, w0 in zip(self.names, (net.w_in, net.w_rec, net.w_out)):
            tile = make_tile(*w0.shape, card, n_devices=run["n_devices"] or hw["n_devices"],
                             w_max=run["w_max"] or hw["w_max"], periphery=per, rng=rng)
            tile.write(np.clip(w0, *tile.w_range))
            self.tiles.append(tile)
        self.rng = rng if run_rng is None else run_rng
        self.schemes = [make_scheme(run["scheme"], t, rng=self.rng, **run["scheme_params"]) for t in self.tiles]
        self.b_out = np.zeros(n_out)
        self.feedback = m["feedback"]
        self.b_random = net.b_feedback

    def weights(self) -> list[np.ndarray]:
        return [s.weights() for s in self.schemes]

    def forward(self, x: np.ndarray):
        """Run one batch of sequences x (T, B, n_in) on the chip: (trace, y)."""
        from ..crossbar import draw_seed
        from ..rules.eprop import readout, simulate

        t_steps, batch, n_in = x.shape
        tin, trec, tout = (s.tile for s in self.schemes)
        i_in = self.schemes[0].forward(x.reshape(-1, n_in) > 0).reshape(t_steps, batch, -1)
        w_rec, var_rec = trec.weights_and_variance()
        trace = simulate(self.cfg, i_in, w_rec, var_rec=var_rec if self.read_noise else None,
                         seed=draw_seed(self.rng))
        out = self.schemes[2].forward(trace.z.reshape(t_steps * batch, -1) > 0).reshape(t_steps, batch, -1)
        return trace, readout(self.cfg, out, b_out=self.b_out)

    def feedback_matrix(self) -> np.ndarray:
        return self.schemes[2].weights().T if self.feedback == "symmetric" else self.b_random

    def update(self, x, trace, y, task, lr: float, lr_out: float | None = None) -> dict[str, Any]:
        """e-prop gradients of one forward pass, applied through the schemes: ΔW = −lr·g for the input
        and recurrent weights, −lr_out·g (default lr) for the read-out weights and bias."""
        from ..rules.eprop import adapt_feedback, eprop_gradients

        lr_out = lr if lr_out is None else lr_out
        g = eprop_gradients(self.cfg, x, trace, y, task.target, self.feedback_matrix(), mask=task.mask)
        for s, key, rate in zip(self.schemes, ("w_in", "w_rec", "w_out"), (lr, lr, lr_out)):
            dw = -rate * g[key]
            if key == "w_rec":
                np.fill_diagonal(dw, 0.0)  # no autapses
            s.apply(dw)
        self.b_out -= lr_out * g["b_out"]
        if self.feedback == "adaptive":
            self.b_random = adapt_feedback(self.b_random, g["w_out"], lr_out)
        return g

    def advance(self, dt: float) -> None:
        for s in self.schemes:
            for t in s.tiles:
                t.advance(dt)


def nmse(y: np.ndarray, target: np.ndarray, mask: np.ndarray) -> float:
    """Normalised MSE over the masked steps: mean (y − y*)² / variance of y*."""
    m = mask[..., None] > 0
    m = np.broadcast_to(m, y.shape)
    err = ((y - target) ** 2)[m].mean()
    var = target[m].var()
    return float(err / var) if var > 0 else float(err)


def _accuracy(y, task) -> float:
    """Classification: the class with the larger summed output over the masked steps."""
    score = (y * task.mask[..., None]).sum(axis=0)
    return float((score.argmax(axis=1) == task.labels).mean())


@job_messages(once=(PulseLimitWarning,))
def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Train one (run, seed) and evaluate it; module-level so that worker processes can run it. A run
    that diverges stops there and returns what it recorded, with ``diverged`` (see :mod:`.divergence`)."""
    from ..progress import JobProgress
    from ..record import Recorder, pulse_histogram
    from ..rules.eprop import task_loss

    run, tr, ev = job["run"], job["train"], job["eval"]
    seeds = np.random.SeedSequence([job["seed"], zlib.crc32(b"eprop")]).spawn(2)
    rng_task = np.random.default_rng(seeds[0])
    rng_chip = np.random.default_rng([job["seed"], zlib.crc32(run["name"].encode())])
    task = _task(job, rng_task)
    regression = task.labels is None
    test = task if regression else _task(job, rng_task, batch=job["eval"]["trials"])
    x = task.x
    chip = Chip(job, x.shape[2], task.target.shape[2], np.random.default_rng(seeds[1]), rng_chip)
    rec = Recorder()
    layers = dict(zip(chip.names, chip.tiles))
    rec.observe(0, layers)
    seq_time = task.x.shape[0] * task.dt
    curve = []
    watch = divergence.Watch("nmse" if regression else "loss", job["diverge_factor"])
    progress = JobProgress(job["id"])
    n_updates, diverged = tr["updates"], None
    t0 = time.perf_counter()
    try:
        for step in range(1, n_updates + 1):
            if not regression:
                task = _task(job, rng_task)
                x = task.x
            trace, y = chip.forward(x)
            error = nmse(y, task.target, task.mask) if regression else task_loss(chip.cfg, y, task.target,
                                                                                   task.mask)[0]
            evaluation = step % tr["eval_every"] == 0 or step == n_updates
            watch.check(step, error, bound=evaluation)  # before the update: NaN never reaches the devices
            chip.update(x, trace, y, task, tr["lr"], tr["lr_out"])
            chip.advance(seq_time)
            if evaluation:
                row = {"run": run["name"], "seed": job["seed"], "update": step,
                       "rate_hz": float(trace.z.mean() / task.dt)}
                row["nmse" if regression else "accuracy"] = error if regression else _accuracy(y, task)
                dev = rec.observe(step, layers)
                row.update({k: v for k, v in dev.items() if k.endswith(".g_mean_uS")})
                curve.append(row)
            if progress.due():
                progress.log(f"update {step}/{n_updates}  {watch.metric} {error:.3g}")
    except divergence.Diverged as exc:
        diverged = exc.record
    train_time = time.perf_counter() - t0

    def evaluate():
        _, y = chip.forward(test.x)
        return (nmse(y, test.target, test.mask) if regression else _accuracy(y, test)), y

    if diverged is None:  # the error after training is the number the tables report: checked as well
        final, y_final = evaluate()
        diverged = watch.test(n_updates, final, metric="nmse after training") if regression else \
            watch.test(n_updates, np.abs(y_final).max(), bound=False, metric="output after training")
    stats = [s.stats() for s in chip.schemes]
    n_syn = sum(t.n_synapses for t in chip.tiles)
    pulses = sum(int(s["pulses"]) for s in stats)
    counters = {"run": run["name"], "card": run["card"], "scheme": run["scheme"], "seed": job["seed"],
                "metric": "nmse" if regression else "accuracy", "pulses": pulses, "pulses_per_synapse": pulses / n_syn,
                "refreshes": int(sum(s["refreshes"] for s in stats)),
                "energy_pJ": float(sum(s["energy_pJ"] for s in stats)),
                "pulse_limit_hits": int(sum(s.get("pulse_limit_hits", 0) for s in stats)), "train_time_s": train_time}
    if diverged is not None:
        return {**counters, "diverged": diverged, "curve": curve}
    after, elapsed = {}, 0.0
    for d in ev["delays"]:
        chip.advance(d - elapsed)
        elapsed = d
        after[delay_key(d)] = evaluate()[0]
    edges, steps, counts = rec.histograms("recurrent")
    return {
        **counters, "final": final, "after": after, "curve": curve, "device_summary": rec.summary(),
        "g_hist": {"edges": np.asarray(edges).tolist(), "steps": np.asarray(steps).tolist(),
                   "counts": np.asarray(counts).tolist()},
        "pulse_hist": pulse_histogram(chip.tiles[1]),
        "y": y_final[:, 0, 0].tolist() if regression else None,
        "target": task.target[:, 0, 0].tolist() if regression else None,
    }


# ---------------------------------------------------------------------------------------- report
def table(results: list[dict[str, Any]], delays: list[float]) -> list[dict[str, Any]]:
    """One row per run: mean and std over the seeds that did not diverge of the final error (or
    accuracy) and device counters; ``seeds``, ``diverged`` and the pulse-limit hits of all seeds."""
    rows = []
    for name, rs, ok, seeds in tables.run_groups(results):
        row = {"run": name, "card": rs[0]["card"], "scheme": rs[0]["scheme"], "metric": rs[0]["metric"], **seeds,
               "pulse_limit_hits": sum(r.get("pulse_limit_hits", 0) for r in rs)}
        if ok:
            row["final"], row["final_std"] = tables.mean_std([r["final"] for r in ok])
            row.update({"pulses_per_synapse": float(np.mean([r["pulses_per_synapse"] for r in ok])),
                        "refreshes": float(np.mean([r["refreshes"] for r in ok])),
                        "energy_uJ": float(np.mean([r["energy_pJ"] for r in ok]) * 1e-6),
                        "train_time_s": float(np.mean([r["train_time_s"] for r in ok]))})
            for d in delays:
                row[f"after_{delay_key(d)}s"] = float(np.mean([r["after"][delay_key(d)] for r in ok]))
        rows.append(row)
    return rows


def console_table(rows: list[dict[str, Any]]) -> list[str]:
    label = "final NMSE" if rows[0]["metric"] == "nmse" else "accuracy"
    return tables.console_table(rows, [("pulses/syn", "pulses_per_synapse", ".2f"), ("refreshes", "refreshes", ".0f"),
                                       ("energy uJ", "energy_uJ", ".3g"), ("time s", "train_time_s", ".0f")],
                                main=(label, "final", ".3f"), unit="update")


def tidy(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One flat row per job (for sweeps); a diverged job gives where and how instead of its results."""
    keys = ("run", "card", "scheme", "seed", "final", "pulses_per_synapse", "refreshes", "energy_pJ", "train_time_s")
    return [{**{k: result[k] for k in keys if k in result}, **divergence.tidy(result),
             **{f"after_{k}s": v for k, v in result.get("after", {}).items()}}]


def _mean_curves(curves: list[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """Learning curves averaged over seeds: one row per (run, update)."""
    acc: dict[tuple[str, int], list[float]] = {}
    for r in curves:
        acc.setdefault((r["run"], r["update"]), []).append(r[metric])
    return [{"run": k[0], "update": k[1], metric: float(np.mean(v))} for k, v in acc.items()]


def figures(rows, results, delays, out_dir) -> list:
    """Learning curves, final error per scheme, produced vs target pattern, recurrent-layer conductance
    histograms and pulse counts per scheme, and the drift of the mean conductance over the run. Give
    it the rows and results of the seeds that did not diverge."""
    import functools
    from pathlib import Path

    from .. import plot

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metric = rows[0]["metric"]
    paths = []
    curves = [c for r in results for c in r["curve"]]
    fig = plot._file_figure(figsize=(8, 5), layout="constrained")
    ax = plot.plot_learning_curves(_mean_curves(curves, metric), ax=fig.add_subplot(), x="update", y=metric,
                                   run="run", percent=False)
    if metric == "nmse":
        ax.set_yscale("log")
    ax.set_title(f"learning curves (mean over {rows[0]['seeds']} seed(s))", fontsize="medium")
    paths.append(plot._save(fig, out / "learning_curves.png", 120))

    fig = plot._file_figure(figsize=(9, 1.2 + 0.32 * len(rows)), layout="constrained")
    extra = {f"after {delay_label(d)}": f"after_{delay_key(d)}s" for d in delays}
    data = plot.compute_run_bars(rows, "final", extra=extra)
    plot.plot_run_bars(data, ax=fig.add_subplot(), xlabel="final normalised MSE" if metric == "nmse" else "accuracy",
                       log=metric == "nmse")
    paths.append(plot._save(fig, out / "final_error.png", 120))

    panels = [("conductances.png", "recurrent-layer device conductances: as programmed and after training",
               functools.partial(plot._draw_g_hist, step_label="update")),
              ("pulses_per_device.png", "recurrent-layer pulses per synapse over the run (all its devices)",
               plot._draw_pulse_hist)]
    if metric == "nmse":
        panels.insert(0, ("patterns.png", "produced (after training) vs target pattern", _draw_pattern))
    for name, title, draw in panels:
        paths.append(plot.run_panels(results, title, draw, out / name))

    first = list({r["run"]: r for r in reversed(results)}.values())[::-1]
    fig = plot._file_figure(figsize=(12, 4.6), layout="constrained")
    for k, layer in enumerate(("input", "recurrent", "output")):
        ax = fig.add_subplot(1, 3, k + 1)
        for r in first:
            xs = [c["update"] for c in r["curve"]]
            ax.plot(xs, [c[f"{layer}.g_mean_uS"] for c in r["curve"]], lw=1, label=r["run"])
        ax.set_xlabel("update (1 s of chip time each)")
        ax.set_ylabel(f"{layer} tile: mean device G (µS)")
    # one legend for the three panels, below them: inside a panel it hides the curves
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=min(len(first), 4),
               fontsize="x-small", frameon=False)
    fig.suptitle("mean conductance over the run: programming, drift and refresh (first seed)", fontsize="medium")
    paths.append(plot._save(fig, out / "drift.png", 110))
    return paths


def _draw_pattern(ax, result) -> None:
    t = np.arange(len(result["target"]))
    ax.plot(t, result["target"], "k-", lw=1, label="target")
    ax.plot(t, result["y"], lw=1, label=f"produced (NMSE {result['final']:.3f})")
    ax.set_xlabel("step (ms)", fontsize="x-small")
    ax.legend(fontsize="xx-small")


def report(cfg: dict[str, Any], results: list[dict[str, Any]], out, meta: dict[str, Any]) -> dict[str, Any]:
    """Write metrics.csv (learning curves), RESULTS.md and figures; return the summary."""
    from pathlib import Path

    from ..io import atomic_write_text, write_csv

    out = Path(out)
    delays = cfg["eval"]["delays"]
    write_csv(out / "metrics.csv", [c for r in results for c in r["curve"]])
    rows = table(results, delays)
    kept = [r for r in rows if tables.kept(r)]
    paths = figures(kept, divergence.split(results)[0], delays, out / "figures") if kept else []
    metric = rows[0]["metric"]
    head = ["run", "final NMSE" if metric == "nmse" else "accuracy"] + \
        [f"after {delay_label(d)}" for d in delays] + ["pulses / synapse", "refreshes", "write energy (µJ)",
                                                       "train time (s)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["run"], tables.value_cell(r, "final", ".3f")] + \
            [tables.number(r, f"after_{delay_key(d)}s", ".3f") for d in delays] + \
            [tables.number(r, "pulses_per_synapse", ".1f"), tables.number(r, "refreshes", ".0f"),
             tables.number(r, "energy_uJ", ".3g"), tables.number(r, "train_time_s", ".0f")]
        lines.append("| " + " | ".join(cells) + " |")
    lines += tables.markdown_notes(rows, "update")
    t, m, hw = cfg["task"], cfg["model"], cfg["hardware"]
    text = f"""# e-prop on an emulated PCM chip: weight-update schemes compared

{cfg['description'] or ''}

Produced by:

```
{meta['command']}
```

* task: {t['name']} ({t['n_in']} inputs, {t['t_steps']} steps of 1 ms, batch {t['batch']}); seeds {', '.join(map(str, cfg['seeds']))}
* network: {m['n_rec']} recurrent neurons ({m['n_alif']} ALIF), τ_m {m['tau_m'] * 1e3:g} ms, τ_out {m['tau_out'] * 1e3:g} ms,
  v_th {m['v_th']:g}, refractory {m['n_ref']} steps; e-prop with {m['feedback']} feedback, firing-rate
  regulariser {m['c_reg']:g} toward {m['f_target']:g} Hz; no autapses
* training: {cfg['train']['updates']} updates, lr {cfg['train']['lr']:g} (input, recurrent) and {cfg['train']['lr_out']:g}
  (read-out): ΔW = −lr·g through each run's scheme
* chip: weight {hw['w_max']:g} = a full conductance side, {hw['n_devices']} device(s) per side unless a run says otherwise;
  every read with per-device read noise: {hw['read_noise']}; 1 s of chip time per update (drift)
* versions: {', '.join(f'{k} {v}' for k, v in meta['versions'].items())}
* compute: {sum(r['train_time_s'] for r in results):.0f} s of training over all jobs (this invocation took
  {meta['wall_time_s']:.0f} s of wall time; jobs finished before are loaded, not rerun)
* divergence: a run whose error is NaN/inf, or at an evaluation above {cfg['diverge_factor']:g} × the untrained
  network's, stops and is left out of the means ("diverged k/n"); pulse schemes clip an update to
  their max_pulses per synapse and say so below the table

""" + "\n".join(lines) + """

NMSE = mean (y − y*)² / variance of y* on one final pass with noisy reads (1 = predicting the
mean); "after" columns: the same after the trained chip has drifted for that long. Pulses per
synapse count all device pulses (programming, refresh) over the three matrices.

""" + "\n".join(f"![{p.stem}](figures/{p.name})" for p in paths) + "\n"
    atomic_write_text(out / "RESULTS.md", text)
    return {"table": rows, "figures": [str(p) for p in paths], "diverged": divergence.jobs(results)}

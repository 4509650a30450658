"""LIF sampling: Boltzmann distributions sampled by spiking neurons, ideal and on an emulated analog
chip, and learned with the chip in the loop (Petrovici et al. 2016; Kungl et al. 2019).

Per job (one run × one seed × one machine size K): a random Boltzmann machine (W, b) drawn from the
seed (:func:`neuroemu.boltzmann.random_bm`) is mapped onto the run's neurons
(:func:`neuroemu.models.sampling.sampling_network`: ideal conductance- or current-based neurons, or
an analog chip drawn from the seed, parameter-calibrated or not; the theoretical mapping with the
nominal neuron's activation, or each neuron's measured activation) and its weights programmed onto
the run's synapses (float, or tiles of a card through a scheme). Then:

* **sampling quality** — one free run of ``sampling.times_ms[-1]`` ms; D_KL(p* ‖ p_sampled) over the
  2^K states from the first t ms of it, for every t of ``times_ms``;
* **training in the loop** (K in ``training.sizes``) — the Boltzmann-machine rule
  (:class:`neuroemu.rules.boltzmann.Boltzmann`) with the model statistics sampled on this chip,
  ``training.updates`` updates from the target's own parameters, D_KL every ``eval_every`` updates
  and, at the end, the same D_KL-vs-time curve;
* **deployed ideal training** (runs with ``compare_deploy``) — the same training on the chip's
  nominal neurons (its ideal twin: no mismatch), the result programmed onto this chip and sampled:
  what training without the chip in the loop gives on it.

Times are biological (ms); the chip would take them divided by its acceleration (10³ for the
BrainScaleS-2-like card, 10⁴ for BrainScaleS-1), which the results report beside the emulation's
wall time.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from ... import divergence
from ...config import Opt
from ...errors import ConfigError, NeuroemuError
from ..common import each_run, energy_section, header, ops_summary, wall_time

NAME = "lif_sampling"


def _check_sizes(values, where):
    if not values or any(not isinstance(k, int) or not 2 <= k <= 16 for k in values):
        raise ConfigError(f"{where}: expected machine sizes K, integers in 2..16, got {values!r}")
    return values


def _check_times(values, where):
    if not values or any(not isinstance(t, (int, float)) or not t > 0 for t in values) or list(values) != sorted(values):
        raise ConfigError(f"{where}: expected increasing sampling times in ms (> 0), got {values!r}")
    return [float(t) for t in values]


SCHEMA: dict[str, Any] = {
    **header(NAME, math.inf, seeds=[0, 1, 2, 3, 4], seeds_doc="one random Boltzmann machine and one emulated chip per seed"),
    "machines": {
        "sizes": Opt("list", [5, 10], check=_check_sizes, doc="numbers of units K of the random machines"),
        "scale_w": Opt("float", 1.0, 0, 100, doc="weights drawn in (−scale_w, scale_w), Beta(0.5, 0.5)-shaped"),
        "scale_b": Opt("float", 1.0, 0, 100, doc="biases drawn in (−scale_b, scale_b)"),
    },
    "sampling": {
        "times_ms": Opt("list", [100.0, 1000.0, 10000.0, 100000.0], check=_check_times,
                        doc="sampling times (biological ms) at which D_KL is reported"),
        "dt": Opt("float", 0.1, 1e-3, 10, doc="emulation step (biological ms)"),
        "burn_in_ms": Opt("float", 50.0, 0, 1e6),
        "calibration_ms": Opt("float", 10000.0, 10, 1e7, doc="sampling time per point of the activation sweeps"),
    },
    "training": {
        "sizes": Opt("list", [5], check=_check_sizes, doc="machine sizes trained in the loop"),
        "updates": Opt("int", 400, 1, 10 ** 6),
        "lr": Opt("float", 1.0, 1e-9, 1e6, doc="η₀ of η(t) = η₀·decay/(decay + t)"),
        "decay": Opt("float", 100.0, 1e-9, 1e12),
        "chains": Opt("int", 4, 1, 4096, doc="chains of the model phase"),
        "duration_ms": Opt("float", 1000.0, 1, 1e7, doc="model phase per update and chain (biological ms)"),
        "eval_every": Opt("int", 100, 1, 10 ** 6),
        "eval_ms": Opt("float", 20000.0, 1, 1e8, doc="sampling time of the D_KL during training"),
    },
    "runs": Opt("list", doc="list of runs: {name, neurons, calibrated, mapping, background, card, synapses, "
                            "scheme, w_max, renewing, compare_deploy}"),
}

RUN = {
    "name": Opt("str", None, nullable=True),
    "neurons": Opt("str", "coba", choices=("coba", "cuba", "analog")),
    "card": Opt("str", "brainscales2", doc="analog_chip card of the analog neurons"),
    "card_params": Opt("dict", {}, doc="parameters of that card changed for this run, e.g. {membrane_noise: 0}"),
    "calibrated": Opt("bool", False, doc="calibrate the analog neurons' parameter cells first"),
    "mapping": Opt("str", "theory", choices=("theory", "calibrated"),
                   doc="theory: the nominal neuron's activation; calibrated: each neuron's, measured"),
    "background": Opt("any", "poisson", doc="poisson, network, or a mapping of noise-network fields"),
    "synapses": Opt("str", "float", doc="float (exact weights) or a card whose tiles hold W"),
    "scheme": Opt("str", "ideal", doc="update scheme of the synapse tiles"),
    "w_max": Opt("float", 2.0, 1e-9, 1e9, doc="|W| mapped to the tiles' full range"),
    "renewing": Opt("bool", True, doc="saturating (renewing) synapses between the samplers; false: additive"),
    "compare_deploy": Opt("bool", False, doc="also train on the nominal neurons and deploy on this chip"),
}


def check(cfg: dict[str, Any], where: str) -> dict[str, Any]:
    """Validate the runs; build each run's neurons and synapse tile once on a tiny chip."""
    cfg["runs"] = check_runs(cfg, where)
    return cfg


def check_runs(cfg: dict[str, Any], where: str) -> list[dict[str, Any]]:
    """The config's runs (:data:`RUN`), validated, each built once on a tiny chip, named."""
    from ...models.sampling import sampling_network
    from ...runner import check_run_names

    runs = []
    for w, run in each_run(cfg, where, RUN):
        if run["calibrated"] and run["neurons"] != "analog":
            raise ConfigError(f"{w}.calibrated: only analog neurons have parameter cells to calibrate; got neurons "
                              f"{run['neurons']!r}")
        if run["compare_deploy"] and run["neurons"] != "analog":
            raise ConfigError(f"{w}.compare_deploy: ideal neurons are their own nominal neurons; use it with analog "
                              "neurons")
        if run["card_params"] and run["neurons"] != "analog":
            raise ConfigError(f"{w}.card_params: only analog neurons come from a chip card; got neurons "
                              f"{run['neurons']!r}")
        try:
            sampling_network(2, neurons=run["neurons"], card=_card(run), calibrated=False, mapping="theory",
                             background=_background(run["background"], small=True), calibration_ms=20.0)
            hw = _hardware(run).check(f"{w}")
            # the cards' numbers are part of the job: an edited card reruns
            run["card_data"] = {"neurons": _card(run).to_dict() if run["neurons"] == "analog" else None,
                                "synapses": hw.card.to_dict() if run["synapses"] != "float" else None}
        except NeuroemuError as exc:
            raise ConfigError(f"{w}: {exc}") from None
        if run["name"] is None:
            run["name"] = "/".join([run["neurons"]] + (["calibrated"] if run["calibrated"] else [])
                                   + [f"{run['mapping']} mapping"])
        runs.append(run)
    check_run_names(runs, where)
    return runs


def _card(run: dict[str, Any]):
    """The run's chip card with its ``card_params``."""
    from ...hardware.cards import load_card

    card = load_card(run["card"])
    return card.with_params(**run["card_params"]) if run["card_params"] else card


def _background(bg: Any, small: bool = False):
    if small and bg == "network":
        return {"size": 4, "in_degree": 2, "recurrent": 2}
    if small and isinstance(bg, dict):
        return {**bg, "size": 4, "in_degree": 2, "recurrent": 2}
    return bg


def _hardware(run: dict[str, Any]):
    from ...chip import Hardware

    if run["synapses"] == "float":
        return Hardware.exact()
    return Hardware(card=run["synapses"], scheme=run["scheme"], w_max=run["w_max"])


def prepare(cfg: dict[str, Any]) -> None:
    """Nothing to fetch: the machines are drawn from the seeds."""


def jobs(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """One job per run, seed and machine size."""
    from ..._version import __version__

    common = {k: cfg[k] for k in ("machines", "sampling", "training")}
    out = []
    for run in cfg["runs"]:
        for seed in cfg["seeds"]:
            for k in cfg["machines"]["sizes"]:
                out.append({"id": f"{run['name']}/K{k}/seed{seed}", "run": run["name"], "spec": run, "seed": seed,
                            "k": k, "neuroemu": __version__, **common})
    return out


# ---------------------------------------------------------------------------------------- one job
def _network(job: dict[str, Any], *, nominal: bool = False):
    from ...models.sampling import sampling_network

    run, s = job["spec"], job["sampling"]
    return sampling_network(job["k"], neurons=run["neurons"], card=_card(run), calibrated=run["calibrated"],
                            mapping=run["mapping"], background=run["background"], seed=job["seed"], dt=s["dt"],
                            burn_in_ms=s["burn_in_ms"], calibration_ms=s["calibration_ms"], nominal=nominal,
                            renewing=run["renewing"],
                            rng=np.random.default_rng([job["seed"], job["k"], 11]))


def _chip(model, job, w, b):
    chip = model.build(_hardware(job["spec"]), rng=np.random.default_rng([job["seed"], job["k"], 12]),
                       weights={"W": w})
    chip["W"].bias[:] = b
    return chip


def _curve(chip, task, times) -> tuple[list[float], dict[str, float], np.ndarray]:
    """D_KL after each sampling time (prefixes of one run), the run's times, and the sampled
    distribution over the states."""
    from ...boltzmann import sampled_dkl, state_histogram

    t0 = time.perf_counter()
    z, run = task.sampled(chip, times[-1])
    wall = time.perf_counter() - t0
    per_ms = len(z) / run.duration_ms
    curve = [sampled_dkl(task.p, z[:max(1, int(round(t * per_ms)))]) for t in times]
    return curve, {"wall_s": wall, "chip_s": run.chip_time_s}, state_histogram(z)


def _train(chip, task, job, *, checkpoint: bool):
    from ...rules.boltzmann import Boltzmann
    from ...train import Protocol, Trainer, checkpoint_path

    tr = job["training"]
    task.eval_ms = tr["eval_ms"]
    rule = Boltzmann(tr["lr"], decay=tr["decay"], chains=tr["chains"], duration_ms=tr["duration_ms"])
    protocol = Protocol(updates=tr["updates"], eval_every=tr["eval_every"], watch="loss", diverge_factor=math.inf)
    name = job["id"] + ("" if checkpoint else "/nominal")
    result = Trainer(chip, rule, task, protocol, job_id=name, observe_start=False, device_stats=False,
                     checkpoint=checkpoint_path(name) if checkpoint else None, key=job).run()
    task.eval_ms = job["sampling"]["times_ms"][-1]
    return result


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    from ...boltzmann import random_bm
    from ...data.boltzmann import TargetDistribution

    t0 = time.perf_counter()
    k, m, times = job["k"], job["machines"], job["sampling"]["times_ms"]
    w, b = random_bm(k, np.random.default_rng([job["seed"], k]), scale_w=m["scale_w"], scale_b=m["scale_b"])
    task = TargetDistribution(w, b, eval_ms=times[-1])
    model = _network(job)
    act = model.activation
    out: dict[str, Any] = {"run": job["run"], "seed": job["seed"], "k": k, "times_ms": times,
                           "activation": {"v_p05_mean": float(act.v_p05.mean()), "v_p05_std": float(act.v_p05.std()),
                                          "alpha_mean": float(act.alpha.mean()), "alpha_std": float(act.alpha.std())},
                           "noise_rate_hz": model.info["noise_rate_hz"], "noise_cv": model.info["noise_cv"],
                           "reset_above_threshold": model.info["reset_above_threshold"],
                           "acceleration": model.sampler.neurons.chip["acceleration"], "target": task.p.tolist()}
    chip = _chip(model, job, w, b)
    out["dkl_theory"], out["theory_time"], hist = _curve(chip, task, times)
    out["sampled_theory"] = hist.tolist()
    if k in job["training"]["sizes"]:
        result = _train(chip, task, job, checkpoint=True)
        out["ops"] = ops_summary(result.ops)  # per update of the training in the loop (no inference batch)
        out["train_curve"] = [[row["update"], row["dkl"]] for row in result.rows]
        out["dkl_trained"], out["trained_time"], hist = _curve(result.chip, task, times)
        out["sampled_trained"] = hist.tolist()
        if job["spec"]["compare_deploy"]:
            twin = _network(job, nominal=True)
            trained = _train(_chip(twin, job, w, b), task, job, checkpoint=False).chip
            wt, bt = trained.model.parameters(trained)
            # the model as training left it (after a resumed run: the one restored, random streams included)
            out["dkl_deployed"], _, _ = _curve(_chip(result.chip.model, job, wt, bt), task, times)
    out["train_time_s"] = time.perf_counter() - t0
    return out


# ---------------------------------------------------------------------------------------- report
def table(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per run and K: D_KL at each sampling time (mean, std over seeds) for the theoretical
    mapping, after training in the loop and deployed from nominal training."""
    rows = []
    for name in dict.fromkeys(r["run"] for r in results):
        for k in sorted({r["k"] for r in results if r["run"] == name}):
            rs = [r for r in results if r["run"] == name and r["k"] == k]
            row: dict[str, Any] = {"run": name, "K": k, "seeds": len(rs), "diverged": 0, "times_ms": rs[0]["times_ms"]}
            for key in ("dkl_theory", "dkl_trained", "dkl_deployed"):
                have = [r[key] for r in rs if key in r]
                if have:
                    arr = np.asarray(have)
                    row[key] = arr.mean(axis=0).tolist()
                    row[key + "_std"] = (arr.std(axis=0, ddof=1) if len(arr) > 1 else np.zeros(arr.shape[1])).tolist()
            row["wall_s"] = float(np.mean([r["theory_time"]["wall_s"] for r in rs]))
            row["chip_s"] = float(np.mean([r["theory_time"]["chip_s"] for r in rs]))
            row["noise_rate_hz"] = float(np.mean([r["noise_rate_hz"] for r in rs]))
            row["reset_above_threshold"] = float(np.mean([r["reset_above_threshold"] for r in rs]))
            rows.append(row)
    return rows


def console_table(rows: list[dict[str, Any]]) -> list[str]:
    width = max(len(r["run"]) for r in rows) + 2
    times = rows[0]["times_ms"]
    head = "run".ljust(width) + "  K" + "".join(f"{f'{t:g} ms':>11}" for t in times) + f"{'trained':>11}{'deployed':>11}"
    lines = [head, "D_KL(p* ‖ p_sampled), mean over seeds; trained/deployed at the longest time"]
    for r in rows:
        cells = "".join(f"{v:>11.4f}" for v in r["dkl_theory"])
        tr = f"{r['dkl_trained'][-1]:>11.4f}" if "dkl_trained" in r else f"{'-':>11}"
        dp = f"{r['dkl_deployed'][-1]:>11.4f}" if "dkl_deployed" in r else f"{'-':>11}"
        lines.append(r["run"].ljust(width) + f"{r['K']:>3}" + cells + tr + dp)
    return lines


def tidy(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One flat row per sampling time and kind of parameters."""
    out = []
    for key in ("dkl_theory", "dkl_trained", "dkl_deployed"):
        for t, v in zip(result["times_ms"], result.get(key, [])):
            out.append({"run": result["run"], "seed": result["seed"], "K": result["k"], "params": key[4:],
                        "time_ms": t, "dkl": v})
    return out


def results_head(title: str, cfg: dict[str, Any], meta: dict[str, Any]) -> str:
    """The top of RESULTS.md: title, description, the command, the runs (neurons, mapping,
    background, synapses)."""
    lines = [f"# {title}", "", cfg["description"] or "", "", "Produced by:", "", "```", meta["command"], "```", ""]
    for r in cfg["runs"]:
        changed = "".join(f", {k} {v:g}" for k, v in r["card_params"].items())
        chip = (f" ({r['card']}{changed}, {'calibrated' if r['calibrated'] else 'uncalibrated'})"
                if r["neurons"] == "analog" else "")
        tiles = f" ({r['scheme']}, w_max {r['w_max']:g})" if r["synapses"] != "float" else ""
        lines.append(f"* `{r['name']}`: neurons {r['neurons']}{chip}, {r['mapping']} mapping, background "
                     f"{r['background']}, synapses {r['synapses']}{tiles}"
                     + ("" if r["renewing"] else ", additive (not renewing) synapses"))
    return "\n".join(lines) + "\n"


def _cell(row, key, i):
    if key not in row:
        return "–"
    mean, std = row[key][i], row[key + "_std"][i]
    return f"{mean:.4f} ± {std:.4f}" if row["seeds"] > 1 else f"{mean:.4f}"


def _figures(results, rows, figs):
    from ... import plot

    paths = []
    sizes = sorted({r["K"] for r in rows})
    fig = plot._file_figure(figsize=(5.2 * len(sizes), 4.4), layout="constrained")
    for i, k in enumerate(sizes):
        ax = fig.add_subplot(1, len(sizes), i + 1)
        for j, r in enumerate(x for x in rows if x["K"] == k):
            color = f"C{j}"
            ax.errorbar(r["times_ms"], r["dkl_theory"], yerr=r["dkl_theory_std"], marker="o", capsize=3, color=color,
                        label=r["run"])
            if "dkl_trained" in r:
                ax.errorbar(r["times_ms"], r["dkl_trained"], yerr=r["dkl_trained_std"], marker="s", capsize=3,
                            color=color, linestyle="--")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("sampling time (biological ms)")
        ax.set_ylabel("D_KL(p* ‖ p_sampled)")
        ax.set_title(f"K = {k}: theoretical mapping (solid), trained in the loop (dashed)", fontsize="small")
        ax.legend(fontsize="x-small")
    paths.append(plot._save(fig, figs / "dkl_vs_time.png", 120))
    trained = [r for r in results if "train_curve" in r]
    if trained:
        fig = plot._file_figure(figsize=(7.0, 4.4), layout="constrained")
        ax = fig.add_subplot()
        for j, name in enumerate(dict.fromkeys(r["run"] for r in trained)):
            rs = [r for r in trained if r["run"] == name]
            for k in sorted({r["k"] for r in rs}):
                curves = np.asarray([r["train_curve"] for r in rs if r["k"] == k])
                x, y = curves[0, :, 0], curves[:, :, 1]
                ax.errorbar(np.concatenate([[0], x]), np.concatenate([[np.mean([r["dkl_theory"][-1] for r in rs
                                                                                  if r["k"] == k])], y.mean(axis=0)]),
                            yerr=np.concatenate([[0], y.std(axis=0)]), marker="o", capsize=3, color=f"C{j}",
                            label=f"{name}, K={k}")
                dep = [r["dkl_deployed"][-1] for r in rs if r["k"] == k and "dkl_deployed" in r]
                if dep:
                    ax.axhline(np.mean(dep), color=f"C{j}", linestyle=":", linewidth=1)
        ax.set_yscale("log")
        ax.set_xlabel("update")
        ax.set_ylabel("D_KL(p* ‖ p_sampled)")
        ax.set_title("training in the loop (dotted: nominal training deployed on the chip)", fontsize="small")
        ax.legend(fontsize="x-small")
        paths.append(plot._save(fig, figs / "training.png", 120))
    small = [r for r in results if r["k"] == min(sizes) and r["seed"] == results[0]["seed"]]
    if small:
        fig = plot._file_figure(figsize=(8.5, 3.2 * len(small)), layout="constrained")
        for i, r in enumerate(small):
            ax = fig.add_subplot(len(small), 1, i + 1)
            s = np.arange(len(r["target"]))
            ax.bar(s - 0.3, r["target"], width=0.3, color="0.3", label="target p*")
            ax.bar(s, r["sampled_theory"], width=0.3, color="C0", label="sampled, theoretical mapping")
            if "sampled_trained" in r:
                ax.bar(s + 0.3, r["sampled_trained"], width=0.3, color="C1", label="sampled, trained in the loop")
            ax.set_title(f"{r['run']}, K = {r['k']}, seed {r['seed']}", fontsize="small")
            ax.set_xlabel("state (unit 0 = least significant bit)")
            ax.set_ylabel("p")
            ax.legend(fontsize="x-small")
        paths.append(plot._save(fig, figs / "joint_states.png", 110))
    return paths


def report(cfg: dict[str, Any], results: list[dict[str, Any]], out, meta: dict[str, Any]) -> dict[str, Any]:
    from pathlib import Path

    from ...io import atomic_write_text

    out = Path(out)
    rows = table(results)
    figs = out / "figures"
    figs.mkdir(exist_ok=True)
    paths = _figures(results, rows, figs)
    energy_table, elines = energy_section(
        [{"run": f"{r['run']} K={r['k']}", "ops": r["ops"]} for r in divergence.split(results)[0] if r.get("ops")],
        figs, paths, "Per update: one update of the training in the loop (the model phase's chains on the chip, the "
        "write of the update); the sampling task has no per-inference batch.")
    times = cfg["sampling"]["times_ms"]
    head = ["run", "K", "seeds"] + [f"{t:g} ms" for t in times] + ["trained, " + f"{times[-1]:g} ms",
                                                                    "nominal training deployed", "wall s", "chip s",
                                                                    "resets ≥ threshold"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join([r["run"], str(r["K"]), str(r["seeds"]),
                                        *[_cell(r, "dkl_theory", i) for i in range(len(times))],
                                        _cell(r, "dkl_trained", len(times) - 1), _cell(r, "dkl_deployed", len(times) - 1),
                                        f"{r['wall_s']:.2f}", f"{r['chip_s']:.3g}",
                                        f"{r['reset_above_threshold']:.1f}"]) + " |")
    lines += ["", *elines] if energy_table else []
    tr, s = cfg["training"], cfg["sampling"]
    text = results_head("LIF sampling: Boltzmann distributions on ideal and emulated analog neurons", cfg, meta) + f"""
* machines: K ∈ {cfg['machines']['sizes']}, W and b drawn from 2·(Beta(0.5, 0.5) − ½)·scale (scale_w
  {cfg['machines']['scale_w']:g}, scale_b {cfg['machines']['scale_b']:g}), one machine and one chip per seed
* sampling: dt {s['dt']:g} ms, burn-in {s['burn_in_ms']:g} ms, states read every 1 ms; activation sweeps
  {s['calibration_ms']:g} ms per point; D_KL(p* ‖ p_sampled) over all 2^K states, natural log, a state
  never visited counted as half a visit
* training in the loop (K ∈ {tr['sizes']}): {tr['updates']} updates, η(t) = {tr['lr']:g}·{tr['decay']:g}/({tr['decay']:g} + t),
  model phase {tr['chains']} chains × {tr['duration_ms']:g} ms per update, exact data moments, starting
  from the target's own parameters; D_KL during training over {tr['eval_ms']:g} ms
* seeds {', '.join(map(str, cfg['seeds']))}; mean ± std over seeds; versions: {', '.join(f'{k} {v}' for k, v in meta['versions'].items())};
  {wall_time(meta)}. "wall s": emulation time of the longest free run; "chip s":
  the time the chip itself would take for it (biological time / acceleration); "resets ≥ threshold":
  samplers per chip whose reset potential lies at or above their threshold (they fire again as soon
  as their refractory time ends), mean over seeds

D_KL(p* ‖ p_sampled) after each sampling time (theoretical or calibrated mapping of the target's
own parameters), after training in the loop, and for the parameters trained on the chip's nominal
neurons then deployed on it:

""" + "\n".join(lines) + "\n\n" + "\n".join(f"![{p.stem}](figures/{p.name})" for p in paths) + "\n"
    atomic_write_text(out / "RESULTS.md", text)
    return {"table": rows, "figures": [str(p) for p in paths], "diverged": divergence.jobs(results),
            "energy": energy_table}

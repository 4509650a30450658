"""LIF sampling on images: a hierarchical Boltzmann machine of sampling neurons learns downscaled,
binarised Fashion-MNIST images of a class subset with the chip in the loop, then classifies them and
completes occluded ones (Kungl et al. 2019 did this on BrainScaleS-1 with reduced MNIST and
Fashion-MNIST).

Per job (one run × one seed): the images of ``images.classes`` are shrunk to side × side and
binarised (:func:`neuroemu.data.boltzmann.binary_images`); the machine has one unit per pixel, a
hidden layer and one label unit per class, layered (pixels ↔ hidden ↔ labels), its units the
run's sampling neurons (as in :mod:`neuroemu.studies.lif_sampling`) and its weights on the run's
synapses. Training: the Boltzmann-machine rule with clamped pixels and labels in the data phase
and free chains in the model phase, both sampled on the chip
(:class:`neuroemu.rules.boltzmann.Boltzmann`), through :class:`neuroemu.train.Trainer` (checkpoints
included). Evaluation: classification (pixels clamped, the most active label unit) during
training and at the end, and pattern completion of occluded test images at the end
(:class:`neuroemu.data.boltzmann.ImageTask`).
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from ... import divergence
from ...config import Opt
from ...errors import ConfigError
from .. import tables
from ..common import DATA, energy_section, header, ops_summary, prepare  # noqa: F401
from . import _card, _hardware, check_runs, results_head

NAME = "lif_images"


def _check_classes(values, where):
    if not isinstance(values, list) or len(values) < 2 or len(set(values)) != len(values) or any(
            not isinstance(c, int) or not 0 <= c <= 9 for c in values):
        raise ConfigError(f"{where}: expected at least two different Fashion-MNIST classes (0..9), got {values!r}")
    return values


def _check_occlusions(values, where):
    from ...data.boltzmann import ImageTask

    if not isinstance(values, list) or any(v not in ImageTask.OCCLUSIONS for v in values):
        raise ConfigError(f"{where}: expected a list of {', '.join(ImageTask.OCCLUSIONS)}, got {values!r}")
    return values


SCHEMA: dict[str, Any] = {
    **header(NAME, math.inf, seeds=[0, 1], seeds_doc="one network, one emulated chip and one data order per seed"),
    "data": DATA,
    "images": {
        "side": Opt("int", 12, 4, 28, doc="images shrunk to side × side pixels"),
        "classes": Opt("list", [0, 1, 7, 8], check=_check_classes, doc="the class subset (Fashion-MNIST labels)"),
        "threshold": Opt("float", 0.5, 0, 1, doc="binarisation threshold of the shrunk images"),
    },
    "network": {
        "hidden": Opt("int", 100, 1, 10000),
        "init_std": Opt("float", 0.01, 0, 10, doc="initial weights N(0, init_std²), symmetric"),
        "dt": Opt("float", 0.1, 1e-3, 10, doc="emulation step (biological ms)"),
        "burn_in_ms": Opt("float", 20.0, 0, 1e6),
        "calibration_ms": Opt("float", 5000.0, 10, 1e7, doc="sampling time per point of the activation sweeps"),
    },
    "training": {
        "updates": Opt("int", 600, 1, 10 ** 7),
        "batch_size": Opt("int", 20, 1, 10000, doc="clamped images (data-phase chains) per update"),
        "lr": Opt("float", 0.05, 1e-9, 1e6),
        "decay": Opt("float", None, 1e-9, 1e12, nullable=True, doc="η(t) = lr·decay/(decay + t); null: constant"),
        "chains": Opt("int", 20, 1, 10000, doc="free chains of the model phase"),
        "duration_ms": Opt("float", 100.0, 1, 1e7, doc="sampling time of each chain per update (biological ms)"),
        "eval_every": Opt("int", 100, 1, 10 ** 7),
        "eval_images": Opt("int", 400, 1, 10000, doc="test images classified during training"),
    },
    "eval": {
        "images": Opt("int", 1000, 1, 10000, doc="test images of the final evaluation"),
        "duration_ms": Opt("float", 100.0, 1, 1e7, doc="sampling time per test image"),
        "occlusions": Opt("list", ["lower_half", "left_half", "centre_patch"], check=_check_occlusions),
    },
    "runs": Opt("list", doc="list of runs, as in the lif_sampling study: {name, neurons, calibrated, mapping, "
                            "background, card, synapses, scheme, w_max, renewing}"),
}


def check(cfg: dict[str, Any], where: str) -> dict[str, Any]:
    cfg["runs"] = check_runs(cfg, where)
    for run in cfg["runs"]:
        if run["compare_deploy"]:
            raise ConfigError(f"{where} runs: compare_deploy is a setting of the lif_sampling study, not of {NAME}")
    n = cfg["images"]["side"] ** 2 + cfg["network"]["hidden"] + len(cfg["images"]["classes"])
    for run in cfg["runs"]:
        if run["neurons"] == "analog":
            from ...hardware.cards import load_card

            have = load_card(run["card"])["n_neurons"]
            extra = 200 if run["background"] == "network" else (run["background"].get("size", 200)
                                                                 if isinstance(run["background"], dict) else 0)
            if n + extra > have:
                raise ConfigError(f"{where} network.hidden: {n} units{f' and {extra} noise neurons' if extra else ''} "
                                  f"do not fit the {have} neurons of {run['card']}")
    return cfg


def jobs(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    from ..._version import __version__

    common = {k: cfg[k] for k in ("data", "images", "network", "training", "eval")}
    return [{"id": f"{run['name']}/seed{seed}", "run": run["name"], "spec": run, "seed": seed, "neuroemu": __version__,
             **common} for run in cfg["runs"] for seed in cfg["seeds"]]


def _data(job: dict[str, Any]):
    from ...data.boltzmann import binary_images
    from ...data.fashion_mnist import load_fashion_mnist

    d, im = job["data"], job["images"]
    out = []
    for split, limit in (("train", d["train_limit"]), ("test", d["test_limit"])):
        x, y = load_fashion_mnist(split, data_dir=d["dir"], download=d["download"], limit=limit)
        keep = np.isin(y, im["classes"])
        out += [binary_images(x[keep], im["side"], im["threshold"]),
                np.array([im["classes"].index(c) for c in y[keep]], np.int64)]
    return out


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    from ...data.boltzmann import ImageTask
    from ...models.sampling import sampling_network
    from ...rules.boltzmann import Boltzmann
    from ...train import Protocol, Trainer, checkpoint_path

    t0 = time.perf_counter()
    seed, run, net, tr, ev = job["seed"], job["spec"], job["network"], job["training"], job["eval"]
    tx, ty, ex, ey = _data(job)
    task = ImageTask(tx, ty, ex, ey, side=job["images"]["side"], classes=job["images"]["classes"], hidden=net["hidden"],
                     batch_size=tr["batch_size"], eval_ms=ev["duration_ms"], eval_images=tr["eval_images"],
                     occlusions=ev["occlusions"], rng=np.random.default_rng([seed, 21]))
    model = sampling_network(task.n, neurons=run["neurons"], card=_card(run), calibrated=run["calibrated"],
                             mapping=run["mapping"], background=run["background"], seed=seed, dt=net["dt"],
                             mask=task.mask(), duration_ms=tr["duration_ms"], burn_in_ms=net["burn_in_ms"],
                             calibration_ms=net["calibration_ms"], renewing=run["renewing"],
                             rng=np.random.default_rng([seed, 22]))
    g = np.random.default_rng([seed, 23])
    w0 = np.where(task.mask(), g.normal(0.0, net["init_std"], (task.n, task.n)), 0.0)
    chip = model.build(_hardware(run), rng=np.random.default_rng([seed, 24]), weights={"W": (w0 + w0.T) / 2})
    rule = Boltzmann(tr["lr"], decay=tr["decay"], chains=tr["chains"], duration_ms=tr["duration_ms"])
    protocol = Protocol(updates=tr["updates"], eval_every=tr["eval_every"], watch="loss", diverge_factor=math.inf)

    result = Trainer(chip, rule, task, protocol, job_id=job["id"], observe_start=False, device_stats=False,
                     checkpoint=checkpoint_path(job["id"]), key=job).run()
    trained, task = result.chip, result.task
    task.eval_images = min(ev["images"], len(task.test_x))
    final = task.evaluate(trained, "final")
    return {"run": job["run"], "seed": seed, "units": list(task.sizes), "train_images": len(tx), "test_images": len(ex),
            "curve": [[r["update"], r["accuracy"]] for r in result.rows], **final, "completions": task.samples,
            "pixel_mean": float(tx.mean()), "reset_above_threshold": model.info["reset_above_threshold"],
            "train_time_s": time.perf_counter() - t0,
            "ops": ops_summary(result.ops)}  # per update (the image task has no per-inference batch)


# ---------------------------------------------------------------------------------------- report
def table(results: list[dict[str, Any]], occlusions: list[str]) -> list[dict[str, Any]]:
    rows = []
    for name, rs, ok, seeds in tables.run_groups(results):
        row: dict[str, Any] = {"run": name, **seeds}
        keys = ["accuracy"] + [f"{p}_{o}" for o in occlusions
                               for p in ("completion_error", "mean_image_error", "occluded_accuracy")]
        for k in keys:
            row[k], row[f"{k}_std"] = tables.mean_std([r[k] for r in ok], 100)
        row["train_time_s"] = float(np.mean([r["train_time_s"] for r in ok]))
        rows.append(row)
    return rows


def console_table(rows: list[dict[str, Any]]) -> list[str]:
    width = max(len(r["run"]) for r in rows) + 2
    occ = [k[len("completion_error_"):] for k in rows[0] if k.startswith("completion_error_") and not k.endswith("_std")]
    lines = ["run".ljust(width) + f"{'accuracy':>10}" + "".join(f"{'err ' + o:>20}" for o in occ)]
    for r in rows:
        lines.append(r["run"].ljust(width) + f"{r['accuracy']:>9.1f}%" +
                     "".join(f"{r['completion_error_' + o]:>19.1f}%" for o in occ))
    return lines + ["err: occluded pixels completed wrongly (%)"]


def tidy(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"run": result["run"], "seed": result["seed"], **{k: v for k, v in result.items()
                                                               if isinstance(v, float)}}]


def _draw_completions(ax, result, kind, side):
    s = result["completions"][kind]
    true, done, hide = np.asarray(s["true"], float), np.asarray(s["completed"], float), np.asarray(s["hidden"], bool)
    n = len(true)
    img = np.full((3 * (side + 1), n * (side + 1)), np.nan)
    for i in range(n):
        occluded = np.where(hide, 0.5, true[i])
        filled = np.where(hide, done[i], true[i])
        for r, a in enumerate((true[i], occluded, filled)):
            img[r * (side + 1):r * (side + 1) + side, i * (side + 1):i * (side + 1) + side] = a.reshape(side, side)
    import matplotlib

    cmap = matplotlib.colormaps["gray"].copy()
    cmap.set_bad("#4a78b0")  # the gaps between images
    ax.imshow(np.ma.masked_invalid(img), cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(f"{result['run']} (seed {result['seed']}), {kind.replace('_', ' ')}: true / occluded / completed "
                 "(grey: on-probability)", fontsize="small")


def report(cfg: dict[str, Any], results: list[dict[str, Any]], out, meta: dict[str, Any]) -> dict[str, Any]:
    from pathlib import Path

    from ... import plot
    from ...io import atomic_write_text

    out = Path(out)
    occ = cfg["eval"]["occlusions"]
    rows = table(results, occ)
    figs = out / "figures"
    figs.mkdir(exist_ok=True)
    paths = []
    fig = plot._file_figure(figsize=(7.0, 4.4), layout="constrained")
    ax = fig.add_subplot()
    for j, name in enumerate(dict.fromkeys(r["run"] for r in results)):
        curves = np.asarray([r["curve"] for r in results if r["run"] == name], float)
        ax.errorbar(curves[0, :, 0], 100 * curves[:, :, 1].mean(axis=0), yerr=100 * curves[:, :, 1].std(axis=0),
                    marker="o", capsize=3, color=f"C{j}", label=name)
    ax.set_xlabel("update")
    ax.set_ylabel(f"test accuracy (%), {cfg['training']['eval_images']} images")
    ax.set_title(f"classes {cfg['images']['classes']}, {cfg['images']['side']}×{cfg['images']['side']} binary images",
                 fontsize="small")
    ax.axhline(100 / len(cfg["images"]["classes"]), color="0.5", linestyle=":", linewidth=1)
    ax.legend(fontsize="x-small")
    paths.append(plot._save(fig, figs / "accuracy.png", 120))
    side = cfg["images"]["side"]
    first = [r for r in results if r["seed"] == results[0]["seed"] and r.get("completions")]
    for kind in occ:
        fig = plot._file_figure(figsize=(8.0, 2.2 * len(first)), layout="constrained")
        for i, r in enumerate(first):
            _draw_completions(fig.add_subplot(len(first), 1, i + 1), r, kind, side)
        paths.append(plot._save(fig, figs / f"completion_{kind}.png", 110))
    head = ["run", "seeds", "accuracy"] + [f"{o.replace('_', ' ')}: {w}" for o in occ
                                           for w in ("completion error", "mean image's error", "accuracy")] + ["time (s)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [tables.value_cell(r, "accuracy", ".1f")]
        for o in occ:
            cells += [tables.value_cell(r, f"{k}_{o}", ".1f")
                      for k in ("completion_error", "mean_image_error", "occluded_accuracy")]
        lines.append("| " + " | ".join([r["run"], str(r["seeds"]), *cells, f"{r['train_time_s']:.0f}"]) + " |")
    energy_table, elines = energy_section(divergence.split(results)[0], figs, paths,
                                          "Per update: one update of the training in the loop (the data and model phases' chains on the "
                                          "chip, the write of the update); the image task has no per-inference batch.")
    lines += ["", *elines] if energy_table else []
    im, net, tr, ev = cfg["images"], cfg["network"], cfg["training"], cfg["eval"]
    r0 = results[0]
    text = results_head("LIF sampling on images: a hierarchical Boltzmann machine on binarised Fashion-MNIST", cfg,
                        meta) + f"""
* data: Fashion-MNIST classes {im['classes']}, shrunk to {im['side']}×{im['side']} and binarised at {im['threshold']:g}
  ({r0['train_images']} training, {r0['test_images']} test images; {100 * r0['pixel_mean']:.1f} % of training pixels on)
* network: {r0['units'][0]} pixel units ↔ {r0['units'][1]} hidden ↔ {r0['units'][2]} label units (one per class), initial weights
  N(0, {net['init_std']:g}²); dt {net['dt']:g} ms, burn-in {net['burn_in_ms']:g} ms per chain
* training in the loop: {tr['updates']} updates of the Boltzmann-machine rule, lr {tr['lr']:g}
  ({'constant' if tr['decay'] is None else f"decay {tr['decay']:g}"}); data phase {tr['batch_size']} clamped training images,
  model phase {tr['chains']} free chains, {tr['duration_ms']:g} ms each
* evaluation: {ev['images']} test images, {ev['duration_ms']:g} ms of sampling each; classification = the label unit on
  most of the time; completion: the occluded pixels free, read as on when on more than half of the time;
  completion error = occluded pixels completed wrongly (%); mean image's error: the same for the training
  set's mean image thresholded at ½, a reference that ignores the visible part
* seeds {', '.join(map(str, cfg['seeds']))}; mean ± std over seeds; versions: {', '.join(f'{k} {v}' for k, v in meta['versions'].items())};
  wall time {meta['wall_time_s']:.0f} s

""" + "\n".join(lines) + "\n\n" + "\n".join(f"![{p.stem}](figures/{p.name})" for p in paths) + "\n"
    atomic_write_text(out / "RESULTS.md", text)
    return {"table": rows, "figures": [str(p) for p in paths], "diverged": divergence.jobs(results),
            "energy": energy_table}

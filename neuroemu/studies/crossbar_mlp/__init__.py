"""Fashion-MNIST MLP trained by backprop with its weights on crossbar tiles.

Every layer's weight matrix lives on a :class:`~neuroemu.hardware.crossbar.Tile` of one device card and is
read through the tile's periphery (DAC, read noise, output noise, ADC) in the forward and the
backward pass. After each mini-batch the backprop update ``ΔW = −lr · dᵀx`` goes to the layer's
update scheme, which turns it into pulses on the devices. Biases are digital (float) and trained by
plain SGD. The same network is trained once per run: (card, scheme, devices per synapse,
periphery), over one or more seeds; the result table compares test accuracy, pulses and write
energy, and test accuracy after the chip has drifted for the configured delays.

A run with ``deploy: true`` trains on the ideal float chip and then programs the trained weights
onto the run's card once (the inference use of e.g. ``pcm_joshi2020``), with optional global drift
compensation.

Validation: ``data.validation: N`` holds N training images out of training (a fixed subset drawn
with ``data.validation_seed``, the same for every run and seed); every epoch and the end of
training then also report ``val_acc`` on them. ``neuroemu tune`` (:mod:`neuroemu.tune`) scores its
trials on that accuracy and sets ``eval.test: false``, so that the test set is not even loaded while
hyperparameters are chosen. A run may override any ``train`` field for itself (``train: {lr: 0.2}``
in the run), which is how each run gets its own tuned learning rate.

A seed whose training loss is NaN/inf, or whose epoch-mean loss is above ``diverge_factor``
(default 5) × the loss of its first batch, stops and is marked diverged (:mod:`neuroemu.divergence`); the
tables average the other seeds. Long jobs print progress lines from inside
(:class:`neuroemu.progress.JobProgress`).
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np

from ...hardware.cards import load_card
from ...config import Opt, check_delays, check_layers
from ...chip import Hardware
from ...hardware.crossbar import Periphery
from ...errors import ConfigError, did_you_mean
from ...plot import delay_key, delay_label
from ...progress import job_messages
from ...hardware.schemes import PulseLimitWarning
from ... import divergence
from .. import tables
from ..common import (DATA, TILE_RUN, check_tile_run, each_run, energy_section,  # noqa: F401
                      header, ops_summary, prepare, require_validation, start_report, tile_hardware,
                      tiles_only)  # prepare: this study's

NAME = "crossbar_mlp"


PERIPHERY = {
    "dac_bits": Opt("int", 7, 0, 24, doc="input DAC resolution (0 = off)"),
    "adc_bits": Opt("int", 9, 0, 24, doc="output ADC resolution (0 = off)"),
    "adc_range": Opt("float", 12.0, 0, doc="ADC saturation |y| (0 = none)"),
    "out_noise": Opt("float", 0.06, 0, doc="additive output noise std"),
    "read_noise": Opt("bool", True, doc="per-device read noise from the card"),
    "noise_management": Opt("bool", True),
    "bound_management": Opt("int", 0, 0, 24),
}

TRAIN: dict[str, Any] = {
    "epochs": Opt("int", 3, 1, 10000),
    "batch_size": Opt("int", 100, 1, 60000),
    "lr": Opt("float", 0.05, 1e-12, 1e6),
    "seconds_per_batch": Opt("float", 0.01, 0, doc="emulated chip time per mini-batch (drift clock)"),
    "init_gain": Opt("float", 1.0, 0, 100, doc="scale of the uniform ±sqrt(1/fan_in) initialisation"),
}

SCHEMA: dict[str, Any] = {
    **header(NAME, divergence.LOSS_FACTOR),
    "data": {
        **DATA,
        "validation": Opt("int", 0, 0, 60000, doc="training images held out of training and scored as val_acc "
                          "(0 = none); the same images for every run and seed"),
        "validation_seed": Opt("int", 0, 0, doc="seed of the draw of the validation images"),
    },
    "model": {"hidden": Opt("list", [256], check=check_layers)},
    "train": TRAIN,
    "hardware": {
        "w_max": Opt("float", 1.0, 1e-9, 1e9, doc="weight mapped to a full conductance side"),
        "n_devices": Opt("int", 1, 1, 64),
        "periphery": PERIPHERY,
    },
    "eval": {
        "batch_size": Opt("int", 1000, 1, 100000),
        "delays": Opt("list", [1.0, 3600.0, 86400.0], check=check_delays,
                      doc="seconds after training at which test accuracy is measured again (drift)"),
        "drift_compensation": Opt("bool", True, doc="global drift compensation at the delayed evaluations"),
        "test": Opt("bool", True, doc="measure test accuracy; false: the test set is not loaded (tuning trials), "
                    "eval.delays must be [] and data.validation > 0"),
    },
    "runs": Opt("list", doc="list of runs: {card, scheme, ...}"),
}

RUN = {
    **TILE_RUN,
    "levels": Opt("int", None, 2, 2**24, nullable=True),
    "bits": Opt("int", None, 1, 24, nullable=True),
    "periphery": Opt("any", None, nullable=True, doc="'ideal' or overrides of hardware.periphery"),
    "deploy": Opt("bool", False, doc="train on the ideal chip, then program the weights onto this card"),
    "num_sends": Opt("int", None, 1, 64, nullable=True, doc="analog_chip cards: input repetitions of the MAC mode"),
    "train": Opt("dict", {}, doc="this run's own values of train fields, e.g. {lr: 0.2} (a tuned learning rate)"),
}


def run_train(run: dict[str, Any], train: dict[str, Any]) -> dict[str, Any]:
    """The ``train`` section of a run's jobs: the config's, with the run's own ``train`` values."""
    return {**train, **run.get("train", {})}


def check_run_train(run: dict[str, Any], schema: dict[str, Opt], where: str) -> None:
    """Validate a run's ``train`` overrides against the config's ``train`` fields (in place). An
    empty override is dropped from the run, so that runs without one keep the job (and the results
    recorded before runs could have one) they had."""
    from ...config import validate

    given = run.pop("train", None) or {}
    if given:
        partial = {k: Opt(v.kind, None, v.lo, v.hi, v.choices, nullable=True) for k, v in schema.items()}
        checked = validate(given, partial, f"{where}.train")
        run["train"] = {k: v for k, v in checked.items() if k in given}


def check(cfg: dict[str, Any], where: str) -> dict[str, Any]:
    """Validate across fields: every run's card, scheme, scheme parameters and periphery are built
    once on a tiny tile (so a typo fails now, not minutes later in a worker); run names are filled
    in and must be distinct; the data must give at least one batch."""
    from ...config import validate
    from ...errors import NeuroemuError
    from ...runner import check_run_names
    data, ev = cfg["data"], cfg["eval"]
    if not ev["test"]:
        if ev["delays"]:
            raise ConfigError(f"{where} eval.delays: the delayed accuracies are measured on the test set, which "
                              f"eval.test: false leaves alone; expected [], got {ev['delays']}")
        if not data["validation"]:
            raise ConfigError(f"{where} eval.test: false leaves nothing to score; hold out validation images "
                              "(data.validation: N) or set eval.test: true")
    runs = []
    for w, run in each_run(cfg, where, RUN):
        tiles_only(run, w)
        check_run_train(run, SCHEMA["train"], w)
        _check_data(data, run_train(run, cfg["train"])["batch_size"], where)
        if run["levels"] is not None and run["bits"] is not None:
            raise ConfigError(f"{w}.bits: give levels or bits, not both")
        if run["deploy"] and run["scheme"] != "ideal":
            raise ConfigError(f"{w}.scheme: a deploy run trains on the ideal chip and programs the card once; "
                              f"expected scheme 'ideal', got {run['scheme']!r}")
        per = run["periphery"]
        if isinstance(per, str) and per != "ideal":
            raise ConfigError(f"{w}.periphery: expected 'ideal' or a mapping of periphery fields, got {per!r}"
                              f"{did_you_mean(per, ['ideal'])}")
        if per is not None and per != "ideal":
            run["periphery"] = validate(per, {k: Opt(v.kind, None, v.lo, v.hi, nullable=True)
                                              for k, v in PERIPHERY.items()}, f"{w}.periphery")
        try:
            card = _card(run)
        except NeuroemuError as exc:
            raise ConfigError(f"{w}.card: {exc}") from None
        if run["num_sends"] is not None and card.kind != "analog_chip":
            raise ConfigError(f"{w}.num_sends: only analog_chip cards (e.g. brainscales2) have a MAC mode; "
                              f"card {card.name} is kind '{card.kind}'")
        hw = hardware({"run": run, "hardware": cfg["hardware"]})
        if run["deploy"]:  # trained on the ideal chip: only the tile must build
            hw.replace(scheme="ideal", scheme_params={}).check(w)
        elif not card.pulsable and run["scheme"] != "ideal":
            raise ConfigError(f"{w}.scheme: card {card.name} is programmed by target, not by pulses; "
                              "use scheme 'ideal' or deploy: true")
        else:
            hw.check(w)
        run["card_data"] = card.to_dict()  # the card's numbers are part of the job: an edited card reruns
        if run["name"] is None:
            n = run["n_devices"]
            run["name"] = f"{card.name}/{run['scheme']}" + (f"/N{n}" if n and n > 1 else "") + \
                ("/deploy" if run["deploy"] else "")
        runs.append(run)
    check_run_names(runs, where)
    cfg["runs"] = runs
    return cfg


def _check_data(data: dict[str, Any], bs: int, where: str) -> None:
    """The training images left after the validation images give at least one batch of ``bs``."""
    limit, n_val = data["train_limit"], data["validation"]
    if limit is not None and limit < bs + n_val:
        need = f"train.batch_size ({bs}) + data.validation ({n_val})" if n_val else f"train.batch_size ({bs})"
        raise ConfigError(f"{where} data.train_limit: expected at least {need} images, got {limit}")
    if n_val and 60000 < bs + n_val:
        raise ConfigError(f"{where} data.validation: {n_val} images leave fewer than train.batch_size ({bs}) of the "
                          "60000 training images")


def tune_trial(cfg: dict[str, Any], where: str) -> dict[str, Any]:
    """A config as a tuning trial (:mod:`neuroemu.tune`): scored on the held-out validation images
    only; the test set is not loaded and the drift delays (test-set evaluations) are skipped."""
    require_validation(cfg, where)
    cfg["eval"] = {**cfg["eval"], "test": False, "delays": []}
    return cfg


#: How ``neuroemu tune`` searches this experiment (see :mod:`neuroemu.tune`): trials are scored by
#: the validation accuracy (higher is better), the rungs of successive halving shorten
#: ``train.epochs``, a run can have its own ``train`` values (so each run its own learning rate),
#: and :func:`tune_trial` turns a config into a trial's.
TUNE = {"metric": "val_acc", "mode": "max", "resource": "train.epochs", "sections": ("train",), "trial": tune_trial,
        "about": "trials are scored on training images held out of training (data.validation); the test set is not "
                 "loaded"}


def jobs(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """One job per (run, seed), each carrying everything it needs (JSON-serialisable)."""
    from ..._version import __version__

    common = {k: cfg[k] for k in ("data", "model", "hardware", "eval", "diverge_factor")}
    # options at their defaults are left out of the jobs: results recorded before they existed stay valid
    if not common["data"]["validation"]:
        common["data"] = {k: v for k, v in common["data"].items() if k not in ("validation", "validation_seed")}
    if common["eval"]["test"]:
        common["eval"] = {k: v for k, v in common["eval"].items() if k != "test"}
    common["neuroemu"] = __version__
    return [{"id": f"{run['name']}@seed{seed}", "run": run, "seed": seed, "train": run_train(run, cfg["train"]),
             **common} for run in cfg["runs"] for seed in cfg["seeds"]]


# ---------------------------------------------------------------------------------------- network
def _periphery(job: dict[str, Any]) -> Periphery:
    per = job["run"]["periphery"]
    if per == "ideal":
        return Periphery.ideal()
    base = dict(job["hardware"]["periphery"])
    base.update({k: v for k, v in (per or {}).items() if v is not None})
    return Periphery(**base)


def _tile_options(run: dict[str, Any]) -> dict[str, Any]:
    return {"num_sends": run["num_sends"]} if run.get("num_sends") is not None else {}


def _card(run: dict[str, Any]):
    """The run's card with its levels/bits knob applied."""
    card = load_card(run["card"])
    if run["levels"] is not None:
        card = card.with_levels(run["levels"])
    if run["bits"] is not None:
        card = card.with_levels(bits=run["bits"])
    return card


def hardware(job: dict[str, Any]) -> Hardware:
    """The run's chip: its card, scheme, devices per synapse, weight range, periphery."""
    run, hw = job["run"], job["hardware"]
    return tile_hardware(run, n_devices=hw["n_devices"], w_max=hw["w_max"], periphery=_periphery(job),
                         card=_card(run)).replace(tile_options=_tile_options(run))


# ---------------------------------------------------------------------------------------- one job
@job_messages(once=(PulseLimitWarning,))
def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Train and evaluate one (run, seed) on the core (:class:`~neuroemu.models.mlp.MLP` on the run's
    :class:`~neuroemu.chip.Hardware`, :class:`~neuroemu.rules.backprop.Backprop`,
    :class:`~neuroemu.train.Trainer`). Module-level so that worker processes can run it. A seed that
    diverges stops there and returns what it recorded, with ``diverged``."""
    from ...data.classification import fashion_mnist_task
    from ...models.mlp import MLP
    from ...record import pulse_histogram
    from ...rules.backprop import Backprop
    from ...train import Protocol, Trainer, checkpoint_path

    run, tr, ev, data = job["run"], job["train"], job["eval"], job["data"]
    seed_seq = np.random.SeedSequence([job["seed"], zlib.crc32(run["name"].encode())])
    rng_chip, rng_data = (np.random.default_rng(s) for s in seed_seq.spawn(2))
    task = fashion_mnist_task(rng=rng_data, batch_size=tr["batch_size"], validation=data.get("validation", 0),
                              validation_seed=data.get("validation_seed", 0), test=ev.get("test", True),
                              train_limit=data["train_limit"], test_limit=data["test_limit"], dir=data["dir"],
                              download=data["download"], eval_batch=ev["batch_size"])
    hw = hardware(job)
    deploy = run["deploy"]
    model = MLP([task.x.shape[1], *job["model"]["hidden"], 10], init_gain=tr["init_gain"])
    chip = model.build(Hardware.ideal(hw.w_max) if deploy else hw, rng_chip)
    protocol = Protocol(epochs=tr["epochs"], seconds_per_update=tr["seconds_per_batch"],
                        delays=ev["delays"] if ev.get("test", True) else (),
                        drift_compensation=ev["drift_compensation"], deploy=hw if deploy else None,
                        watch_label="train_loss", diverge_factor=job["diverge_factor"])
    result = Trainer(chip, Backprop(tr["lr"]), task, protocol, job_id=job["id"], deploy_rng=rng_chip,
                     checkpoint=checkpoint_path(job["id"]), key=job).run()
    chip, stats = result.chip, result.chip.stats()
    head = {"run": run["name"], "card": hw.card.name, "scheme": "ideal" if deploy else run["scheme"],
            "deploy": deploy, "n_devices": hw.n_devices, "seed": job["seed"]}
    metrics = [{"run": run["name"], "seed": job["seed"], **row} for row in result.rows]
    if result.diverged is not None:
        return {**head, "diverged": result.diverged, "pulse_limit_hits": stats["pulse_limit_hits"],
                "train_time_s": result.train_time_s, "metrics": metrics, "ops": ops_summary(result.ops)}
    final = dict(result.final)
    if result.after:
        final["test_acc_after"] = {delay_key(d): v["test_acc"] for d, v in result.after.items()}
    edges, steps, counts = result.recorder.histograms("layer1")
    return {
        **head, **final, "pulses": stats["pulses"], "pulses_per_synapse": stats["pulses"] / chip.n_synapses,
        "refreshes": stats["refreshes"], "energy_pJ": stats["energy_pJ"], "pulse_limit_hits": stats["pulse_limit_hits"],
        "train_time_s": result.train_time_s,
        "metrics": metrics, "device_summary": result.recorder.summary(),
        "g_hist": {"edges": np.asarray(edges).tolist(), "steps": np.asarray(steps).tolist(),
                   "counts": np.asarray(counts).tolist()},
        "pulse_hist": pulse_histogram(chip["layer1"].tile),
        "ops": ops_summary(result.ops),
    }


# ---------------------------------------------------------------------------------------- report
def table(results: list[dict[str, Any]], delays: list[float]) -> list[dict[str, Any]]:
    """One row per run: mean and std over the seeds that did not diverge of accuracy, pulses,
    refreshes, energy; ``seeds``, ``diverged`` and the pulse-limit hits of all seeds."""
    rows = []
    for name, rs, ok, seeds in tables.run_groups(results):
        row = {"run": name, "card": rs[0]["card"], "scheme": rs[0]["scheme"], "deploy": rs[0]["deploy"],
               "n_devices": rs[0]["n_devices"], **seeds,
               "pulse_limit_hits": sum(r.get("pulse_limit_hits", 0) for r in rs)}
        if ok:
            for key in ("test_acc", "val_acc"):
                if key in ok[0]:
                    row[key], row[f"{key}_std"] = tables.mean_std([r[key] for r in ok], 100)
            for d in delays if "test_acc_after" in ok[0] else ():
                after = [r["test_acc_after"][delay_key(d)] for r in ok]
                row[f"acc_after_{delay_key(d)}s"] = float(np.mean(after) * 100)
            row.update({
                "pulses_per_synapse": float(np.mean([r["pulses_per_synapse"] for r in ok])),
                "refreshes": float(np.mean([r["refreshes"] for r in ok])),
                "energy_uJ": float(np.mean([r["energy_pJ"] for r in ok]) * 1e-6),
                "train_time_s": float(np.mean([r["train_time_s"] for r in ok])),
            })
        rows.append(row)
    return rows


def console_table(rows: list[dict[str, Any]]) -> list[str]:
    val = [("val acc %", "val_acc", ".2f")] if any("val_acc" in r for r in rows) else []
    return tables.console_table(rows, val + [("pulses/syn", "pulses_per_synapse", ".2f"),
                                             ("refreshes", "refreshes", ".0f"), ("energy uJ", "energy_uJ", ".3g")])


def markdown_table(rows: list[dict[str, Any]], delays: list[float]) -> str:
    val = any("val_acc" in r for r in rows)
    head = ["run", "test acc. (%)"] + (["validation acc. (%)"] if val else []) + \
        [f"after {delay_label(d)}" for d in delays] + \
        ["pulses / synapse", "refreshes", "write energy (µJ)", "train time (s)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["run"], tables.value_cell(r, "test_acc")] + \
            ([tables.value_cell(r, "val_acc", note=False)] if val else []) + \
            [tables.number(r, f"acc_after_{delay_key(d)}s", ".2f") for d in delays] + \
            [tables.number(r, "pulses_per_synapse", ".2f"), tables.number(r, "refreshes", ".0f"),
             tables.number(r, "energy_uJ", ".3g"), tables.number(r, "train_time_s", ".0f")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines + tables.markdown_notes(rows, "epoch"))


def report(cfg: dict[str, Any], results: list[dict[str, Any]], out, meta: dict[str, Any]) -> dict[str, Any]:
    """Write metrics.csv, RESULTS.md and figures; return the summary (for summary.json)."""
    from ...io import atomic_write_text
    from .figures import experiment_figures

    out, figs = start_report(out, [m for r in results for m in r["metrics"]])
    delays = cfg["eval"]["delays"]
    rows = table(results, delays)
    ok, _ = divergence.split(results)
    kept = [r for r in rows if tables.kept(r)]
    test = cfg["eval"]["test"]
    figures = experiment_figures(kept, [m for r in ok for m in r["metrics"]], ok, delays, figs) \
        if kept and test else []
    energy, elines = energy_section(ok, figs, figures)
    seeds = ", ".join(map(str, cfg["seeds"]))
    n_val, limit = cfg["data"]["validation"], cfg["data"]["train_limit"] or 60000
    images = f"{limit - n_val} training ({n_val} more held out for validation, drawn with seed " \
        f"{cfg['data']['validation_seed']})" if n_val else f"{limit} training"
    images += f" / {cfg['data']['test_limit'] or 10000} test images" if test else \
        " images; the test set was not used (eval.test: false)"
    own = [f"{r['name']}: " + ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}"
                                        for k, v in r["train"].items()) for r in cfg["runs"] if r.get("train")]
    own_line = "\n* runs with their own training values (the others use the lr above): " + "; ".join(own) if own else ""
    text = f"""# Fashion-MNIST MLP on emulated crossbars

{cfg['description'] or 'Backprop-trained MLP whose weights live on crossbar tiles; one run per device card and update scheme.'}

Produced by:

```
{meta['command']}
```

* network: 784-{'-'.join(map(str, cfg['model']['hidden']))}-10, ReLU, softmax cross-entropy; digital biases
* training: {cfg['train']['epochs']} epoch(s), batch {cfg['train']['batch_size']}, lr {cfg['train']['lr']:g},
  {images}; seeds {seeds}{own_line}
* periphery (unless a run says otherwise): {cfg['hardware']['periphery']}
* test accuracy is measured on the emulated chip (noisy analog reads) right after training and again
  after the chip has drifted for each delay (global drift compensation: {cfg['eval']['drift_compensation']})
* divergence: a seed whose training loss is NaN/inf, or whose epoch-mean loss is above {cfg['diverge_factor']:g} × its
  first batch's, stops and is left out of the means ("diverged k/n"); pulse schemes clip an update to
  their max_pulses per synapse and say so below the table
* versions: {', '.join(f'{k} {v}' for k, v in meta['versions'].items())}

{markdown_table(rows, delays)}

Pulses per synapse count every device pulse (programming and refresh) over all layers divided by
the number of synapses; write energy uses the card's energy per pulse and per RESET (0 where the
card gives none).

""" + "\n".join([*elines, ""]) + "\n".join(f"![{p.stem}](figures/{p.name})" for p in figures) + "\n"
    atomic_write_text(out / "RESULTS.md", text)
    return {"table": rows, "figures": [str(p) for p in figures], "diverged": divergence.jobs(results), "energy": energy}


def tidy(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Flat rows of one job's result for sweep tables: one row (run, seed, scalar metrics; a diverged
    job: where and how instead of its metrics)."""
    keys = ("test_acc", "val_acc", "pulses_per_synapse", "refreshes", "energy_pJ", "train_time_s")
    row = {"run": result["run"], "seed": result["seed"], **{k: result[k] for k in keys if k in result},
           **divergence.tidy(result)}
    row.update({f"test_acc_after_{k}s": v for k, v in result.get("test_acc_after", {}).items()})
    return [row]

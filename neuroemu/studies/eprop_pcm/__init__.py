"""e-prop on an emulated PCM chip: online training of a recurrent spiking network whose input,
recurrent and output weights are differential PCM pairs, one run per weight-update scheme
(Demirag, Frenkel, Payvand & Indiveri 2021, arXiv:2108.01804).

A job is the core's pieces (:func:`run_job`): the network :class:`~neuroemu.models.rsnn.RSNN` on
the run's chip (:func:`hardware`, :func:`network`), the rule :class:`~neuroemu.rules.eprop.Eprop`,
a task of :mod:`neuroemu.data.sequences` (:func:`task`) and :class:`~neuroemu.train.Trainer` with
an update protocol. Every update is one presentation of one task sequence (batch 1 for pattern
generation). Pattern generation trains ``task.patterns`` frozen input/target pairs (3, as the
authors' code), one per update, each epoch in a new random order
(:func:`neuroemu.data.tasks.epoch_order`). The forward pass reads the chip: the input currents through the input tile (one noisy read per time
step of the active rows), the recurrent currents inside the neuron loop with the exact
output-referred per-device read noise of the active rows, the read-out through the output tile.
e-prop (:mod:`neuroemu.rules.eprop`) turns the recorded traces into the gradient it wants for each
matrix; the run's update scheme applies ΔW = −lr·g to the tiles as device pulses (or exact writes
for the float reference). The read-out bias (off in the authors' setup) is digital. Between
updates the chip's clock advances by ``train.update_interval`` (the authors' code writes every
T0 = 38.6 s; null: the sequence length), so devices drift (time since programming is tracked per
device; with the Nandakumar card the drift power law acts only once t − t_p ≥ T0 — before that a
device keeps its programmed conductance, see ``drift_t0`` in the card).

Units. The LIF equation here is the one of the authors' code (srnn-pcm ``SRNN.forward``: no
(1 − α) factor on the input current, reset by subtracting v_th), so membrane potentials, thresholds
and weights are in their units: ``model.v_th`` 0.193 is their 0.193 and ``hardware.w_max`` sets
their ``xbar_scale`` (µS per weight unit = (g_max − g_min)/w_max per device). Their
pseudo-derivative leaves out the 1/v_th of e-prop's ψ (:mod:`neuroemu.rules.eprop`), so their
input and recurrent gradients are v_th × ours: their learning rate η is η·v_th in ``train.lr``,
their clamp ±``train.grad_clamp`` on those gradients is ±grad_clamp/v_th here, and on the read-out
gradient (no ψ) it is ±grad_clamp. Their firing-rate regulariser enters the learning signal
(``reg_form: signal``), so its coefficient carries over unchanged.

A run may have its own ``train`` values (``train: {lr: 1.0e-6}`` in the run), which is how tuned
learning rates are committed; :data:`TUNE` lets ``neuroemu tune`` search them per run.

Autapses are excluded: the recurrent diagonal never enters the dynamics and is never updated.
The normalised MSE of one sequence is mean_t (y − y*)² / mean_t (y* − mean y*)² (1 = predicting
the mean); with several patterns the reported NMSE is the mean over the patterns. The learning
curve reports, at each evaluation, the mean over the patterns of each one's error on its latest
training pass (no extra forward pass); the final and after-drift numbers come from a pass over all
patterns after training.

Every update checks the error of its forward pass (the NMSE, or the task's cross-entropy for
classification) before the update is applied: a NaN/inf error, or at an evaluation (and on the
final pass after training) an NMSE above ``diverge_factor`` (default 1000) × the untrained
network's, stops the run and marks it diverged (:mod:`.divergence`; the recorded sign-scheme runs
reach ~300×). Long runs print a progress line from inside the job
(:class:`neuroemu.progress.JobProgress`).
"""

from __future__ import annotations

import math
import zlib
from typing import Any

import numpy as np

from ...chip import Hardware
from ...hardware.cards import load_card
from ...config import Opt, check_delays
from ...errors import ConfigError, did_you_mean
from ...plot import delay_key
from ...progress import job_messages
from ...hardware.schemes import SCHEMES, PulseLimitWarning
from ... import divergence
from .report import (AUTHORS, CHIP_DIFFERENCES, DIFFERENCES, console_table, departures,  # noqa: F401
                     differences_markdown, figures, report, table, tidy)
from ..common import TILE_RUN, check_tile_run, each_run, header, ops_summary, tile_hardware

NAME = "eprop_pcm"

TASKS = ("pattern_generation", "evidence_accumulation")


def _positive(value: float, where: str) -> float:
    if not value > 0:
        raise ConfigError(f"{where}: expected a number > 0 (or null), got {value!r}")
    return value


SCHEMA: dict[str, Any] = {
    **header(NAME, divergence.NMSE_FACTOR, seeds=[0, 1, 2], seeds_doc="network, task and chip seed"),
    "task": {
        "name": Opt("str", "pattern_generation", choices=TASKS),
        "n_in": Opt("int", 100, 1, 100000),
        "t_steps": Opt("int", 1000, 1, 10**7, doc="pattern generation: steps of one sequence (1 ms each); "
                       "evidence accumulation trials last 2250 steps"),
        "batch": Opt("int", 1, 1, 4096, doc="evidence accumulation: trials per update"),
        "patterns": Opt("int", None, 1, 1000, nullable=True,
                        doc="pattern generation: frozen input/target pairs, one per update, each epoch in a new "
                            "random order; the NMSE is their mean (null: 3, as the authors' code)"),
    },
    "model": {
        "n_rec": Opt("int", 100, 1, 100000),
        "n_alif": Opt("int", 0, 0, 100000, doc="how many of the recurrent neurons are ALIF"),
        "tau_m": Opt("float", 30e-3, 1e-6, 10.0),
        "tau_out": Opt("float", 30e-3, 1e-6, 10.0),
        "tau_a": Opt("float", 200e-3, 1e-6, 100.0),
        "beta": Opt("float", 0.266, 0, 100, doc="ALIF threshold increase per spike, in units of v_th"),
        "v_th": Opt("float", 0.193, 1e-6, 1e6, doc="threshold, in the authors' units (their tuned set: 0.193)"),
        "n_ref": Opt("int", 0, 0, 1000, doc="refractory steps (the authors' code: none)"),
        "feedback": Opt("str", "random", choices=("symmetric", "random", "adaptive"),
                        doc="learning-signal matrix: random = drawn once and never updated (the authors' code)"),
        "c_reg": Opt("float", 8.4e-4, 0, 1e6, doc="firing-rate regulariser (the authors' tuned set: 8.4e-4)"),
        "reg_form": Opt("str", "signal", choices=("signal", "loss"),
                        doc="signal: c_reg (f − f_target) added to the learning signal (the authors' code); loss: the "
                            "gradient of ½ c_reg Σ (f − f_target)²"),
        "f_target": Opt("float", 12.0, 0, 1000, doc="target rate (Hz)"),
        "init": Opt("str", "devices", choices=("devices", "kaiming"),
                    doc="initial weights: devices = the authors' PCM init, every device at init_gain µS ± 10 % "
                        "(weights ≈ 0); kaiming = their float init, N(0, 2 init_gain²/fan_in)"),
        "init_gain": Opt("float", 0.237, 0, 100,
                         doc="the authors' w_init_gain (tuned set 0.237): the devices' initial conductance in µS (init: "
                             "devices) or the Kaiming-normal gain (init: kaiming); always the gain of the random "
                             "feedback matrix, N(0, 2 init_gain²/n_rec)"),
        "out_gain": Opt("float", None, 0, 100, nullable=True,
                        doc="init: kaiming only: the Kaiming-normal gain of the initial read-out weights (null: init_gain)"),
        "readout_bias": Opt("bool", False, doc="train a digital read-out bias (the authors' code has none)"),
    },
    "train": {
        "updates": Opt("int", 250, 1, 10**7, doc="weight updates (the full protocol: 750)"),
        "lr": Opt("float", 7e-5, 1e-12, 1e6, doc="input and recurrent weights: ΔW = −lr·g, g summed over the steps "
                  "(the authors' η is η·v_th here)"),
        "lr_out": Opt("float", 1.66e-5, 1e-12, 1e6, doc="read-out weights and bias"),
        "optimizer": Opt("str", "sgd", choices=("sgd", "adam"),
                         doc="sgd: ΔW = −lr·g (the authors of the PCM study); adam: ΔW = Adam's step on g, lr and "
                             "lr_out its step sizes (Bellec et al.'s code); either way the scheme applies ΔW"),
        "grad_clamp": Opt("float", 100.0, nullable=True, check=_positive,
                          doc="clamp on each entry of one sequence's gradient in the authors' units: ±grad_clamp/v_th "
                              "on the input and recurrent gradients, ±grad_clamp on the read-out's (null: none)"),
        "update_interval": Opt("float", 38.6, nullable=True, check=_positive,
                               doc="chip time from one update to the next, s (the authors' code: T0 = 38.6 s; null: "
                                   "the sequence length)"),
        "eval_every": Opt("int", 10, 1, 10**7, doc="record the learning curve every this many updates"),
        "stop_accuracy": Opt("float", None, 0, 1, nullable=True,
                             doc="classification tasks: stop at the first learning-curve point (every eval_every "
                                 "updates) whose training batch, scored before its own update on unseen trials, "
                                 "reaches this accuracy; updates is then the most (Bellec et al. stop at 0.93 on a "
                                 "validation batch, up to 2000 iterations); null: always train all updates"),
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

#: Patterns trained when ``task.patterns`` is null: three, as Demirag et al.'s code (srnn-pcm
#: ``train.py``: six ``Sinusoids`` samples, a 50 % random split for training).
AUTHORS_PATTERNS = 3

RUN = {
    **TILE_RUN,
    "exact_reads": Opt("bool", False, doc="read the tiles without noise (the float reference)"),
    "train": Opt("dict", {}, doc="this run's own values of train fields, e.g. {lr: 1.0e-5} (a tuned learning rate)"),
}

_DENSE = ("ideal", "digital", "sign", "stochastic", "multi_device", "mixed_precision", "tiki_taka")


def check(cfg: dict[str, Any], where: str) -> dict[str, Any]:
    """Validate every run by building its card, tile and scheme once on a tiny tile."""
    from ...config import validate
    from ...runner import check_run_names

    if cfg["model"]["n_alif"] > cfg["model"]["n_rec"]:
        raise ConfigError(f"{where} model.n_alif: expected at most model.n_rec ({cfg['model']['n_rec']}), "
                          f"got {cfg['model']['n_alif']}")
    if cfg["task"]["name"] != "pattern_generation" and cfg["task"]["patterns"] is not None:
        raise ConfigError(f"{where} task.patterns: only pattern_generation trains frozen patterns ({cfg['task']['name']} "
                          f"draws new trials every update); expected null, got {cfg['task']['patterns']}")
    if cfg["task"]["name"] == "pattern_generation" and cfg["task"]["patterns"] is None:
        cfg["task"]["patterns"] = AUTHORS_PATTERNS
    regression = cfg["task"]["name"] == "pattern_generation"
    if regression and cfg["train"]["stop_accuracy"] is not None:
        raise ConfigError(f"{where} train.stop_accuracy: pattern_generation is scored by its NMSE, not an accuracy; "
                          "expected null")
    runs = []
    for w, run in each_run(cfg, where, RUN):
        given = run.pop("train") or {}
        if given:  # checked like the config's train section; a run without any keeps the job it had
            checked = validate(given, SCHEMA["train"], f"{w}.train")
            run["train"] = {k: checked[k] for k in given}
            if regression and run["train"].get("stop_accuracy") is not None:
                raise ConfigError(f"{w}.train.stop_accuracy: pattern_generation is scored by its NMSE, not an "
                                  "accuracy; expected null")
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
    from ..._version import __version__

    common = {k: cfg[k] for k in ("task", "model", "hardware", "eval", "diverge_factor")}
    return [{"id": f"{run['name']}@seed{seed}", "run": run, "seed": seed, "neuroemu": __version__,
             "train": _train(cfg, run), **common}
            for run in cfg["runs"] for seed in cfg["seeds"]]


def _train(cfg: dict[str, Any], run: dict[str, Any]) -> dict[str, Any]:
    """A job's train values: the config's, then the run's own. Plain-SGD jobs leave ``optimizer`` out, and
    jobs that train all their updates ``stop_accuracy``, so that they keep the hash (and the recorded
    results) they had before the fields existed."""
    tr = {**cfg["train"], **run.get("train", {})}
    if tr.get("optimizer") == "sgd":
        del tr["optimizer"]
    if tr.get("stop_accuracy", 0) is None:
        del tr["stop_accuracy"]
    return tr


def tune_trial(cfg: dict[str, Any], where: str) -> dict[str, Any]:
    """A config as a tuning trial (:mod:`neuroemu.tune`): scored by the error right after training,
    so the drift delays are skipped."""
    cfg["eval"] = {**cfg["eval"], "delays": []}
    return cfg


#: How ``neuroemu tune`` searches this study (:mod:`neuroemu.tune`): trials are scored by ``final``
#: (the NMSE, lower is better; accuracy, higher, for evidence accumulation) on validation seeds,
#: which draw their own patterns, inputs, network and devices; successive halving shortens
#: ``train.updates``; a run can have its own ``train`` values (its own learning rates).
TUNE = {"metric": "final",
        "mode": lambda cfg: "min" if cfg["task"]["name"] == "pattern_generation" else "max",
        "resource": "train.updates", "sections": ("train",), "trial": tune_trial,
        "about": "trials run on validation seeds, each with its own task patterns, inputs, initial network and "
                 "devices, disjoint from the reported seeds"}


# ---------------------------------------------------------------------------------------- the chip
def _config(job: dict[str, Any]):
    """The rule's config; the authors' gradient clamp converted to our units (module docstring)."""
    from ...rules.eprop import EpropConfig

    m, clamp = job["model"], job["train"]["grad_clamp"]
    loss = "mse" if job["task"]["name"] == "pattern_generation" else "ce"
    return EpropConfig(dt=1e-3, tau_m=m["tau_m"], tau_out=m["tau_out"], tau_a=m["tau_a"], beta=m["beta"] * m["v_th"],
                       v_th=m["v_th"], n_ref=m["n_ref"], n_alif=m["n_alif"], loss=loss, c_reg=m["c_reg"],
                       f_target=m["f_target"], reg_form=m["reg_form"],
                       grad_clip=math.inf if clamp is None else clamp / m["v_th"],
                       grad_clip_out=math.inf if clamp is None else clamp)


#: The card the authors' code models (Nandakumar et al. 2018, G_max 12 µS): its conductance range and
#: ``hardware.w_max`` give the µS per weight unit at which the "devices" init is expressed as weights.
AUTHORS_CARD = "pcm_nandakumar2018"


def initial_gains(m: dict[str, Any], n_in: int, n_rec: int, w_max: float) -> dict[str, float]:
    """Gains of :class:`~neuroemu.models.rsnn.RSNN` (W ~ N(0, 1)·gain/√fan_in) and of the random feedback
    matrix that give the authors' initial weights.

    ``init: kaiming`` (their float runs): ``kaiming_normal_ × w_init_gain``, std g·√(2/fan_in), for
    W_in, W_rec and W_out (W_out with ``out_gain`` when set). ``init: devices`` (their PCM runs, xbar.py
    ``XBar.__init__``): every device at G ~ N(G0, (0.1·G0)²) with G0 = init_gain µS, so a weight
    (G⁺ − G⁻)/scale has std √2·0.1·G0/scale — the same for every matrix, whatever its fan-in; scale is
    :data:`AUTHORS_CARD`'s (g_max − g_min)/w_max µS per weight unit (their 11.825). Every run of a seed
    starts from these same weights, programmed onto its own devices. The random feedback matrix is
    ``kaiming_normal_ × w_init_gain`` in both modes (srnn.py).
    """
    root2, g0 = math.sqrt(2.0), m["init_gain"]
    fb = root2 * g0
    if m["init"] == "kaiming":
        out = root2 * (g0 if m["out_gain"] is None else m["out_gain"])
        return {"in_gain": fb, "rec_gain": fb, "out_gain": out, "fb_gain": fb}
    p = load_card(AUTHORS_CARD).params
    std = root2 * 0.1 * g0 * w_max / (p["g_max"] - p["g_min"])
    return {"in_gain": std * math.sqrt(n_in), "rec_gain": std * math.sqrt(n_rec), "out_gain": std * math.sqrt(n_rec),
            "fb_gain": fb}


def hardware(job: dict[str, Any]) -> Hardware:
    """The run's chip: its card, scheme, devices per synapse and weight range; the periphery reads
    exactly (no DAC, ADC or output noise), with per-device read noise unless the config or the run
    turns it off."""
    from ...hardware.crossbar import Periphery

    run, hw = job["run"], job["hardware"]
    per = Periphery(dac_bits=0, adc_bits=0, adc_range=0.0, out_noise=0.0,
                    read_noise=hw["read_noise"] and not run["exact_reads"], noise_management=False)
    return tile_hardware(run, n_devices=hw["n_devices"], w_max=hw["w_max"], periphery=per)


def network(job: dict[str, Any], n_in: int, n_out: int, rng: np.random.Generator,
            run_rng: np.random.Generator | None = None):
    """The run's network on its chip and its e-prop rule: ``(chip, rule)``. ``rng`` draws the initial
    weights, then the random feedback matrix, then the devices (the same for every run of a seed);
    ``run_rng`` (default ``rng``) the schemes' random pulses and the seeds of the recurrent read noise."""
    from ...models.rsnn import RSNN
    from ...rules.eprop import LEARNING, Eprop, random_feedback

    m, tr = job["model"], job["train"]
    run_rng = rng if run_rng is None else run_rng
    cfg = _config(job)
    gains = initial_gains(m, n_in, m["n_rec"], job["hardware"]["w_max"])
    model = RSNN(n_in, m["n_rec"], n_out, cfg, in_gain=gains["in_gain"], rec_gain=gains["rec_gain"],
                 out_gain=gains["out_gain"], readout_bias=m["readout_bias"], noise_rng=run_rng)
    weights = model.initial_weights(rng)
    fb = None if m["feedback"] == "symmetric" else random_feedback(m["n_rec"], n_out, gains["fb_gain"], rng)
    chip = model.build(hardware(job), rng, scheme_rng=run_rng, weights=weights)
    rule = Eprop(tr["lr"], tr["lr_out"], feedback=m["feedback"], b_feedback=fb, optimizer=tr.get("optimizer", "sgd"),
                 **{k: getattr(cfg, k) for k in LEARNING})
    return chip, rule


def task(job: dict[str, Any], rng: np.random.Generator, order_rng: np.random.Generator):
    """The job's task for the trainer (:mod:`neuroemu.data.sequences`): pattern generation's frozen
    patterns, one per update in a new order each epoch (from ``order_rng``), or evidence
    accumulation's fresh batches and test set (from ``rng``)."""
    from ...data import sequences

    t = job["task"]
    if t["name"] == "pattern_generation":
        return sequences.pattern_generation_task(n_in=t["n_in"], t_steps=t["t_steps"], patterns=t.get("patterns") or 1,
                                                 updates=job["train"]["updates"], rng=rng, order_rng=order_rng)
    return sequences.evidence_accumulation_task(batch=t["batch"], n_in=t["n_in"], trials=job["eval"]["trials"], rng=rng,
                                                stop_accuracy=job["train"].get("stop_accuracy"))


def _g_mean(column: str) -> bool:
    """The device columns of the learning curve: each tile's mean conductance."""
    return column.endswith(".g_mean_uS")


@job_messages(once=(PulseLimitWarning,))
def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Train one (run, seed) and evaluate it (:class:`~neuroemu.models.rsnn.RSNN` on the run's chip,
    :class:`~neuroemu.rules.eprop.Eprop`, :class:`~neuroemu.train.Trainer` with an update protocol);
    module-level so that worker processes can run it. A run that diverges stops there and returns what
    it recorded, with ``diverged`` (see :mod:`neuroemu.divergence`)."""
    from ...record import pulse_histogram
    from ...train import Protocol, Trainer, checkpoint_path

    run, tr, ev = job["run"], job["train"], job["eval"]
    seeds = np.random.SeedSequence([job["seed"], zlib.crc32(b"eprop")]).spawn(3)
    rng_chip = np.random.default_rng([job["seed"], zlib.crc32(run["name"].encode())])
    data = task(job, np.random.default_rng(seeds[0]), np.random.default_rng(seeds[2]))
    regression = job["task"]["name"] == "pattern_generation"
    sample = data.task if regression else data.test
    chip, rule = network(job, sample.x.shape[2], sample.target.shape[2], np.random.default_rng(seeds[1]), rng_chip)
    metric = "nmse" if regression else "accuracy"
    protocol = Protocol(updates=tr["updates"], eval_every=tr["eval_every"],
                        seconds_per_update=tr.get("update_interval") or sample.x.shape[0] * sample.dt,
                        delays=ev["delays"], watch="nmse" if regression else "loss",
                        diverge_factor=job["diverge_factor"])
    result = Trainer(chip, rule, data, protocol, job_id=job["id"], device=_g_mean, device_stats=False,
                     checkpoint=checkpoint_path(job["id"]), key=job).run()
    chip, stats, last = result.chip, result.chip.stats(), result.last
    counters = {"run": run["name"], "card": run["card"], "scheme": run["scheme"], "seed": job["seed"], "metric": metric,
                "pulses": stats["pulses"], "pulses_per_synapse": stats["pulses"] / chip.n_synapses,
                "refreshes": stats["refreshes"], "energy_pJ": stats["energy_pJ"],
                "pulse_limit_hits": stats["pulse_limit_hits"], "train_time_s": result.train_time_s,
                "clip_updates": int(last.get("clip_updates", 0)), "clipped_entries": int(last.get("clipped_entries", 0)),
                "ops": ops_summary(result.ops)}  # per update (a sequence task: no per-inference batch)
    if tr.get("stop_accuracy") is not None:  # the updates it trained: all of them unless it reached the accuracy
        counters["updates_trained"] = result.ops["updates"]
    curve = [{"run": run["name"], "seed": job["seed"], **row} for row in result.rows]
    if result.diverged is not None:
        return {**counters, "diverged": result.diverged, "curve": curve}
    final = result.final
    edges, steps, counts = result.recorder.histograms("recurrent")
    return {
        **counters, "final": final[metric], "after": {delay_key(d): v[metric] for d, v in result.after.items()},
        "curve": curve, "device_summary": result.recorder.summary(),
        "final_each": final["nmse_each"].tolist() if regression else None,
        "g_hist": {"edges": np.asarray(edges).tolist(), "steps": np.asarray(steps).tolist(),
                   "counts": np.asarray(counts).tolist()},
        "pulse_hist": pulse_histogram(chip["recurrent"].tile),
        "y": final["y"][:, :, 0].T.tolist() if regression else None,  # one list per pattern
        "target": sample.target[:, :, 0].T.tolist() if regression else None,
    }


#: This study writes the config's ``differences`` into its own section (:func:`differences_markdown`).
REPORTS_DIFFERENCES = True

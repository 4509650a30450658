"""What the studies share: the top of every config schema, the loop over its runs, the Fashion-MNIST
data section and its fetch, a run on tiles of one card through one scheme, and the start of every
report (metrics.csv, the figures folder)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .. import divergence
from ..chip import EXACT, Hardware
from ..config import Opt, check_seeds, validate
from ..errors import ConfigError, NeuroemuError
from ..hardware.cards import Card, load_card
from ..hardware.crossbar import Periphery
from ..io import write_csv


def header(name: str, diverge_factor: float, *, seeds: list[int] | None = None, seeds_doc: str = "") -> dict[str, Any]:
    """The fields every study config starts with: experiment, description, seeds, workers, diverge_factor."""
    return {
        "experiment": Opt("str", name, choices=(name,)),
        "description": Opt("str", ""),
        "seeds": Opt("list", [0] if seeds is None else seeds, check=check_seeds, doc=seeds_doc),
        "workers": Opt("int", 2, 1, 256, doc="local worker processes (1 = serial)"),
        "diverge_factor": divergence.option(diverge_factor),
        "differences": Opt("list", [], check=check_differences,
                           doc="how this config departs from the setup it reproduces, each with why: RESULTS.md "
                               "lists them under \"Differences from the authors' setup\""),
    }


def check_differences(value: Any, where: str) -> list[str]:
    """A list of non-empty strings (an ``Opt`` check)."""
    if not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigError(f"{where}: expected a list of non-empty strings (one difference from the authors' setup "
                          f"each, with why), got {value!r}")
    return [" ".join(v.split()) for v in value]


def differences_markdown(items: list[str]) -> list[str]:
    """The RESULTS.md section "Differences from the authors' setup": one bullet per item."""
    return ["## Differences from the authors' setup", "", *(f"* {item}" for item in items), ""]


def each_run(cfg: dict[str, Any], where: str, schema: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, the run validated against ``schema``) for every run of the config; at least one."""
    if not cfg["runs"]:
        raise ConfigError(f"{where} runs: expected at least one run")
    for i, raw in enumerate(cfg["runs"]):
        w = f"{where} runs[{i}]"
        yield w, validate(raw, schema, w)


#: Where the Fashion-MNIST data comes from (the Fashion-MNIST studies' ``data`` section).
DATA: dict[str, Any] = {
    "dir": Opt("str", None, nullable=True, doc="directory with the Fashion-MNIST IDX files"),
    "train_limit": Opt("int", None, 1, 60000, nullable=True),
    "test_limit": Opt("int", None, 1, 10000, nullable=True),
    "download": Opt("bool", True, doc="fetch the data when it is missing"),
}


def prepare(cfg: dict[str, Any]) -> None:
    """Make sure the Fashion-MNIST data is there once, before worker processes start."""
    from ..data.fashion_mnist import fetch_fashion_mnist, find_fashion_mnist

    d = cfg["data"]
    if find_fashion_mnist(d["dir"]) is None:
        if not d["download"]:
            from ..errors import DataError

            raise DataError("Fashion-MNIST not found and data.download is false; run `neuroemu data fashion-mnist` "
                            "or set NEUROEMU_FASHION_MNIST to a directory with the IDX files")
        fetch_fashion_mnist(d["dir"])


#: Fields of a run on tiles of one card trained through one update scheme.
TILE_RUN = {
    "name": Opt("str", None, nullable=True),
    "card": Opt("str"),
    "scheme": Opt("str"),
    "scheme_params": Opt("dict", {}),
    "n_devices": Opt("int", None, 1, 64, nullable=True),
    "w_max": Opt("float", None, 1e-9, 1e9, nullable=True),
}


def tiles_only(run: dict[str, Any], where: str) -> None:
    """A study whose runs live on tiles refuses the tile-less exact chip."""
    if run["scheme"] == EXACT:
        raise ConfigError(f"{where}.scheme: the runs of this study live on tiles and '{EXACT}' has none; for float "
                          "weights use card 'ideal' with scheme 'ideal'")


def tile_hardware(run: dict[str, Any], *, n_devices: int = 1, w_max: float = 1.0, periphery: Periphery | None = None,
                  card: Card | str | None = None) -> Hardware:
    """The chip of a run on tiles of one card (:data:`TILE_RUN`): its card (or ``card``, e.g. with
    its levels set), scheme and parameters; its n_devices and w_max, or these defaults; ``periphery``
    (default: exact reads)."""
    return Hardware(card=run["card"] if card is None else card, scheme=run["scheme"],
                    scheme_params=run["scheme_params"], n_devices=run["n_devices"] or n_devices,
                    w_max=run.get("w_max") or w_max, periphery=Periphery.ideal() if periphery is None else periphery)


def check_tile_run(run: dict[str, Any], where: str, *, n_devices: int = 1) -> Card:
    """A run on tiles of one card through one scheme: build its card, a 2×2 tile and the scheme once
    (:meth:`Hardware.check`: a typo fails now, not minutes later in a worker) and keep the card's
    numbers in the run (an edited card reruns). Returns the card."""
    tiles_only(run, where)
    try:
        card = load_card(run["card"])
    except NeuroemuError as exc:
        raise ConfigError(f"{where}.card: {exc}") from None
    tile_hardware(run, n_devices=n_devices, card=card).check(where)
    run["card_data"] = card.to_dict()
    return card


def wall_time(meta: dict[str, Any]) -> str:
    """"wall time N s" of this invocation, and how many of its jobs it loaded from an earlier run
    instead of computing them (each job's own time stays in its ``runs/*.json``)."""
    text = f"wall time {meta.get('wall_time_s', 0.0):.0f} s"
    loaded, total = meta.get("jobs_loaded", 0), meta.get("jobs", 0)
    if loaded:
        count = f"all {total}" if loaded == total else f"{loaded} of {total}"
        text += f" ({count} jobs loaded from an earlier run, not recomputed)"
    return text


def start_report(out: str | Path, metrics: list[dict[str, Any]], *, make_figures: bool = True) -> tuple[Path, Path]:
    """Write ``metrics.csv`` into ``out`` and (``make_figures``) make ``out/figures``; returns (out,
    the figures folder)."""
    out = Path(out)
    write_csv(out / "metrics.csv", metrics)
    figs = out / "figures"
    if make_figures:
        figs.mkdir(exist_ok=True)
    return out, figs


# ---------------------------------------------------------------------------------------- energy
def ops_summary(ops: dict[str, Any] | None) -> dict[str, Any]:
    """What a job keeps of a trainer's :attr:`~neuroemu.train.Result.ops`: the counts and energy per
    update and per inference, the latency per inference (JSON-ready; empty without counts)."""
    if not ops:
        return {}
    keep = ("updates", "per_update", "energy_per_update_pJ", "per_inference", "energy_per_inference_pJ",
            "latency_per_inference_s")
    return {k: ops[k] for k in keep if k in ops}


def _mean_energy(results: list[dict[str, Any]], key: str) -> dict[str, float] | None:
    from ..energy import COMPONENTS

    have = [r["ops"][key] for r in results if r.get("ops", {}).get(key)]
    if not have:
        return None
    out = {c: float(np.mean([h[c] for h in have])) for c in (*COMPONENTS, "total")}
    out["not_costed"] = sorted({s for h in have for s in h.get("not_costed", [])})
    return out


def energy_rows(results: list[dict[str, Any]], key: str = "run") -> list[dict[str, Any]]:
    """One row per run that has counts (runs without, e.g. recorded before counting, are left
    out): mean energy per update and per inference (pJ, per component and total), mean latency
    per inference (s), over the seeds that have counts."""
    rows = []
    for name in dict.fromkeys(r[key] for r in results):
        rs = [r for r in results if r[key] == name and r.get("ops")]
        if not rs:
            continue
        lat = [r["ops"]["latency_per_inference_s"] for r in rs if "latency_per_inference_s" in r["ops"]]
        per_inf = [r["ops"]["per_inference"] for r in rs if r["ops"].get("per_inference")]
        rows.append({"run": name, "update": _mean_energy(rs, "energy_per_update_pJ"),
                     "inference": _mean_energy(rs, "energy_per_inference_pJ"),
                     "latency_s": float(np.mean(lat)) if lat else None,
                     "macs_per_inference": float(np.mean([sum(l["macs"] for l in p["layers"].values())
                                                          for p in per_inf])) if per_inf else None,
                     "effective_per_inference": float(np.mean([sum(l["effective_macs"] + l["effective_acs"]
                                                                   for l in p["layers"].values())
                                                               for p in per_inf])) if per_inf else None})
    return rows


def _energy_cell(e: dict[str, float] | None) -> str:
    if not e:
        return "–"
    parts = [f"{c} {e[c] / 1e3:.3g}" for c in ("adc", "dac", "device_reads", "pulses", "resets", "digital", "neurons")
             if e[c] > 0]
    return f"**{e['total'] / 1e3:.3g}** ({', '.join(parts)})" if parts else "0"


def energy_markdown(rows: list[dict[str, Any]]) -> list[str]:
    """The RESULTS.md section of :func:`energy_rows` (nJ), with where the costs come from."""
    if not rows:
        return []
    lines = ["## Operations and energy", "",
             "Energy in nJ (total, then by component) per training update and per inference of one sample, "
             "from the chip's operation counts and the per-operation costs of `neuroemu.energy` (each cost and "
             "its source: [docs/energy.md](../../../docs/energy.md)); synaptic operations per inference (dense "
             "MACs and NeuroBench's effective MACs + ACs); latency: array reads only.", "",
             "| run | per update (nJ) | per inference (nJ) | MACs / inference (dense, effective) | latency / inference |",
             "|---|---|---|---|---|"]
    for r in rows:
        ops = ("–" if r["macs_per_inference"] is None
               else f"{r['macs_per_inference']:.3g}, {r['effective_per_inference']:.3g}")
        lat = "–" if r["latency_s"] is None else f"{r['latency_s'] * 1e6:.3g} µs"
        lines.append(f"| {r['run']} | {_energy_cell(r['update'])} | {_energy_cell(r['inference'])} | {ops} | {lat} |")
    missing = sorted({s for r in rows for k in ("update", "inference") if r[k] for s in r[k]["not_costed"]})
    if missing:
        lines += ["", "Counted but not costed (no published per-operation energy): " + "; ".join(missing) + "."]
    return lines + [""]


def energy_figure(rows: list[dict[str, Any]], path: Path) -> Path | None:
    """Stacked bars of the energy per component, per run: per update and per inference."""
    from .. import plot
    from ..energy import COMPONENTS

    have = [r for r in rows if r["update"] or r["inference"]]
    if not have:
        return None
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig = plot._file_figure(figsize=(max(6.0, 0.9 * len(have) + 3), 4.4), layout="constrained")
    for i, key in enumerate(("update", "inference")):
        ax = fig.add_subplot(1, 2, i + 1)
        bottom = np.zeros(len(have))
        for j, c in enumerate(COMPONENTS):
            vals = np.array([(r[key] or {}).get(c, 0.0) / 1e3 for r in have])
            if vals.any():
                ax.bar(range(len(have)), vals, bottom=bottom, label=c.replace("_", " "), color=f"C{j}")
                bottom += vals
        ax.set_xticks(range(len(have)), [r["run"] for r in have], rotation=40, ha="right", fontsize="x-small")
        ax.set_ylabel(f"energy per {key} (nJ)")
        ax.set_yscale("symlog", linthresh=1e-3)
        if bottom.any():
            ax.legend(fontsize="x-small")
        else:
            ax.set_title(f"no counts per {key}", fontsize="small")
    return plot._save(fig, Path(path), 110)


def energy_section(results: list[dict[str, Any]], figs: Path, paths: list, note: str = "") -> tuple[list, list]:
    """The energy rows of ``results`` (:func:`energy_rows`), their figure appended to ``paths``
    (``figs/energy.png``), and the RESULTS.md lines (:func:`energy_markdown` and ``note``; none
    when no result has counts)."""
    rows = energy_rows(results)
    if (path := energy_figure(rows, Path(figs) / "energy.png")) is not None:
        paths.append(path)
    return rows, ([*energy_markdown(rows), note] if rows and note else energy_markdown(rows))


def require_validation(cfg: dict[str, Any], where: str) -> None:
    """A tuning trial (:mod:`neuroemu.tune`) is scored on held-out training images: ``data.validation``
    must hold some out."""
    if not cfg["data"]["validation"]:
        raise ConfigError(f"{where} data.validation: tuning scores its trials on held-out training images, never "
                          "on the test set; hold some out, e.g. data.validation: 10000 (in the config, or only "
                          "for the trials in tune.set)")


def deploy_hardware(card: Any, periphery: str):
    """The hardware of a trained layer programmed once onto ``card``, as a function of its weights
    w: max|w| at the card's full scale; ``periphery`` "ideal" (exact reads) or "default" (the
    default periphery, its output noise and ADC range relative to that full-scale weight, as in
    aihwkit)."""
    import dataclasses

    def hardware(w: np.ndarray) -> Hardware:
        top = max(float(np.abs(w).max()), 1e-12)
        per = Periphery.ideal()
        if periphery == "default":
            per = dataclasses.replace(Periphery(), out_noise=Periphery.out_noise * top,
                                      adc_range=Periphery.adc_range * top)
        return Hardware(card=card, w_max=top, periphery=per)
    return hardware

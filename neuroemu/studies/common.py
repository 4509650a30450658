"""What the studies share: the top of every config schema, the loop over its runs, the Fashion-MNIST
data section and its fetch, a run on tiles of one card through one scheme, and the start of every
report (metrics.csv, the figures folder)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

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
    }


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


def start_report(out: str | Path, metrics: list[dict[str, Any]], *, make_figures: bool = True) -> tuple[Path, Path]:
    """Write ``metrics.csv`` into ``out`` and (``make_figures``) make ``out/figures``; returns (out,
    the figures folder)."""
    out = Path(out)
    write_csv(out / "metrics.csv", metrics)
    figs = out / "figures"
    if make_figures:
        figs.mkdir(exist_ok=True)
    return out, figs

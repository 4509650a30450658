"""The ``neuroemu`` command.

    neuroemu devices                              list the device cards
    neuroemu devices show NAME_OR_PATH            print a card (validated, canonical units)
    neuroemu devices response NAME_OR_PATH        conductance statistics after each pulse
    neuroemu devices plot NAME_OR_PATH --out DIR  device figures as PNG
    neuroemu run CONFIG.yaml --out DIR [--set key=value ...] [--overwrite]
    neuroemu sweep CONFIG.yaml --grid key=v1,v2 [--grid ...] [--seeds K] --out DIR
                   [--workers N | --scheduler tcp://host:8786] [--overwrite]
    neuroemu tune CONFIG.yaml --out DIR [--set key=value ...] [--workers N | --scheduler tcp://host:8786]
                  [--then-run] [--overwrite]     search each run's hyperparameters (the config's tune section)
    neuroemu data fashion-mnist                   find or fetch Fashion-MNIST, verify it, print its directory

Errors caused by input (cards, configs, data, arguments) print one line and exit with status 2.
Output cut short by a closed pipe (``neuroemu ... | head``) ends quietly with status 141.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import yaml

from . import alloc
from .errors import NeuroemuError

OVERWRITE_HELP = "replace finished runs in --out that were computed with a different configuration"


def _cmd_devices(args) -> int:
    from .hardware.cards import list_cards, load_card

    if args.action is None:
        for name in list_cards():
            card = load_card(name)
            print(f"{name:<22} {card.kind:<14} {card.description}")
        return 0
    if args.target is None:
        raise NeuroemuError(f"devices {args.action}: expected a card name or a path to a card file")
    card = load_card(args.target)
    if args.levels is not None or args.bits is not None:
        card = card.with_levels(args.levels, bits=args.bits)
    if args.action == "show":
        print(f"# {card.path}")
        print(yaml.safe_dump(card.to_dict(), sort_keys=False, allow_unicode=True), end="")
    elif args.action == "response":
        from .hardware.response import pulse_response

        if card.kind == "analog_chip":
            raise NeuroemuError(f"devices response: {card.name} is an analog chip with digital synapses (no pulse "
                                f"response); see `neuroemu devices plot {card.name} --out DIR`")
        res = pulse_response(card, pulses=args.pulses, devices=args.devices, seed=args.seed)
        if args.json:
            print(json.dumps({k: res[k] for k in ("unit", "pulses", "mean", "std")}))
        else:
            print(f"{card.name}: conductance after each pulse over {args.devices} devices (seed {args.seed})")
            print(f"{'pulse':>5} {'mean (' + res['unit'] + ')':>12} {'std':>10}")
            for n, m, s in zip(res["pulses"], res["mean"], res["std"]):
                print(f"{n:>5} {m:>12.4f} {s:>10.4f}")
    elif args.action == "plot":
        from .plot import device_figures

        if not args.out:
            raise NeuroemuError("devices plot: expected --out DIR")
        for path in device_figures(card, args.out, seed=args.seed):
            print(path)
    return 0


def _cmd_run(args) -> int:
    from .studies import run_experiment

    summary = run_experiment(args.config, args.out, args.set, workers=args.workers, quiet=args.quiet,
                             overwrite=args.overwrite)
    if summary["console"]:
        print("\n".join(summary["console"]))
    print(f"results: {args.out}/RESULTS.md")
    return 0


def _cmd_sweep(args) -> int:
    from .sweep import run_sweep

    summary = run_sweep(args.config, args.out, args.grid, seeds=args.seeds, overrides=args.set, workers=args.workers,
                        scheduler=args.scheduler, quiet=args.quiet, overwrite=args.overwrite)
    if summary["console"]:
        print("\n".join(summary["console"]))
    print(f"results: {args.out}/sweep.csv")
    return 0


def _cmd_tune(args) -> int:
    from .tune import run_tune

    summary = run_tune(args.config, args.out, args.set, workers=args.workers, scheduler=args.scheduler,
                       quiet=args.quiet, overwrite=args.overwrite, then_run=args.then_run)
    print("\n".join(summary["console"]))
    print(f"tuned config: {args.out}/tuned.yaml")
    print(f"results: {args.out}/RESULTS.md")
    if "run" in summary:
        if summary["run"]["console"]:
            print("\n".join(summary["run"]["console"]))
        print(f"results of the tuned config: {args.out}/run/RESULTS.md")
    return 0


def _cmd_data(args) -> int:
    from .data.fashion_mnist import fetch_fashion_mnist, find_fashion_mnist, verify_fashion_mnist

    path = find_fashion_mnist(args.dir) or fetch_fashion_mnist(args.dir)
    print(verify_fashion_mnist(path))
    return 0


class _Parser(argparse.ArgumentParser):
    """Argument errors are one line, like every other input error (no usage block)."""

    def error(self, message: str):
        self.exit(2, f"neuroemu: error: {message} (see '{self.prog} --help')\n")


def _int(lo: int, hi: int | None = None):
    """An argparse type: an integer in [lo, hi]."""
    def parse(text: str) -> int:
        try:
            value = int(text)
            ok = lo <= value and (hi is None or value <= hi)
        except ValueError:
            ok = False
        if not ok:
            expect = f"in [{lo}, {hi}]" if hi is not None else f">= {lo}"
            raise argparse.ArgumentTypeError(f"expected an integer {expect}, got {text!r}")
        return value
    return parse


def _out_dir(text: str) -> str:
    """An argparse type: a directory to write into (need not exist yet)."""
    if Path(text).exists() and not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text} exists and is not a directory; expected a results directory")
    return text


def build_parser() -> argparse.ArgumentParser:
    from ._version import __version__

    p = _Parser(prog="neuroemu", description="Neuromorphic hardware emulation: device cards, crossbars, "
                "update schemes and experiments on emulated chips.")
    p.add_argument("--version", action="version", version=f"neuroemu {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("devices", help="list, show, characterise and plot device cards")
    d.add_argument("action", nargs="?", choices=["show", "response", "plot"])
    d.add_argument("target", nargs="?", help="card name or path to a card YAML file")
    d.add_argument("--pulses", type=_int(1), default=20, help="response: number of pulses (default 20)")
    d.add_argument("--devices", type=_int(1), default=1000, help="response: number of fresh devices (default 1000)")
    d.add_argument("--seed", type=_int(0), default=0, help="seed of the devices' randomness (default 0)")
    lv = d.add_mutually_exclusive_group()
    lv.add_argument("--levels", type=_int(2, 2**24), help="limit the card to this many conductance levels")
    lv.add_argument("--bits", type=_int(1, 24), help="limit the card to 2^bits conductance levels")
    d.add_argument("--json", action="store_true", help="response: print JSON")
    d.add_argument("--out", type=_out_dir, help="plot: output directory")
    d.set_defaults(func=_cmd_devices)

    r = sub.add_parser("run", help="run an experiment config")
    r.add_argument("config", help="experiment YAML, e.g. examples/fmnist_crossbar/config.yaml")
    r.add_argument("--out", type=_out_dir, required=True, help="results directory")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value (dotted key, YAML value), e.g. --set train.epochs=1")
    r.add_argument("--workers", type=_int(1), default=None, help="worker processes (default: config 'workers')")
    r.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    r.add_argument("--quiet", action="store_true", help="no progress output")
    r.set_defaults(func=_cmd_run)

    s = sub.add_parser("sweep", help="run an experiment over a grid of config values and seeds")
    s.add_argument("config", help="experiment YAML, e.g. examples/fmnist_crossbar/config.yaml")
    s.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                   help="config values to sweep (dotted key, YAML values), e.g. --grid train.lr=0.1,0.01; "
                        "several --grid options give their Cartesian product")
    s.add_argument("--seeds", type=_int(1), default=None, metavar="K", help="run seeds 0..K-1 at every grid point")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value at every grid point, e.g. --set train.epochs=1")
    s.add_argument("--out", type=_out_dir, required=True, help="results directory (runs/, sweep.csv, sweep.json)")
    ex = s.add_mutually_exclusive_group()
    ex.add_argument("--workers", type=_int(1), default=None,
                    help="local worker processes (default: config 'workers'; 1 = serial)")
    ex.add_argument("--scheduler", default=None, metavar="ADDRESS",
                    help="run the jobs on a Dask cluster, e.g. tcp://host:8786 (needs neuroemu[dask])")
    s.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    s.add_argument("--quiet", action="store_true", help="no progress output")
    s.set_defaults(func=_cmd_sweep)

    t = sub.add_parser("tune", help="search each run's hyperparameters on validation seeds (the config's tune "
                       "section), with the same budget for every run")
    t.add_argument("config", help="experiment YAML with a tune section (budget, seeds, space)")
    t.add_argument("--out", type=_out_dir, required=True,
                   help="results directory (runs/, trials.csv, tune.json, tuned.yaml, RESULTS.md, figures/)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value before tuning, e.g. --set tune.budget=4")
    ex = t.add_mutually_exclusive_group()
    ex.add_argument("--workers", type=_int(1), default=None,
                    help="local worker processes (default: config 'workers'; 1 = serial)")
    ex.add_argument("--scheduler", default=None, metavar="ADDRESS",
                    help="run the trials on a Dask cluster, e.g. tcp://host:8786 (needs neuroemu[dask])")
    t.add_argument("--then-run", action="store_true",
                   help="then run tuned.yaml on the reported seeds into DIR/run (on local workers)")
    t.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    t.add_argument("--quiet", action="store_true", help="no progress output")
    t.set_defaults(func=_cmd_tune)

    g = sub.add_parser("data", help="find or fetch a dataset and print its directory")
    g.add_argument("dataset", choices=["fashion-mnist"])
    g.add_argument("--dir", default=None, help="directory to use (default: search, then fetch into the cache)")
    g.set_defaults(func=_cmd_data)
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help and --version exit as usual; an argument error returns 2
        if not exc.code:
            raise
        return exc.code
    alloc.keep_freed_memory()
    try:
        code = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's final flush
        return code
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly, as Unix tools do
        _discard_stdout()
        return 141  # 128 + SIGPIPE: the status a shell reports for a tool that SIGPIPE ended
    except NeuroemuError as exc:
        print(f"neuroemu: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # an output directory that cannot be created or written
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"neuroemu: error: {where}{exc.strerror or exc}; cannot write there", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        out = getattr(args, "out", None)
        kept = f"; finished runs are kept in {out}/runs and are not recomputed on restart" if out else ""
        print(f"neuroemu: interrupted{kept}", file=sys.stderr)
        return 130


def _discard_stdout() -> None:
    """Point stdout at /dev/null, so that flushing what is still buffered cannot fail again at exit."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a file (captured in tests)
        pass


if __name__ == "__main__":
    sys.exit(main())

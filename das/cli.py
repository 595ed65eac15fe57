"""The command lines' shared flags, their checks, and the one-line-and-exit-2 rule for bad input.

search.py, retrain.py, bohb.py and scripts/sweep.py take the same names for the same things
(space, data, ops, method, preset, seed, the training settings, device, threads, --out).
"""
from __future__ import annotations

import argparse
import sys

import das
from das.data import FORMATIONS
from das.genotype import SPACES
from das.hparams import load_hparams
from das.trial import DEFAULTS, OPSETS, TrialSpec
from das.utils import UserError, device_of, parse_seeds


class Parser(argparse.ArgumentParser):
    """argparse that reports bad flags as one line and exit code 2 (its own rule too)."""

    def error(self, message):
        print(f"error: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


def parser(doc: str) -> Parser:
    p = Parser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"das {das.__version__}")
    return p


def add_setting_args(p, *, space=True, seed_help="trial seed(s): 3, 0-74 or 0,3,7 (default 0)") -> None:
    """The settings of a trial specification (SPEC's defaults)."""
    if space:
        p.add_argument("--space", default="seq", choices=SPACES, help="search space (default seq)")
        p.add_argument("--ops", default="all", choices=OPSETS, help="op set (default all)")
    p.add_argument("--data", default="blur", choices=FORMATIONS, help="data formation (default blur)")
    p.add_argument("--seed", default="0", help=seed_help)
    p.add_argument("--preset", "--hparams", dest="preset", default=None,
                   help="hyperparameter preset (configs/) or a JSON file (default H1); --hparams is the old name")
    p.add_argument("--epochs", type=int, default=DEFAULTS["epochs"], help="epochs (default 50)")
    p.add_argument("--width", type=int, default=DEFAULTS["width"], help="channels C of the 2-layer CNN (default 16)")
    p.add_argument("--batches-per-epoch", type=int, default=DEFAULTS["batches_per_epoch"],
                   help="batches per epoch (default 19)")
    p.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"], help="batch size (default 128)")
    p.add_argument("--sigma-n", type=float, default=DEFAULTS["sigma_n"],
                   help="measurement noise sigma_n (default 0.1: the calibrated reading, README; 0.01 is the paper's text)")
    p.add_argument("--noise-sigma", type=float, default=DEFAULTS["noise_sigma"],
                   help="sigma of the harmful noise op (default 0.1, paper Table 5)")


def add_run_args(p, out_help: str = "results tree (default results/)") -> None:
    """Where and how to run, and what to do with an existing run."""
    p.add_argument("--out", default="results", help=out_help)
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--resume", action="store_true",
                   help="continue a killed run from its last epoch; a finished one is kept as it is")
    p.add_argument("--overwrite", action="store_true", help="delete this trial's earlier files and run it again")
    p.add_argument("--quiet", action="store_true", help="no log lines on stderr")
    p.add_argument("--max-batch", type=int, default=64,
                   help="most trials (networks) trained as one computation; lower it to save memory (default 64)")


def seeds_of(args) -> list[int]:
    return parse_seeds(args.seed)


def spec_from_args(args, *, method, seed, **kw) -> TrialSpec:
    """A trial specification from the shared flags (checked by TrialSpec itself)."""
    hp = load_hparams(args.preset or "H1")
    settings = dict(space=getattr(args, "space", "seq"), data=args.data, ops=getattr(args, "ops", "all"),
                    method=method, seed=seed, epochs=args.epochs, width=args.width,
                    batches_per_epoch=args.batches_per_epoch, batch_size=args.batch_size,
                    sigma_n=args.sigma_n, noise_sigma=args.noise_sigma)
    settings.update(kw)
    return TrialSpec.make(hp=hp, **settings)


def check_device(args) -> str:
    args.device = device_of(args.device)
    return args.device


def run_main(main, p) -> None:
    """Run a script's main(args); bad input becomes one line on stderr and exit code 2."""
    args = p.parse_args()
    try:
        main(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except OSError as exc:  # a read-only or full results tree, a path that is a file
        name = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        print(f"error: {name}{exc.strerror or exc}; check that --out is a writable folder", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted; rerun the same command with --resume to continue", file=sys.stderr)
        sys.exit(130)


METRIC_NAMES = {"one_shot_psnr": "one-shot PSNR", "architecture_psnr": "architecture PSNR"}


def report(r: dict, metric: str, good: str, next_command: str) -> None:
    """The last line of a stage: its folder, the result rounded (dB) and what to run next."""
    if r["status"] == good:
        print(f"{r['dir']}: {METRIC_NAMES[metric]} {r[metric]:.2f} dB; next: "
              f"{next_command}", file=sys.stderr)
    else:
        print(f"{r['dir']}: {r['status']}{': ' + r['error'] if r.get('error') else ''}", file=sys.stderr)

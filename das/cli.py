"""The command lines' shared flags, their checks, and the one-line-and-exit-2 rule for bad input.

search.py, retrain.py, bohb.py and scripts/sweep.py take the same names for the same things
(space, data, ops, method, preset, seed, the training settings, device, threads, --out).
"""
from __future__ import annotations

import argparse
import sys

import das
from das.hparams import load_hparams, override
from das.spec import SETTINGS, TrialSpec
from das.utils import UserError, device_of, parse_seeds
from das.vocab import FORMATIONS, OP_SETS, SPACES


DEVICE_HELP = ("cpu, cuda or cuda:N (default cpu: only the CPU's numbers are the same alone and in a "
               "batch; an H200 ran these small problems slower than the 16 CPU cores beside it, README)")


class Parser(argparse.ArgumentParser):
    """argparse that reports bad flags as one line and exit code 2 (its own rule too)."""

    def error(self, message):
        print(f"error: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


def parser(doc: str) -> Parser:
    p = Parser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"das {das.__version__}")
    return p


def add_setting_args(p, *, space=True, seed_help="trial seed(s): 3, 0-74 or 0,3,7 (default 0)", exclude=(),
                     defaults=True) -> None:
    """The settings of a trial specification: space, op set, data, seed, preset, and one flag per
    entry of das.spec.SETTINGS (its type, choices and help; `defaults=False` leaves them None, so a
    caller can tell a given flag from a default)."""
    if space:
        p.add_argument("--space", default="seq", choices=list(SPACES), help="search space (default seq)")
        p.add_argument("--ops", default="all", choices=list(OP_SETS), help="op set (default all)")
    p.add_argument("--data", default="blur", choices=list(FORMATIONS), help="data formation (default blur)")
    p.add_argument("--seed", default="0", help=seed_help)
    p.add_argument("--preset", "--hparams", dest="preset", default=None,
                   help="hyperparameter preset (configs/) or a JSON file (default H1); --hparams is the old name")
    p.add_argument("--set", dest="set", action="append", default=None, metavar="KEY=VALUE",
                   help="replace one hyperparameter of the preset, e.g. --set alpha_lr=0.01 (repeatable)")
    add_settings(p, exclude=exclude, defaults=defaults)


def add_settings(p, *, exclude=(), defaults=True, help_prefix="") -> None:
    """One flag per setting of das.spec.SETTINGS."""
    group = p.add_argument_group("trial settings (das/spec.py; a setting that differs from its default names "
                                 "the trial's folder)")
    for s in SETTINGS:
        if s.name in exclude:
            continue
        kind = s.type if s.type in (int, float) else str
        group.add_argument(s.flag, dest=s.name, type=kind, choices=s.choices, default=s.default if defaults else None,
                           help=f"{help_prefix}{s.help} (default {s.default})")


def add_run_args(p, out_help: str = "results tree (default results/)") -> None:
    """Where and how to run, and what to do with an existing run."""
    p.add_argument("--out", default="results", help=out_help)
    p.add_argument("--device", default=None, help=DEVICE_HELP)
    p.add_argument("--threads", type=int, default=None, help="torch threads per process (default: torch's choice)")
    p.add_argument("--resume", action="store_true",
                   help="continue a killed run from its last epoch; a finished one is kept as it is")
    p.add_argument("--overwrite", action="store_true", help="delete this trial's earlier files and run it again")
    p.add_argument("--quiet", action="store_true", help="no log lines on stderr")
    p.add_argument("--tensorboard", action="store_true",
                   help="also write each network's per-epoch metrics as TensorBoard scalars in <trial folder>/tensorboard "
                        "(a random search's candidates in tensorboard/candidate<k>; metrics.csv is always written)")
    p.add_argument("--max-batch", type=int, default=64,
                   help="most trials (networks) trained as one computation; lower it to save memory (default 64)")


def seeds_of(args) -> list[int]:
    return parse_seeds(args.seed)


def settings_of(args) -> dict:
    """The settings given on the command line (das.spec.SETTINGS; None: not given)."""
    return {s.name: getattr(args, s.name) for s in SETTINGS if getattr(args, s.name, None) is not None}


def spec_from_args(args, *, method, seed, **kw) -> TrialSpec:
    """A trial specification from the shared flags (checked by TrialSpec itself)."""
    hp = override(load_hparams(args.preset or "H1"), getattr(args, "set", None))
    fields = dict(space=getattr(args, "space", "seq"), data=args.data, ops=getattr(args, "ops", "all"),
                  method=method, seed=seed, **settings_of(args))
    fields.update(kw)
    return TrialSpec.make(hp=hp, **fields)


MAX_TENSORBOARD_BATCH = 256  # one open event file and writer thread per network of a batch


def check_tensorboard(args) -> None:
    """--tensorboard needs the tensorboard package (requirements.txt) and bounded batches; both are
    checked before any folder is written, not after the first epoch."""
    if not getattr(args, "tensorboard", False):
        return
    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError:
        raise UserError("--tensorboard needs the tensorboard package: pip install tensorboard==2.21.0 "
                        "(requirements.txt), or drop --tensorboard (metrics.csv is written either way)") from None
    if args.max_batch > MAX_TENSORBOARD_BATCH:
        raise UserError(f"--tensorboard keeps one event file open per network: --max-batch must be at most "
                        f"{MAX_TENSORBOARD_BATCH} with it, got {args.max_batch}")


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


def raise_failed(results) -> None:
    """Bad input found late (a refused checkpoint) fails its own trial; the others of the batch finish.
    The stage then ends with the first failure's message in one line (exit code 2)."""
    failed = [r for r in results if r.get("status") == "failed"]
    if failed:
        more = f" ({len(failed)} of {len(results)} trials failed; the others finished)" if len(results) > 1 else ""
        raise UserError(f"{failed[0].get('error')}{more}")

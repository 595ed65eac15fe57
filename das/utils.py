"""Seeding, atomic file writes, run folders, user-facing errors and progress bars."""
from __future__ import annotations

import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


class UserError(Exception):
    """Bad input from the user: the scripts print the message on one line and exit with code 2."""


class Diverged(Exception):
    """A training loss became NaN or infinite."""


def set_seed(seed: int) -> None:
    """Seed python, numpy and torch: the same seed gives the same numbers on the CPU."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def set_threads(threads: int | None) -> None:
    """Set torch's intra-op threads (None or 0 keeps torch's default)."""
    if threads:
        torch.set_num_threads(int(threads))


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _atomic(path: Path, write) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path, obj) -> None:
    """Write JSON atomically (temp file, then rename): a killed run never leaves half a file."""
    data = json.dumps(obj, indent=2, sort_keys=False, default=_json_default).encode()
    _atomic(Path(path), lambda f: f.write(data + b"\n"))


def save_torch(path, obj) -> None:
    """torch.save atomically."""
    _atomic(Path(path), lambda f: torch.save(obj, f))


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


def read_json(path, what: str = "file", fix: str = "") -> dict:
    """Load a JSON object, or raise UserError naming the file and the fix."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: {what} not found{'; ' + fix if fix else ''}")
    try:
        obj = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: {what} is not valid JSON ({exc}){'; ' + fix if fix else ''}") from None
    if not isinstance(obj, dict):
        raise UserError(f"{path}: {what} must hold a JSON object{'; ' + fix if fix else ''}")
    return obj


def load_checkpoint(path, what: str = "checkpoint", fix: str = "") -> dict:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: {what} not found{'; ' + fix if fix else ''}")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # a truncated or foreign file
        raise UserError(f"{path}: {what} cannot be read ({type(exc).__name__}){'; ' + fix if fix else ''}") from None


def versions() -> dict:
    from das import operators

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "extension": operators.HAS_EXTENSION,
        "host": platform.node(),
    }


def trial_dir(out, space, data, ops, method, preset, seed) -> Path:
    """results/<space>/<data>/<ops>/<method>/<preset>/seed<seed>: shell loops over seeds fill one tree."""
    return Path(out) / space / data / ops / method / preset / f"seed{seed}"


class Log:
    """Appends lines to log.txt in the run folder and echoes them to stderr unless quiet."""

    def __init__(self, path: Path | None, quiet: bool = False):
        self.path = path
        self.quiet = quiet

    def __call__(self, msg: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {msg}"
        if self.path is not None:
            with open(self.path, "a") as f:
                f.write(line + "\n")
        if not self.quiet:
            print(line, file=sys.stderr, flush=True)


def progress(iterable=None, total=None, desc=None):
    """tqdm on a terminal; a plain iterator when stderr is not a terminal (CI logs stay quiet)."""
    if sys.stderr.isatty():
        from tqdm import tqdm

        return tqdm(iterable, total=total, desc=desc, leave=False)
    return iterable if iterable is not None else range(total)


def run_main(main, parser) -> None:
    """Run a script's main(args); a UserError becomes one line on stderr and exit code 2."""
    args = parser.parse_args()
    try:
        main(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


def add_run_args(p, out_help: str = "results tree (default results/)") -> None:
    """The flags every stage script shares: where, on what, and what to do with an existing run."""
    p.add_argument("--batches-per-epoch", type=int, default=19, help="batches per epoch (default 19)")
    p.add_argument("--out", default="results", help=out_help)
    p.add_argument("--device", default=default_device(), help="cpu or cuda (default: cuda when available)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--resume", action="store_true",
                   help="continue a killed run from its last epoch; a finished one is kept as it is")
    p.add_argument("--overwrite", action="store_true", help="run this stage again even if it has results")
    p.add_argument("--quiet", action="store_true", help="no log lines on stderr")

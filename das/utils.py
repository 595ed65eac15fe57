"""Seeding, atomic file writes, run folders, user-facing errors and progress bars."""
from __future__ import annotations

import json
import math
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
    """Set torch's intra-op threads (None keeps torch's default)."""
    if threads is None:
        return
    if not 1 <= int(threads) <= 1024:
        raise UserError(f"--threads must be in 1..1024, got {threads}")
    torch.set_num_threads(int(threads))


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _atomic(path: Path, write) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; results are for the group to read
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def strict_json(obj):
    """obj with every non-finite float replaced by None: JSON has no NaN or Infinity, and a reader
    must never meet them (the trial's status says why a number is missing)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    return obj


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path, obj) -> None:
    """Write strict JSON atomically (temp file, then rename): a killed run never leaves half a file."""
    data = json.dumps(strict_json(obj), indent=2, sort_keys=False, default=_json_default, allow_nan=False).encode()
    _atomic(Path(path), lambda f: f.write(data + b"\n"))


def save_torch(path, obj) -> None:
    """torch.save atomically."""
    _atomic(Path(path), lambda f: torch.save(obj, f))


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return strict_json(o.item())
    if isinstance(o, torch.Tensor):
        return strict_json(o.tolist())
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


def read_json(path, what: str = "file", fix: str = "") -> dict:
    """Load a JSON object, or raise UserError naming the file and the fix."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: {what} not found{'; ' + fix if fix else ''}")
    try:
        obj = json.loads(path.read_text(), parse_constant=_reject_constant)
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as exc:
        raise UserError(f"{path}: {what} is not valid JSON ({exc}){'; ' + fix if fix else ''}") from None
    except RecursionError:
        raise UserError(f"{path}: {what} is nested too deeply to be a file of this project"
                        f"{'; ' + fix if fix else ''}") from None
    except OSError as exc:
        raise UserError(f"{path}: {what} cannot be read ({exc.strerror}){'; ' + fix if fix else ''}") from None
    if not isinstance(obj, dict):
        raise UserError(f"{path}: {what} must hold a JSON object{'; ' + fix if fix else ''}")
    return obj


def _reject_constant(name):
    raise ValueError(f"{name} is not a JSON number")


def load_checkpoint(path, what: str = "checkpoint", fix: str = "") -> dict:
    """torch.load with weights_only=True: a checkpoint holds tensors and plain data, and nothing read
    from disk may run code (a crafted pickle is refused, not executed)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: {what} not found{'; ' + fix if fix else ''}")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated, foreign or crafted file
        raise UserError(f"{path}: {what} cannot be read as a plain checkpoint ({type(exc).__name__})"
                        f"{'; ' + fix if fix else ''}") from None
    if not isinstance(ck, dict):
        raise UserError(f"{path}: {what} is not a checkpoint of this project{'; ' + fix if fix else ''}")
    return ck


def versions() -> dict:
    from das import operators

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "extension": operators.HAS_EXTENSION,
        "host": platform.node(),
    }


def parse_seeds(text) -> list[int]:
    """'3', '0-74', '0,3,7' or '0-4,10' -> a list of seeds (each in 0..2**63-1, no duplicates)."""
    seeds: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        try:
            if "-" in part[1:]:
                a, b = part.split("-", 1)
                lo, hi = int(a), int(b)
                if hi < lo:
                    raise UserError(f"seed range {part!r} runs backwards; write it as {hi}-{lo}")
                if hi - lo >= 1_000_000:
                    raise UserError(f"seed range {part!r} holds more than a million seeds")
                seeds += range(lo, hi + 1)
            else:
                seeds.append(int(part))
        except ValueError:
            raise UserError(f"--seed {text!r}: expected a seed, a range or a list, e.g. 3, 0-74 or 0,3,7") from None
    bad = [s for s in seeds if not 0 <= s <= 2**63 - 1]
    if bad:
        raise UserError(f"--seed {bad[0]} is out of range; seeds are 0..{2**63 - 1}")
    if len(set(seeds)) != len(seeds):
        raise UserError(f"--seed {text!r} names a seed twice")
    return seeds


def device_of(name: str | None) -> str:
    """The device a run uses: `cpu`, `cuda` or `cuda:N`, checked; None picks cuda when present."""
    if name is None:
        return default_device()
    if name == "cpu":
        return name
    if name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit()):
        if not torch.cuda.is_available():
            raise UserError(f"--device {name}: this torch has no usable CUDA device; use --device cpu")
        return name
    raise UserError(f"--device {name!r}: expected cpu, cuda or cuda:N")


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
            if sys.stderr.isatty():
                from tqdm import tqdm

                tqdm.write(line, file=sys.stderr)  # above the progress bar, which is redrawn below
            else:
                print(line, file=sys.stderr, flush=True)


def progress(iterable=None, total=None, desc=None):
    """tqdm on a terminal; a plain iterator when stderr is not a terminal (CI logs stay quiet)."""
    if sys.stderr.isatty():
        from tqdm import tqdm

        return tqdm(iterable, total=total, desc=desc, leave=False)
    return iterable if iterable is not None else range(total)

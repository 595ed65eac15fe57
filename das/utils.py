"""Seeding, atomic file writes, run folders, user-facing errors and progress bars."""
from __future__ import annotations

import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


class UserError(Exception):
    """Bad input from the user: the scripts print the message on one line and exit with code 2."""


# Seeds are 0..2**32-1: numpy takes no more, and the data streams derived from a seed
# (das.data.stream_seed, about 8000 * seed) must still fit torch's 64-bit generator seed.
MAX_SEED = 2**32 - 1
MAX_FILE_BYTES = 64 * 2**20  # no JSON file of this project comes near; a larger one is not ours


def is_number(v) -> bool:
    """A finite int or float (not a bool): what every numeric field of an input must be."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:  # an int too large for a float
        return False


def int_in(v, lo, hi) -> bool:
    """An int (not a bool) in lo..hi."""
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def short_repr(v, n: int = 60) -> str:
    """repr of a user's value for a one-line message: one line, at most n characters."""
    try:
        r = repr(v)
    except (RecursionError, ValueError):  # nested too deeply, or an int too long to print
        r = f"<{type(v).__name__}>"
    return r if len(r) <= n else r[: n - 3] + "..."


def _fix(fix: str) -> str:
    return f"; {fix}" if fix else ""


def set_threads(threads: int | None) -> None:
    """Set torch's intra-op threads (None keeps torch's default)."""
    if threads is None:
        return
    if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= 1024:
        raise UserError(f"--threads must be in 1..1024, got {threads}")
    torch.set_num_threads(int(threads))


def default_device() -> str:
    """cpu, also where a GPU is present: these 1-D problems are launch-bound on a GPU (an H200
    ran 821 sequential searches per hour against 2,382 on the same machine's 16 CPU cores), and
    CUDA's numbers are neither bit-equal to the CPU's nor batch invariant (README, Measured here)."""
    return "cpu"


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
    """The process's umask, read without changing it where Linux says it (setting it to 0 for a
    moment would hand a file created meanwhile by another thread, a BOHB worker's, mode 0666)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes_atomic(path, data: bytes) -> None:
    """Write a file atomically (temp file, then rename): a killed run or a full disk never leaves a
    half file in its place."""
    _atomic(Path(path), lambda f: f.write(data))


def write_text_atomic(path, text: str) -> None:
    write_bytes_atomic(path, text.encode())


def write_json(path, obj) -> None:
    """Write strict JSON atomically (temp file, then rename): a killed run never leaves half a file."""
    data = json.dumps(strict_json(obj), indent=2, sort_keys=False, default=_json_default, allow_nan=False).encode()
    _atomic(Path(path), lambda f: f.write(data + b"\n"))


def save_torch(path, obj) -> None:
    """torch.save atomically."""
    _atomic(Path(path), lambda f: torch.save(obj, f))


def _json_default(o):
    if isinstance(o, (np.floating, np.integer, np.bool_)):
        return strict_json(o.item())
    if isinstance(o, (torch.Tensor, np.ndarray)):
        return strict_json(o.tolist())
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


def _check_readable(path: Path, what: str, fix: str) -> None:
    """A regular file we may read, else one line saying what is there instead."""
    if path.is_symlink() and not path.exists():
        raise UserError(f"{path}: {what} is a broken link{_fix(fix)}")
    if not path.exists():
        raise UserError(f"{path}: {what} not found{_fix(fix)}")
    if not path.is_file():
        raise UserError(f"{path}: {what} is not a file (a folder or a device){_fix(fix)}")


def read_json(path, what: str = "file", fix: str = "") -> dict:
    """Load a strict JSON object (no NaN or Infinity, no number that overflows to one), or raise
    UserError naming the file and the fix."""
    path = Path(path)
    _check_readable(path, what, fix)
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise UserError(f"{path}: {what} is larger than {MAX_FILE_BYTES >> 20} MiB, too large to be a file of "
                            f"this project{_fix(fix)}")
        obj = json.loads(path.read_bytes().decode("utf-8"), parse_constant=_reject_constant,
                         parse_float=_finite_float)
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as exc:
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise UserError(f"{path}: {what} is not valid JSON ({reason}){_fix(fix)}") from None
    except RecursionError:
        raise UserError(f"{path}: {what} is nested too deeply to be a file of this project{_fix(fix)}") from None
    except OSError as exc:
        raise UserError(f"{path}: {what} cannot be read ({exc.strerror or type(exc).__name__}){_fix(fix)}") from None
    if not isinstance(obj, dict):
        raise UserError(f"{path}: {what} must hold a JSON object{_fix(fix)}")
    return obj


def _finite_float(text):
    v = float(text)
    if not math.isfinite(v):
        raise ValueError(f"{text} is too large for a JSON number")
    return v


def _reject_constant(name):
    raise ValueError(f"{name} is not a JSON number")


def load_checkpoint(path, what: str = "checkpoint", fix: str = "") -> dict:
    """torch.load with weights_only=True: a checkpoint holds tensors and plain data, and nothing read
    from disk may run code (a crafted pickle is refused, not executed)."""
    path = Path(path)
    _check_readable(path, what, fix)
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated, foreign or crafted file
        raise UserError(f"{path}: {what} cannot be read as a plain checkpoint ({type(exc).__name__}; "
                        f"code in a checkpoint is never run){_fix(fix)}") from None
    if not isinstance(ck, dict):
        raise UserError(f"{path}: {what} is not a checkpoint of this project{_fix(fix)}")
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
    """'3', '0-74', '0,3,7' or '0-4,10' -> a list of seeds (each in 0..MAX_SEED, no duplicates)."""
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
    bad = [s for s in seeds if not 0 <= s <= MAX_SEED]
    if bad:
        raise UserError(f"--seed {bad[0]} is out of range; seeds are 0..{MAX_SEED}")
    if len(set(seeds)) != len(seeds):
        raise UserError(f"--seed {text!r} names a seed twice")
    return seeds


def device_of(name: str | None) -> str:
    """The device a run uses: `cpu`, `cuda` or `cuda:N`, checked; None is the default (cpu)."""
    if name is None:
        return default_device()
    if name == "cpu":
        return name
    if name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit() and len(name) < 12):
        if not torch.cuda.is_available():
            raise UserError(f"--device {name}: this torch has no usable CUDA device; use --device cpu")
        if name != "cuda" and int(name[5:]) >= torch.cuda.device_count():
            raise UserError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                            f"numbered from 0")
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

"""One writer per trial folder, across processes and hosts: the lock file, its heartbeat, the stale rule.

A trial's lock is a file `.lock` in its folder, made by an exclusive create (O_CREAT|O_EXCL, which
NFS v3+ and every local filesystem do atomically; fcntl/flock locks are unreliable over NFS). It
holds its owner (host, pid, start time, a random token); a thread of the owning process touches
its mtime every `lock_heartbeat()` seconds while the trial runs. A lock is stale, and the next
taker may take it over, when its heartbeat is older than `lock_stale()` seconds, when its owner
ran on this host and that pid is gone (killed with -9), or at once when it is not a regular file
(a link, a folder: no process of this project makes one). An unreadable or half-written lock of
unknown owner goes stale by its age. Take-over renames the stale file aside (atomic, so of two
takers only one wins) and creates a fresh one.

The timings come from DAS_LOCK_HEARTBEAT (default 10 s) and DAS_LOCK_STALE (default 120 s), read
when a lock is taken; a value that is not a number, or a heartbeat not below the stale age, is
one line naming the variable.
"""
from __future__ import annotations

import atexit
import json
import math
import os
import socket
import stat
import threading
import time
import uuid
from pathlib import Path

from das.utils import UserError

LOCK = ".lock"
HEARTBEAT, STALE = 10.0, 120.0  # seconds, unless DAS_LOCK_HEARTBEAT / DAS_LOCK_STALE say otherwise


def _env_seconds(name: str, default: float) -> float:
    text = os.environ.get(name)
    if text is None:
        return default
    try:
        v = float(text)
    except ValueError:
        v = float("nan")
    if not (math.isfinite(v) and 0 < v <= 86400):
        raise UserError(f"{name}={text!r} is not a number of seconds in (0, 86400]; unset it or set, e.g., "
                        f"{name}={default:g}")
    return v


def lock_timing() -> tuple[float, float]:
    """(heartbeat, stale) in seconds, checked: a heartbeat must come well within the stale age."""
    heartbeat, stale = _env_seconds("DAS_LOCK_HEARTBEAT", HEARTBEAT), _env_seconds("DAS_LOCK_STALE", STALE)
    if heartbeat * 2 > stale:
        raise UserError(f"DAS_LOCK_HEARTBEAT ({heartbeat:g} s) must be at most half of DAS_LOCK_STALE ({stale:g} s), "
                        "or a live owner's lock would look stale; unset them or fix one")
    return heartbeat, stale


def lock_stale() -> float:
    return lock_timing()[1]


class TrialLocked(UserError):
    """Another live process holds the trial: a sweep skips it for now and retries it later."""

    def __init__(self, path, owner: dict):
        self.path, self.owner = Path(path), owner
        super().__init__(f"{path}: another process is running this trial ({_owner_text(owner)}); wait for it or "
                         "stop it first")


_locks: dict[str, tuple[Path, str]] = {}   # resolved folder -> (lock file, our token)
_locks_guard = threading.Lock()
_heartbeat: threading.Thread | None = None


def _owner_text(owner: dict) -> str:
    return f"host {owner.get('host')} pid {owner.get('pid')} since {owner.get('since')}"


def _read_owner(lock: Path) -> dict | None:
    """The lock's owner ({"_mtime": ...} alone for an unreadable or half-written one; mtime 0, stale
    at once, for a link or anything else that is not a regular file), None when there is no lock."""
    try:
        st = os.lstat(lock)
    except FileNotFoundError:
        return None
    except OSError:
        return {"_mtime": 0.0, "_corrupt": "cannot be examined"}
    if not stat.S_ISREG(st.st_mode):
        return {"_mtime": 0.0, "_ino": st.st_ino, "_corrupt": "not a regular file"}
    try:
        fd = os.open(lock, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as f:
            text = f.read(4096).decode("utf-8", "replace")
            opened = os.fstat(f.fileno())
    except FileNotFoundError:
        return None
    except OSError:
        return {"_mtime": st.st_mtime, "_ino": st.st_ino}
    try:
        owner = json.loads(text)
    except ValueError:
        owner = {}
    owner = owner if isinstance(owner, dict) else {}
    owner["_mtime"], owner["_ino"] = opened.st_mtime, opened.st_ino
    return owner


def _pid_alive(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, someone else's
    return True


def lock_is_stale(owner: dict, now: float | None = None) -> bool:
    """The stale rule: heartbeat older than lock_stale() s, or the owner was on this host and its pid is gone."""
    now = time.time() if now is None else now
    if now - owner.get("_mtime", 0) > lock_stale():
        return True
    if owner.get("host") == socket.gethostname() and "pid" in owner:
        return not _pid_alive(owner["pid"])
    return False


def _beat(every: float):
    while True:
        time.sleep(every)
        with _locks_guard:
            held = list(_locks.values())
        for lock, _ in held:
            try:
                os.utime(lock)
            except OSError:
                pass  # released meanwhile, or taken over after a long pause; the owner finds out at unlock


def _start_heartbeat(every: float):
    global _heartbeat
    if _heartbeat is None or not _heartbeat.is_alive():
        _heartbeat = threading.Thread(target=_beat, args=(every,), name="das-lock-heartbeat", daemon=True)
        _heartbeat.start()


def lock_trial(path: Path) -> None:
    """Hold the trial folder's lock until released (or this process ends), so two processes, on one
    machine or on two sharing the results tree, never write one trial at once. Raises TrialLocked
    when a live owner holds it."""
    path = Path(path)
    key = str(path.resolve())
    if key in _locks:
        return
    heartbeat, _ = lock_timing()
    lock = path / LOCK
    for _ in range(5):
        token = uuid.uuid4().hex
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            owner = _read_owner(lock)
            if owner is None:
                continue  # released between our two looks
            if not lock_is_stale(owner):
                raise TrialLocked(path, owner) from None
            _take_over(lock, owner)
            continue
        with os.fdopen(fd, "w") as f:
            json.dump({"host": socket.gethostname(), "pid": os.getpid(), "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                       "token": token}, f)
        with _locks_guard:
            _locks[key] = (lock, token)
        _start_heartbeat(heartbeat)
        return
    raise TrialLocked(path, _read_owner(lock) or {})


def _take_over(lock: Path, stale: dict) -> None:
    """Move a stale lock aside. Of two processes taking over at once only one renames the stale file;
    if what we renamed turns out to be a fresh lock (someone took over first), it is put back."""
    aside = lock.with_name(f"{LOCK}.stale-{uuid.uuid4().hex[:8]}")
    try:
        os.rename(lock, aside)
    except FileNotFoundError:
        return
    moved = _read_owner(aside) or {}
    # the very file judged stale (its inode: a lock of no token, half-written or corrupt, tells no
    # other lock apart by its token), else a fresh lock someone made meanwhile, which goes back
    if moved.get("token") != stale.get("token") or moved.get("_ino") != stale.get("_ino"):
        try:
            os.link(aside, lock)  # back, unless a third process made one meanwhile
        except OSError:
            pass
    if aside.is_dir() and not aside.is_symlink():
        return  # a folder named .lock is someone's: moved aside, never deleted
    aside.unlink(missing_ok=True)


def _release(key: str) -> None:
    with _locks_guard:
        lock, token = _locks.pop(key, (None, None))
    if lock is None:
        return
    owner = _read_owner(lock) or {}
    if owner.get("token") == token:  # never remove a lock another process took over
        lock.unlink(missing_ok=True)


def unlock_trial(path: Path) -> None:
    _release(str(Path(path).resolve()))


def unlock_under(root) -> None:
    """Release the trials this process holds under root (a BOHB worker thread's own evaluation, or a
    sweep task's retrains)."""
    prefix = str(Path(root).resolve()) + os.sep
    for key in [k for k in list(_locks) if k.startswith(prefix)]:
        _release(key)


def unlock_all() -> None:
    for key in list(_locks):
        _release(key)


atexit.register(unlock_all)  # a normal exit, or an exception that ends the script, leaves no lock behind
os.register_at_fork(after_in_child=_locks.clear)  # a forked child holds none of its parent's locks

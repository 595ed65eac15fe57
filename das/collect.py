"""A results tree or a trials.csv read back as validated flat records, with the reason for every
file or row left out; and trials.csv written from records.

    records, skipped = load_trials("results")         # every trial under the tree, checked
    write_trials_csv(records, "analysis/trials.csv")  # one row per record (+ trials.manifest.json)
    records = read_trials_csv("analysis/trials.csv")  # the same records again, validated

A record is one trained architecture (a DAS record carries its search's one-shot PSNR and
alphas): the full specification (every setting of das.spec.SETTINGS), status, numbers, genotype,
alphas, history, candidates, provenance. A file that cannot be believed (unreadable, too large,
invalid JSON, another schema, values of the wrong type or outside what a trial can produce, a
status its numbers contradict) is skipped with its reason, counted per cell of the paper's
tables, and never pooled.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import zlib
import math
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from das.folder import RESULT, Status, psnr_problem, result_problem
from das.spec import SETTINGS, TrialSpec, setting
from das.utils import MAX_FILE_BYTES, UserError, is_number, read_json, short_repr, write_bytes_atomic
from das.vocab import FORMATIONS, METHODS, OP_SETS, SPACES, is_search

MANIFEST = "trials.manifest.json"


class Skip(tuple):
    """(kind, text) of a file or row left out; `.path` is the file (or None)."""

    def __new__(cls, kind: str, text: str, path=None):
        self = tuple.__new__(cls, (kind, text))
        self.path = None if path is None else str(path)
        return self


# ---------------------------------------------------------------------------- reading a tree
def _result_files(root: Path, skipped: list):
    """result.json paths under root, following links without looping; a folder reached a second
    time through a link is reported once (as "linked") and not read again. A result.json that is a
    folder or a broken link is yielded too, so that it is reported as unreadable."""
    seen_dirs, top = set(), os.path.realpath(root)

    def unreadable(exc: OSError):  # a folder os.walk cannot list: its trials are missing, say so
        skipped.append(Skip("unreadable", f"{exc.filename} (a folder that cannot be listed: "
                                          f"{exc.strerror or type(exc).__name__})", exc.filename))

    for dirpath, dirnames, filenames in os.walk(root, followlinks=True, onerror=unreadable):
        real = os.path.realpath(dirpath)
        if real in seen_dirs or real != top and (top + os.sep).startswith(real.rstrip(os.sep) + os.sep):
            # read before, or a link to a folder above the tree (.., /): a loop through everything
            skipped.append(Skip("linked", dirpath, dirpath))
            dirnames[:] = []
            continue
        seen_dirs.add(real)
        if RESULT in filenames or RESULT in dirnames:
            yield Path(dirpath) / RESULT
        # real folders before links, so the linked copy is the one reported
        dirnames[:] = sorted((d for d in dirnames if d not in ("analysis", "bohb", RESULT) and not d.startswith(".")),
                             key=lambda d: (os.path.islink(os.path.join(dirpath, d)), d))


SKIP_REASONS = {
    "unreadable": "result files that cannot be read (a folder, a broken link or no permission; check the "
                  "path and its permissions)",
    "too large": f"result files larger than {MAX_FILE_BYTES >> 20} MiB (no result of this project comes near; "
                 "look at the file, then rerun the trial with --overwrite)",
    "corrupt": "invalid JSON (truncated, NaN or Infinity tokens, or nested too deeply; look at the file, then "
               "rerun the trial with --overwrite)",
    "foreign": "not a result file of this project's schema 2 (an older run, or another program's)",
    "invalid": "result files with a value of the wrong type or range (the reason follows each path)",
    "running": "unfinished runs (a sweep still running, or killed: rerun with --resume)",
    "failed": "runs stopped by an exception (the error follows each path; rerun with --resume)",
    "searched": "searched but not retrained yet (retrain.py --genotype)",
    "duplicate": "the same specification in two folders (neither is used; remove one)",
    "linked": "folders reached a second time through a link (read once)",
    "bohb": "BOHB evaluations (not trials of a study)",
    "diverged": "diverged trials (a loss or PSNR became NaN or infinite; kept out of the statistics)",
    "extra retrain": "retrains under extra seeds (the retraining spread; not pooled into the tables)",
}


def _reason(exc_or_text, path) -> str:
    text = str(exc_or_text)
    for prefix in (f"{path}: ", "result file: "):
        text = text[len(prefix):] if text.startswith(prefix) else text
    text = " ".join(text.split("; ")[0].split())  # one line, whatever the file held
    return text if len(text) <= 120 else text[:117] + "..."


def read_record(path: Path) -> tuple[str | None, str, dict | None, "TrialSpec | None"]:
    """Read one result.json for analysis: (skip kind or None, reason, result, specification)."""
    path = Path(path)
    if path.is_symlink() and not path.exists():
        return "unreadable", "a broken link", None, None
    if not path.is_file():
        return "unreadable", "not a file", None, None
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        return "unreadable", exc.strerror or type(exc).__name__, None, None
    try:
        size = path.stat().st_size
    except OSError as exc:
        return "unreadable", exc.strerror or type(exc).__name__, None, None
    if size > MAX_FILE_BYTES:
        return "too large", f"{size / 2**20:.0f} MiB", None, None
    try:
        r = read_json(path, "result file")
    except UserError as exc:
        return "corrupt", _reason(exc, path), None, None
    if not isinstance(r.get("spec"), dict):
        return "foreign", "no trial specification", r, None
    try:
        spec = TrialSpec.from_dict(r["spec"], str(path))
    except (UserError, RecursionError) as exc:
        return "invalid", _reason(exc, path), r, None
    problem = result_problem(r)
    if not problem:  # the fields are well-formed; do they belong to this specification?
        genotypes = [r.get("genotype")] + [c.get("genotype") for c in r.get("candidates") or []]
        have = (spec.space, spec.ops, spec.data, spec.width)
        if any(g is not None and (g["space"], g["ops"], g.get("data", "blur"), g.get("width", 16)) != have
               for g in genotypes):
            problem = f"a genotype of another space, op set, data or width than its specification {have}"
    if problem:
        return "invalid", _reason(problem, path), r, spec
    return None, "", r, spec


def load_trials(root) -> tuple[list[dict], list[tuple[str, str]]]:
    """Every trial record under root as a flat dict (one per training of an architecture; a DAS
    record carries its search's one-shot PSNR and alphas), and (reason, path) for what was skipped.
    Every file is checked (read_record) before anything of it is used, so a hostile tree is
    reported, never a traceback.

    Rule for duplicates: two folders holding the same full specification are both left out and
    reported, since neither can be preferred without a guess.
    """
    records, skipped, by_key, seen_real = [], [], {}, set()
    for path in _result_files(Path(root), skipped):
        real = os.path.realpath(path)
        if real in seen_real:
            skipped.append(Skip("linked", str(path), path))
            continue
        seen_real.add(real)
        kind, why, r, spec = read_record(path)
        if kind is not None:
            text = f"{path} ({why})" if kind in ("invalid", "unreadable", "too large") else str(path)
            skipped.append(Skip(kind, text, path))
            continue
        if r.get("role") == "bohb-evaluation":
            skipped.append(Skip("bohb", str(path), path))
            continue
        status = r["status"]
        search = None
        if spec.stage == "train" and is_search(spec.method):
            search_path = path.parent.parent / RESULT
            if search_path.exists() or search_path.is_symlink():  # else: no one-shot PSNR to pair with
                kind, why, search, search_spec = read_record(search_path)
                if kind is None and search_spec != spec.search_spec():
                    kind, why = "invalid", "holds another specification"
                if kind is not None:
                    skipped.append(Skip("invalid", f"{path} (its search's result.json: {why})", path))
                    continue
        if spec.stage == "search":
            if status == Status.SEARCHED and not any((d / RESULT).exists() for d in path.parent.glob("retrain-seed*")):
                skipped.append(Skip("searched", str(path.parent), path))
            if status == Status.RUNNING:
                skipped.append(Skip("running", str(path), path))
            if status in (Status.SEARCHED, Status.RUNNING):
                continue  # counted through its retrains
            # a diverged search is a trial of its group that has no architecture PSNR
        elif status == Status.RUNNING:
            skipped.append(Skip("running", str(path), path))
            continue
        if status == Status.FAILED:
            skipped.append(Skip("failed", f"{path} ({short_repr(r.get('error'), 100)})", path))
            continue
        key = json.dumps(spec.to_dict(), sort_keys=True)
        if key in by_key:
            skipped.append(Skip("duplicate", str(path), path))
            first = by_key[key]
            if first is not None:
                skipped.append(Skip("duplicate", first["dir"], Path(first["dir"]) / RESULT))
                records.remove(first)
                by_key[key] = None
            continue
        rec = _record(spec, r, path.parent, search)
        by_key[key] = rec
        records.append(rec)
    return records, skipped


def _record(spec: TrialSpec, r: dict, folder: Path, search: dict | None) -> dict:
    def num(v):
        return float(v) if is_number(v) else None

    if spec.stage == "search":
        search = r
    search = search or {}
    hist = search.get("history") if isinstance(search.get("history"), dict) else {}
    searched = is_search(spec.method)
    d = {**spec.to_dict(), **spec.settings()}
    averagings = {**((search.get("psnr_averagings") or {}) if search is not r else {}),
                  **(r.get("psnr_averagings") or {})}
    return {**{k: d[k] for k in d if k not in ("genotype",)},
            "group": spec.group(),
            "label": spec.label(),
            "primary": spec.retrain_seed in (None, spec.seed),
            "status": r.get("status"),
            "one_shot_psnr": num(search.get("one_shot_psnr")) if search else None,
            "architecture_psnr": num(r.get("architecture_psnr")) if spec.stage == "train" else None,
            "genotype": r.get("genotype") if isinstance(r.get("genotype"), dict) else spec.genotype,
            "alphas": search.get("alphas"),
            "alphas_init": hist.get("alphas_init"),
            # a DAS record's history is its search's (losses, alphas per epoch); its retrain's beside it
            "history": (hist or None) if searched else
            (r.get("history") if isinstance(r.get("history"), dict) else None),
            "retrain_history": r.get("history") if searched and spec.stage == "train"
            and isinstance(r.get("history"), dict) else None,
            "wall_seconds": {**(search.get("wall_seconds") or {}), **(r.get("wall_seconds") or {})}
            if isinstance(r.get("wall_seconds"), dict) else {},
            "candidates": r.get("candidates") or [],
            "one_shot_ranking": search.get("one_shot_ranking"),
            "psnr_averagings": averagings or None,
            "error": r.get("error"),
            "provenance": r.get("provenance"),
            "git_commit": (r.get("provenance") or {}).get("git_commit"),
            "package": (r.get("provenance") or {}).get("package"),
            # when the trial ran: its search's start (a DAS trial) to its own finish (stats.wall_clock)
            "started": ((search.get("provenance") or {}) if search else {}).get("started")
            or (r.get("provenance") or {}).get("started"),
            "finished": (r.get("provenance") or {}).get("finished"),
            "dir": str(folder)}


def summarize_skipped(skipped) -> list[str]:
    """One line per kind of file or row left out, with up to three of them."""
    by: dict[str, list[str]] = {}
    for reason, path in skipped:
        by.setdefault(reason, []).append(str(path))
    lines = []
    for reason, paths in by.items():
        shown = ", ".join(paths[:3]) + (f", ... (+{len(paths) - 3})" if len(paths) > 3 else "")
        lines.append(f"skipped {len(paths)} {SKIP_REASONS.get(reason, reason)}: {shown}")
    return lines


NOT_READ = ("unreadable", "too large", "corrupt", "foreign", "invalid", "running", "failed", "searched", "duplicate")


def unread_by_cell(skipped, roots) -> dict[tuple, int]:
    """How many trials of each cell (space, data, ops, method, preset) could not be read: a skipped
    file is placed by its folder under the results tree (space/data/ops/method/preset/...);
    one that cannot be placed counts under ("?",) * 5."""
    counts: Counter = Counter()
    tops = [os.path.realpath(r) for r in roots]
    for s in skipped:
        if s[0] not in NOT_READ:
            continue
        cell = ("?",) * 5
        path = getattr(s, "path", None)
        if path:
            real = os.path.realpath(path)
            for top in tops:
                if real.startswith(top + os.sep):
                    parts = Path(os.path.relpath(real, top)).parts
                    if (len(parts) >= 6 and parts[0] in SPACES and parts[1] in FORMATIONS and parts[2] in OP_SETS
                            and parts[3] in METHODS):
                        cell = tuple(parts[:5])
                    break
        counts[cell] += 1
    return dict(counts)



# ---------------------------------------------------------------------------- a record's specification
def spec_of_record(r: dict) -> TrialSpec:
    """The full specification of a record, rebuilt from its group (every field but the seeds and a
    search's genotype), its seeds and its genotype; raises UserError when they do not make one."""
    try:
        d = json.loads(r["group"])
    except (KeyError, TypeError, ValueError):
        raise UserError(f"group {short_repr(r.get('group'))} is not a trial specification") from None
    if not isinstance(d, dict):
        raise UserError("group is not a trial specification")
    d["seed"] = r.get("seed")
    retrain_seed = r.get("retrain_seed")
    if is_search(d.get("method")):
        if retrain_seed is None:
            d["stage"] = "search"
        else:
            g = r.get("genotype")
            d.update(stage="train", retrain_seed=retrain_seed,
                     genotype={k: v for k, v in g.items() if k != "alphas"} if isinstance(g, dict) else g)
    else:
        d["stage"] = "train"
        if retrain_seed is not None:
            d["retrain_seed"] = retrain_seed
    return TrialSpec.from_dict(d, "record")


# ---------------------------------------------------------------------------- trials.csv
ID_COLUMNS = ["group", "space", "data", "ops", "method", "preset", "label", "seed", "retrain_seed", "primary"]
METRIC_COLUMNS = ["one_shot_psnr", "architecture_psnr", "wall_seconds_total"]
JSON_COLUMNS = ["hparams", "genotype", "alphas", "alphas_init", "history", "wall_seconds", "candidates",
                "one_shot_ranking", "psnr_averagings"]
PROVENANCE_COLUMNS = ["git_commit", "package", "started", "finished"]


def spec_columns() -> list[str]:
    """The specification's columns: identity, every setting of das.spec.SETTINGS, status."""
    return ID_COLUMNS + [s.column for s in SETTINGS] + ["status"]


def columns() -> list[str]:
    return spec_columns() + METRIC_COLUMNS + JSON_COLUMNS + PROVENANCE_COLUMNS + ["dir"]


def _json(v):
    return None if v is None else json.dumps(v, separators=(",", ":"))


def trials_frame(records) -> pd.DataFrame:
    """One row per record: full specification, every metric (unrounded), nested fields as JSON strings."""
    rows = []
    spec_cols = spec_columns()
    for r in records:
        row = {k: r.get(k) for k in spec_cols}
        for s in SETTINGS:
            if row[s.column] is None:
                row[s.column] = s.default
        row["one_shot_psnr"] = r.get("one_shot_psnr")
        row["architecture_psnr"] = r.get("architecture_psnr")
        ws = r.get("wall_seconds") or {}
        row["wall_seconds_total"] = float(sum(ws.values())) if ws else None
        for k in JSON_COLUMNS:
            row[k] = _json(r.get(k))
        for k in PROVENANCE_COLUMNS:
            row[k] = r.get(k)
        row["dir"] = str(r["dir"]) if r.get("dir") is not None else None
        rows.append(row)
    frame = pd.DataFrame(rows, columns=columns())
    floats = ["one_shot_psnr", "architecture_psnr", "wall_seconds_total"] + [s.column for s in SETTINGS
                                                                              if s.type is float]
    for k in floats:
        frame[k] = pd.to_numeric(frame[k], errors="coerce").astype(float)
    return frame


def compact(r: dict) -> dict:
    """A record without its per-epoch histories (its own and its candidates'): what a study's
    statistics, claims and readings need, a fraction of the size."""
    out = {**r, "history": None, "retrain_history": None}
    if isinstance(r.get("candidates"), list):
        out["candidates"] = [{k: v for k, v in c.items() if k != "history"} if isinstance(c, dict) else c
                             for c in r["candidates"]]
    return out


def write_trials_csv(records, path, compact_records: bool = False) -> Path:
    """trials.csv written atomically, with trials.manifest.json beside it (rows and SHA-256, so a
    file cut short or edited is recognised when read back); `compact_records` leaves the per-epoch
    histories out (compact()). A path ending in .gz (trials.csv.gz) is written gzip-compressed, the
    form in which a large table is committed (reproduction/)."""
    path = Path(path)
    if compact_records:
        records = [compact(r) for r in records]
    data = trials_frame(records).to_csv(index=False).encode()
    digest = hashlib.sha256(data).hexdigest()  # of the table itself, so any gzip of it matches
    if path.name.endswith(".gz"):  # gzip with no time stamp: the same table is the same bytes
        data = gzip.compress(data, compresslevel=9, mtime=0)
    write_bytes_atomic(path, data)
    manifest = {"file": path.name, "rows": len(records), "sha256": digest}
    write_bytes_atomic(path.with_name(MANIFEST), (json.dumps(manifest, indent=2) + "\n").encode())
    return path


def _plain(v):
    """A pandas cell as a plain Python value (NaN -> None, numpy ints -> int)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


def records_from_frame(frame: pd.DataFrame) -> list[dict]:
    """The records of a trials_frame again (JSON columns parsed, NaN -> None; a setting the file
    predates holds its default)."""
    ints = ["seed", "retrain_seed"] + [s.column for s in SETTINGS if s.type is int]
    records = []
    for row in frame.to_dict("records"):
        r = {k: _plain(v) for k, v in row.items() if k not in JSON_COLUMNS}
        for s in SETTINGS:
            if r.get(s.column) is None:
                r[s.column] = s.default
        for k in ints:
            if isinstance(r.get(k), float) and r[k].is_integer():
                r[k] = int(r[k])
        if isinstance(r.get("primary"), str):
            r["primary"] = {"True": True, "False": False}.get(r["primary"], r["primary"])
        # a CSV cannot tell a NaN PSNR from a missing one: both come back as None (both are non-finite)
        for k in JSON_COLUMNS:
            v = row.get(k)
            r[k] = json.loads(v) if isinstance(v, str) else None
        r.pop("wall_seconds_total", None)
        records.append(r)
    return records


def read_trials_csv(path) -> list[dict]:
    """Records from a trials.csv written by write_trials_csv (exact floats: round-trip parsing),
    validated like a results tree: one line naming the row and the fix for a file that was cut
    short or edited (its manifest disagrees), a cell that is not a number, a PSNR no trial can
    produce, a status its numbers contradict, a row whose columns disagree with its specification,
    or a trial listed twice."""
    path = Path(path)
    fix = "regenerate it with analyze.py from the results tree, or fix the row"
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"{path}: cannot be read ({exc.strerror or type(exc).__name__}); check the path") from None
    if data[:2] == b"\x1f\x8b":  # trials.csv.gz
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise UserError(f"{path}: a gzip file that cannot be decompressed ({exc}): cut short or damaged; "
                            f"{fix}") from None
    manifest = path.with_name(MANIFEST)
    if manifest.is_file():
        m = read_json(manifest, "trials manifest", fix)
        if m.get("file") == path.name and (m.get("sha256") != hashlib.sha256(data).hexdigest()):
            raise UserError(f"{path}: does not match {manifest.name} (expected {m.get('rows')} rows and the SHA-256 "
                            f"of the table): the file was cut short or edited; {fix}")
    from io import BytesIO

    try:
        frame = pd.read_csv(BytesIO(data), float_precision="round_trip", dtype=str, keep_default_na=False)
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not a CSV file ({str(exc).splitlines()[0][:120]}); {fix}") from None
    missing = [c for c in ("group", "space", "data", "ops", "method", "seed", "architecture_psnr", "status")
               if c not in frame]
    if missing:
        raise UserError(f"{path}: not a trials.csv of analyze.py (missing columns {missing})")
    frame = frame.replace("", None)
    numeric = ["seed", "retrain_seed", "one_shot_psnr", "architecture_psnr", "wall_seconds_total"] + [
        s.column for s in SETTINGS if s.type in (int, float)]
    for k in [c for c in numeric if c in frame]:
        values = []
        for n, v in enumerate(frame[k]):
            try:  # Python's float(): correctly rounded, so every number comes back to the last bit
                values.append(None if v is None else float(v))
            except ValueError:
                raise UserError(f"{path}: line {n + 2}: {k} is {short_repr(v)}, not a number; {fix}") from None
        frame[k] = pd.Series(values, index=frame.index, dtype=object)
    records = records_from_frame(frame)
    seen: dict[tuple, int] = {}
    for n, r in enumerate(records):
        line = n + 2
        problem = _row_problem(r)
        if problem:
            raise UserError(f"{path}: line {line}: {problem}; {fix}")
        r = records[n] = canonical(r)
        key = (r["group"], r["seed"], r.get("retrain_seed"))
        if key in seen:
            raise UserError(f"{path}: lines {seen[key]} and {line} are the same trial "
                            f"({r['space']}/{r['data']}/{r['ops']}/{r['method']}/{r.get('label')} seed {r['seed']}); "
                            f"remove one, or {fix}")
        seen[key] = line
    return records


def _row_problem(r: dict) -> str | None:
    """What makes a trials.csv row unbelievable, or None."""
    if r.get("status") not in (Status.COMPLETE, Status.DIVERGED):
        return f"status {short_repr(r.get('status'))} is not complete or diverged (the statuses a table holds)"
    for k in ("one_shot_psnr", "architecture_psnr"):
        problem = psnr_problem(r.get(k), k)
        if problem:
            return problem
    if r["status"] == Status.DIVERGED and r.get("architecture_psnr") is not None:
        return "a diverged trial with an architecture PSNR"
    try:
        spec = spec_of_record(r)
    except UserError as exc:
        return f"its specification does not hold ({str(exc).split('; ')[0]})"
    if r["status"] == Status.COMPLETE and spec.stage == "train" and r.get("architecture_psnr") is None:
        return "a complete trial without an architecture PSNR"
    # the columns must say what the row's own group says (the writer wrote both); a group of an
    # earlier version, whose settings this version holds at their default where they cannot change
    # the trial, is read as its canonical form (canonical())
    written = json.loads(r["group"])
    have = {k: r.get(k) for k in ("space", "data", "ops", "method", "preset")}
    have.update({s.name: r.get(s.column) for s in SETTINGS})
    want = {k: written.get(k, setting(k).default if k in {x.name for x in SETTINGS} else None) for k in have}
    differ = [k for k in have if have[k] != want[k]]
    if differ:
        return f"its columns {differ} disagree with its specification"
    if spec.group() == r["group"] and r.get("label") is not None and r["label"] != spec.label():
        return "its label disagrees with its specification"
    if r.get("primary") is not None and r["primary"] != (r.get("retrain_seed") in (None, r["seed"])):
        return "its primary flag disagrees with its seeds"
    return None


def canonical(r: dict) -> dict:
    """A record with the group, label and settings of its specification's canonical form."""
    spec = spec_of_record(r)
    if spec.group() == r["group"]:
        return r
    return {**r, **spec.settings(), "group": spec.group(), "label": spec.label()}


# ---------------------------------------------------------------------------- another reading
def once(records, where: str) -> list[dict]:
    """Each trial once: records of one trial (group, seed, retrain seed) read more than once (from two
    sources, or as run and already reread) count once when they hold the same numbers; otherwise
    one error naming the trial and `where` the copies came from."""
    seen, unique = {}, []
    for r in records:
        key = (r["group"], r["seed"], r.get("retrain_seed"))
        numbers = (r.get("architecture_psnr"), r.get("one_shot_psnr"), r.get("status"))
        if key in seen:
            if seen[key] != numbers:
                raise UserError(f"the trial {r.get('space')}/{r.get('data')}/{r.get('ops')}/{r.get('method')}/"
                                f"{r.get('label')} seed {r['seed']} is in more than one of {where} with other "
                                "numbers; pass each part once")
            continue
        seen[key] = numbers
        unique.append(r)
    return unique


def as_run_group(r: dict) -> str:
    """The group of the trial a record holds, as run: a record reread under another value of an
    evaluation-only setting (reread()) names that value in its group; the trial it rereads does not."""
    as_run = {s.name: s.default for s in SETTINGS if s.evaluation_only}
    if all(r.get(k, v) == v for k, v in as_run.items()):
        return r["group"]
    return spec_of_record(r).replace(**as_run).group()


def reread(records, **values) -> list[dict]:
    """The records as trials of other values of evaluation-only settings (das.spec: `psnr`): the
    numbers each record holds under that reading (psnr_averagings) replace its headline numbers
    (random search: its best candidate under that reading), and group and label say which reading.
    A record that does not hold them (a run that predates them) is left out."""
    for name in values:
        if not setting(name).evaluation_only:
            raise ValueError(f"{name} changes training: run those trials, do not reread them")
    out = []
    for r in records:
        averagings = r.get("psnr_averagings") or {}
        value = values.get("psnr", r.get("psnr"))
        one_shot = (averagings.get("one_shot") or {}).get(value)
        arch = (averagings.get("architecture") or {}).get(value)
        listed = r.get("candidates") if isinstance(r.get("candidates"), list) else []
        cands = [c for c in listed if isinstance(c, dict) and c.get("psnr_averagings")]
        if len(cands) > 1:
            scored = [c["psnr_averagings"][value] for c in cands if c.get("status") == Status.COMPLETE]
            arch = max(scored) if scored else None
        if r.get("status") == Status.COMPLETE and arch is None:
            continue
        spec = spec_of_record(r).replace(**values)
        out.append({**r, **spec.settings(), "group": spec.group(), "label": spec.label(),
                    "one_shot_psnr": one_shot if one_shot is None or is_number(one_shot) else None,
                    "architecture_psnr": arch if r.get("status") == Status.COMPLETE else None})
    return out

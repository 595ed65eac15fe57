"""The paper's studies as data: which trials make each table and figure, and the paper's numbers.

A study is a list of cells (space, data, op set, method, preset) and a seed count; each cell
over the seeds is a list of trial specifications (`Study.specs`). The sweep runner runs them,
analyze.py lays out its tables from the same cells, and puts the paper's values beside ours.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from das.hparams import load_hparams
from das.spec import TrialSpec
from das.utils import UserError


@dataclass(frozen=True)
class Cell:
    """One cell of a study's table: space, data, op set, method, preset, and the settings it runs
    under (pairs (name, value) of das.spec.SETTINGS; empty: the defaults)."""

    space: str
    data: str
    ops: str
    method: str
    preset: str
    settings: tuple = ()


@dataclass(frozen=True)
class Study:
    name: str
    title: str
    cells: tuple
    seeds: int            # the paper's trial count; seeds run from `first_seed`
    first_seed: int = 0
    # evaluation-only settings (das.spec: psnr) its analysis reads the trials under, as (name, value)
    # pairs: a finished trial counts as done only if it holds those numbers (collect.reread)
    reread: tuple = ()

    def seed_list(self) -> range:
        return range(self.first_seed, self.first_seed + self.seeds)

    def with_cells(self, cells) -> "Study":
        return dataclasses.replace(self, cells=tuple(cells))

    def keep(self, what: str, allowed: str | None, hint: str = "") -> "Study":
        """--space, --data, --ops, --method, --preset: only the cells whose `what` is named (comma
        list; None: all of them). A name the study does not have: one line (UserError)."""
        if allowed is None:
            return self
        wanted = allowed.split(",")
        have = sorted({getattr(c, what) for c in self.cells})
        unknown = [w for w in wanted if w not in have]
        if unknown:
            raise UserError(f"--{what} {','.join(unknown)}: not in this study; it has {','.join(have)}{hint}")
        return self.with_cells(c for c in self.cells if getattr(c, what) in wanted)

    def with_presets(self, allowed: str | None) -> "Study":
        """--preset of sweep.py and analyze.py: keep only the presets named (comma list; none named:
        all of them), and run the study's rows (those of its first preset) once more under each
        JSON preset file named, e.g. a BOHB incumbent beside the paper's presets. A name not in the
        study or a missing or broken file: one line (UserError) before anything runs."""
        if allowed is None:
            return self
        words = [w for w in allowed.split(",") if w]
        files = [w for w in words if w.endswith(".json")]
        names = [w for w in words if not w.endswith(".json")]
        kept = list(self.keep("preset", ",".join(names) if names else None,
                              hint=" (or name a JSON preset file, e.g. bohb.py's incumbent.json)").cells)
        first = self.cells[0].preset if self.cells else None
        rows = list(dict.fromkeys((c.space, c.data, c.ops, c.method, c.settings) for c in self.cells
                                  if c.preset == first))
        for f in files:
            load_hparams(f)  # a missing or broken file: one line, before anything runs
            kept += [Cell(sp, d, ops, m, f, st) for sp, d, ops, m, st in rows]
        return self.with_cells(kept)

    def specs(self, seeds=None, **settings) -> list[TrialSpec]:
        """One specification per cell and seed; a cell's settings, then `settings` (the command
        line's), override the defaults of das.spec.SETTINGS."""
        seeds = self.seed_list() if seeds is None else seeds
        out, seen = [], set()
        for c in self.cells:
            hp = load_hparams(c.preset)
            for s in seeds:
                spec = TrialSpec.make(hp=hp, space=c.space, data=c.data, ops=c.ops, method=c.method,
                                      seed=s, **{**dict(c.settings), **settings})
                key = json.dumps(spec.to_dict(), sort_keys=True)
                if key not in seen:  # cells that the command line's settings make one trial run once
                    seen.add(key)
                    out.append(spec)
        return out


def _grid(space, datas, rows, presets):
    return tuple(Cell(space, d, ops, m, p) for p in presets for d in datas for ops, m in rows)


TABLE1_ROWS = (("good", "grad-only"), ("good", "net-only"), ("good", "das"), ("good", "random"),
               ("good", "random-search"), ("all", "das"), ("all", "random"), ("all", "random-search"))
TABLE2_ROWS = (("good", "grad-only"), ("good", "net-only"), ("good", "das"), ("good", "random"),
               ("all", "das"), ("all", "random"))
SEQ_PRESETS = ("H1", "H2", "BOHB-one-shot-Blur", "BOHB-one-shot-DS", "BOHB-Blur")
CELL_PRESETS = SEQ_PRESETS + ("BOHB-Non-Seq-one-shot-Blur", "BOHB-Non-Seq-Blur")
DAS_ROWS = (("good", "das"), ("all", "das"))

STUDIES = {s.name: s for s in (
    Study("table1", "Table 1: sequential space, H1", _grid("seq", ("blur", "downsample"), TABLE1_ROWS, ("H1",)), 75),
    Study("table2", "Table 2: cell space, H1", _grid("cell", ("blur", "downsample"), TABLE2_ROWS, ("H1",)), 100),
    Study("table3", "Table 3: sequential space, five presets", _grid("seq", ("blur", "downsample"), DAS_ROWS,
                                                                     SEQ_PRESETS), 75),
    Study("table4", "Table 4: cell space, seven presets", _grid("cell", ("blur",), DAS_ROWS, CELL_PRESETS), 75),
    # sigma_n calibration (run once with --sigma-n 0.01, the paper's text, and once at 0.1, its Table 5):
    # which reading of the paper's noise level reproduces its absolute numbers and orderings
    Study("calibration", "Calibration: Table 1's methods (no random search) at 10 seeds",
          _grid("seq", ("blur", "downsample"), (("good", "grad-only"), ("good", "net-only"), ("good", "random"),
                                               ("good", "das"), ("all", "random"), ("all", "das")), ("H1",)), 10),
    Study("figure5", "Figure 5: DAS-single and DAS, blur, all ops",
          (Cell("seq", "blur", "all", "das-single", "BOHB-DAS-single"), Cell("seq", "blur", "all", "das", "BOHB-DAS-single"),
           Cell("seq", "blur", "all", "das", "BOHB-one-shot-Blur")), 75),
)}

# The paper's architecture validation PSNR (dB): (max, mean, median), keyed by
# (space, data, ops, method, preset). Tables 1-4 of the paper.
PAPER: dict[tuple, tuple] = {}


def _put(space, data, preset, rows):
    for (ops, method), v in rows.items():
        PAPER[(space, data, ops, method, preset)] = v


_put("seq", "blur", "H1", {
    ("good", "grad-only"): (17.45, 16.36, 16.49), ("good", "net-only"): (21.63, 19.45, 20.71),
    ("good", "das"): (23.46, 21.56, 21.60), ("good", "random"): (24.04, 22.00, 22.16),
    ("good", "random-search"): (24.04, 22.85, 22.75), ("all", "das"): (22.86, 15.64, 18.57),
    ("all", "random"): (20.86, 9.45, 8.10), ("all", "random-search"): (20.86, 12.39, 12.34)})
_put("seq", "downsample", "H1", {
    ("good", "grad-only"): (14.35, 13.24, 13.55), ("good", "net-only"): (16.92, 13.13, 14.05),
    ("good", "das"): (18.03, 16.36, 16.66), ("good", "random"): (18.10, 16.74, 16.78),
    ("good", "random-search"): (18.10, 17.62, 17.56), ("all", "das"): (18.01, 15.39, 16.12),
    ("all", "random"): (13.78, 5.08, 4.31), ("all", "random-search"): (13.78, 9.61, 9.77)})
_put("cell", "blur", "H1", {
    ("good", "grad-only"): (13.19, 12.41, 12.38), ("good", "net-only"): (16.35, 14.83, 15.82),
    ("good", "das"): (15.34, 13.08, 12.51), ("good", "random"): (16.20, 11.29, 11.88),
    ("all", "das"): (16.15, 13.56, 13.73), ("all", "random"): (16.05, 9.56, 8.17)})
_put("cell", "downsample", "H1", {
    ("good", "grad-only"): (11.30, 8.89, 9.59), ("good", "net-only"): (13.63, 13.07, 13.06),
    ("good", "das"): (13.22, 10.22, 10.43), ("good", "random"): (13.15, 6.26, 5.72),
    ("all", "das"): (13.31, 9.47, 8.61), ("all", "random"): (13.39, 4.37, 3.21)})
for _data, _rows in {
    "blur": {"H2": ((23.46, 21.43, 21.63), (23.10, 16.77, 19.88)),
             "BOHB-one-shot-Blur": ((22.83, 20.86, 20.75), (22.47, 15.57, 18.04)),
             "BOHB-one-shot-DS": ((22.33, 20.65, 20.96), (22.41, 14.43, 14.41)),
             "BOHB-Blur": ((23.57, 22.05, 22.38), (22.94, 12.76, 8.21))},
    "downsample": {"H2": ((18.20, 16.57, 16.78), (17.82, 15.93, 16.21)),
                   "BOHB-one-shot-Blur": ((18.42, 16.83, 16.95), (17.73, 14.36, 14.57)),
                   "BOHB-one-shot-DS": ((17.51, 15.33, 15.84), (18.12, 12.36, 13.65)),
                   "BOHB-Blur": ((18.26, 14.63, 15.93), (17.91, 15.04, 15.44))}}.items():
    for _preset, (_good, _all) in _rows.items():
        _put("seq", _data, _preset, {("good", "das"): _good, ("all", "das"): _all})
# Table 4 (cell space, blur; its H1 row repeats Table 2's)
for _preset, (_good, _all) in {
        "H2": ((15.38, 13.17, 12.52), (16.28, 14.11, 15.58)),
        "BOHB-one-shot-Blur": ((16.38, 13.25, 12.76), (16.71, 11.73, 11.80)),
        "BOHB-one-shot-DS": ((14.93, 12.73, 12.44), (15.86, 12.37, 11.72)),
        "BOHB-Blur": ((16.50, 13.83, 13.06), (16.82, 14.07, 14.44)),
        "BOHB-Non-Seq-one-shot-Blur": ((16.50, 8.84, 8.09), (16.82, 13.96, 15.50)),
        "BOHB-Non-Seq-Blur": ((16.74, 9.73, 8.11), (17.03, 13.45, 15.42))}.items():
    _put("cell", "blur", _preset, {("good", "das"): _good, ("all", "das"): _all})

# Runtime of one trial on the paper's GPU (Table 1), seconds
PAPER_RUNTIME = {("good", "grad-only"): 57, ("good", "net-only"): 57, ("good", "das"): 159, ("good", "random"): 35,
                 ("good", "random-search"): 175, ("all", "das"): 173, ("all", "random"): 35,
                 ("all", "random-search"): 175}
PAPER_DRAWS_TO_BEAT_DAS = 49  # random-search steps to beat the DAS median (seq, blur, all ops, H1)


def paper_value(space, data, ops, method, preset):
    """(max, mean, median) of the paper, or None."""
    return PAPER.get((space, data, ops, method, preset))


@dataclass(frozen=True)
class PresetClaim:
    """A statement of the paper about its hyperparameter presets (Sections 5.3 and 5.5, and the
    DAS-single paragraph of Figure 5), as we read its text, judged by das.stats.preset_claims once per
    data formation, op set and pair of presets (x from `x`, y from `y`) on the search `method`'s
    trials (y's on `y_method`'s, where given: two methods compared). `statistic` of architecture PSNR
    (one value per search): "median", "mean" (the paper's "average"), "max" (the best of the seeds),
    "sd" (its standard deviation: a "more robust" method has the lower one) or "r" (Pearson's between
    one-shot and architecture PSNR). `test`:
      "higher"    the statistic of x above y's: one-sided Mann-Whitney U (median), Welch's t (mean),
                  Brown-Forsythe (sd), Fisher z (r); the maximum of one sample has no test: its sign;
      "match"     on par: the 95% interval of the difference within +-MATCH_MARGIN_DB;
      "at least"  x matches or beats y: higher, or on par.
    Where the paper names no baseline for "raises" or "lowers", the baseline is H1 and H2, the manual
    presets the paper sets its BOHB presets against ("compared to ... H1 and H2 in Fig. 3")."""

    claim: str
    text: str
    test: str
    statistic: str
    space: str
    data: tuple
    ops: tuple
    x: tuple
    y: tuple
    method: str = "das"
    y_method: str | None = None


_MANUAL = ("H1", "H2")
_BOTH_OPS = ("good", "all")
_BOTH_DATA = ("blur", "downsample")
_OWN = {"blur": ("BOHB-one-shot-Blur",), "downsample": ("BOHB-one-shot-DS",)}  # tuned for the data formation
_T31 = "the correlation of one-shot and architecture PSNR rises with the BOHB-one-shot preset tuned for the data"
_T34 = "the best architecture over 75 trials falls with the BOHB-one-shot preset tuned for the data"
_T36 = "BOHB-Blur raises the correlation less than the BOHB-one-shot preset tuned for the data"
PRESET_CLAIMS = (
    *(PresetClaim("T3.1", _T31, "higher", "r", "seq", (d,), _BOTH_OPS, _OWN[d], _MANUAL) for d in _BOTH_DATA),
    PresetClaim("T3.2", "on blur the average of BOHB-one-shot-Blur is on par with H1 and H2", "match", "mean", "seq",
                ("blur",), _BOTH_OPS, _OWN["blur"], _MANUAL),
    PresetClaim("T3.3", "on downsampling the average falls with BOHB-one-shot-DS (H1 and H2 higher), most with all ops",
                "higher", "mean", "seq", ("downsample",), _BOTH_OPS, _MANUAL, _OWN["downsample"]),
    *(PresetClaim("T3.4", _T34, "higher", "max", "seq", (d,), _BOTH_OPS, _MANUAL, _OWN[d]) for d in _BOTH_DATA),
    PresetClaim("T3.5", "BOHB-Blur raises the correlation over H1 and H2", "higher", "r", "seq", _BOTH_DATA, _BOTH_OPS,
                ("BOHB-Blur",), _MANUAL),
    *(PresetClaim("T3.6", _T36, "higher", "r", "seq", (d,), _BOTH_OPS, _OWN[d], ("BOHB-Blur",)) for d in _BOTH_DATA),
    PresetClaim("T3.7", "BOHB-Blur raises the best architecture over H1 and H2", "higher", "max", "seq", _BOTH_DATA,
                _BOTH_OPS, ("BOHB-Blur",), _MANUAL),
    PresetClaim("T3.8", "blur with all ops: BOHB-one-shot-Blur is more stable (median) than BOHB-one-shot-DS",
                "higher", "median", "seq", ("blur",), ("all",), ("BOHB-one-shot-Blur",), ("BOHB-one-shot-DS",)),
    PresetClaim("T3.9", "downsampling with all ops: BOHB-one-shot-Blur improves over BOHB-one-shot-DS in stability "
                "(median)", "higher", "median", "seq", ("downsample",), ("all",), ("BOHB-one-shot-Blur",),
                ("BOHB-one-shot-DS",)),
    PresetClaim("T3.10", "H1 and H2 give a better average than the BOHB presets", "higher", "mean", "seq", _BOTH_DATA,
                _BOTH_OPS, _MANUAL, ("BOHB-one-shot-Blur", "BOHB-one-shot-DS", "BOHB-Blur")),
    PresetClaim("T4.1", "cell space: changing the hyperparameters does not improve the stability (median) over H1",
                "at least", "median", "cell", ("blur",), _BOTH_OPS, ("H1",), CELL_PRESETS[1:]),
    PresetClaim("T4.2", "cell space: the presets BOHB tuned for it do not improve the stability (median) over H1 and "
                "H2", "at least", "median", "cell", ("blur",), _BOTH_OPS, _MANUAL, CELL_PRESETS[5:]),
    PresetClaim("F5.1", "BOHB-DAS-single's preset raises the correlation of DAS-single (over DAS under H1 and H2)",
                "higher", "r", "seq", ("blur",), ("all",), ("BOHB-DAS-single",), _MANUAL, "das-single", "das"),
    PresetClaim("F5.2", "BOHB-DAS-single's preset lowers the correlation of DAS (against H1 and H2)", "higher", "r",
                "seq", ("blur",), ("all",), _MANUAL, ("BOHB-DAS-single",)),
    PresetClaim("F5.3", "each with its own BOHB preset, DAS finds a higher architecture PSNR than DAS-single",
                "higher", "max", "seq", ("blur",), ("all",), ("BOHB-one-shot-Blur",), ("BOHB-DAS-single",), "das",
                "das-single"),
    PresetClaim("F5.4", "each with its own BOHB preset, DAS-single is more robust against outliers than DAS (DAS's "
                "standard deviation higher)", "higher", "sd", "seq", ("blur",), ("all",), ("BOHB-one-shot-Blur",),
                ("BOHB-DAS-single",), "das", "das-single"),
)

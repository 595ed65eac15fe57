"""DAS hyperparameters (docs/spec.md §5): one JSON dict, presets from the paper's Tables 6-8 in das/configs/
(package data: found with importlib.resources in the source tree and in an installed package)."""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

from das.utils import UserError, is_number, read_json, short_repr

CONFIG_DIR = Path(str(resources.files("das") / "configs"))  # a real folder: the package is never zipped
ALPHA_OPTIMIZERS = ("Adam", "GradientDescent")
ALPHA_SCHEDULERS = (None, "Linear")
WARMUP_EPOCHS = 5
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")  # a preset name becomes a folder


@dataclass
class HParams:
    name: str = "H1"
    param_lr: float = 1e-3
    param_wd: float = 1e-8
    param_warmup: bool = False
    alpha_lr: float = 1e-3
    alpha_wd: float = 1e-3
    alpha_warmup: bool = True
    alpha_scheduler: str | None = "Linear"
    alpha_optimizer: str = "GradientDescent"

    def to_dict(self) -> dict:
        return asdict(self)

    def values(self) -> dict:
        """The values alone (no name): what a trial specification records."""
        return {k: v for k, v in asdict(self).items() if k != "name"}

    @classmethod
    def from_dict(cls, d: dict, name: str, source: str = "hparams") -> "HParams":
        """Validate and build: every value's type and range is checked here, once; raises UserError."""
        if not isinstance(d, dict):
            raise UserError(f"{source}: hyperparameters must be a JSON object, got {type(d).__name__}")
        if not isinstance(name, str) or not SAFE_NAME.match(name) or name in (".", ".."):
            raise UserError(f"{source}: \"name\" {short_repr(name)} cannot name a folder; use letters, digits and "
                            ". _ + - (at most 64, starting with a letter or digit)")
        fields = set(cls.__dataclass_fields__) - {"name"}
        unknown = set(d) - fields - {"name"}
        if unknown:
            raise UserError(f"{source}: unknown hyperparameters {short_repr(sorted(unknown))}; "
                            f"allowed: {sorted(fields)}")
        missing = fields - set(d)
        if missing:
            raise UserError(f"{source}: missing hyperparameters {sorted(missing)}")
        for k in ("param_lr", "param_wd", "alpha_lr", "alpha_wd"):
            v = d[k]
            if not is_number(v) or v < 0:
                raise UserError(f"{source}: {k} must be a finite number >= 0, got {short_repr(v)}")
        for k in ("param_warmup", "alpha_warmup"):
            if not isinstance(d[k], bool):
                raise UserError(f"{source}: {k} must be true or false, got {short_repr(d[k])}")
        sched = _named(d["alpha_scheduler"], ("None",) + tuple(x for x in ALPHA_SCHEDULERS if x))
        sched = None if sched == "None" else sched
        if sched not in ALPHA_SCHEDULERS:
            raise UserError(f"{source}: alpha_scheduler must be null or \"Linear\", got {short_repr(sched)}")
        optimizer = _named(d["alpha_optimizer"], ALPHA_OPTIMIZERS)
        if optimizer not in ALPHA_OPTIMIZERS:
            raise UserError(f"{source}: alpha_optimizer must be one of {list(ALPHA_OPTIMIZERS)}, "
                            f"got {short_repr(d['alpha_optimizer'])}")
        vals = {k: d[k] for k in fields}
        vals["alpha_scheduler"], vals["alpha_optimizer"] = sched, optimizer
        for k in ("param_lr", "param_wd", "alpha_lr", "alpha_wd"):
            vals[k] = float(vals[k])
        return cls(name=name, **vals)


def _named(value, names):
    """A name matched case-insensitively (linear -> Linear, adam -> Adam); other values unchanged."""
    if isinstance(value, str):
        for n in names:
            if value.lower() == n.lower():
                return n
    return value


def override(hp: HParams, assignments) -> HParams:
    """A preset with single values replaced (`--set alpha_lr=0.01 --set alpha_scheduler=linear`):
    each KEY=VALUE is parsed as JSON where it can be (numbers, true/false, null), as text otherwise,
    and the result is checked like any preset; its name stays the preset's, and a trial's folder
    then names the changed values by their digest."""
    values = hp.values()
    for a in assignments or []:
        key, sep, text = str(a).partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in values:
            raise UserError(f"--set {short_repr(a)}: expected KEY=VALUE with KEY one of {sorted(values)}")
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        if key.endswith("warmup") and isinstance(value, str):
            value = {"true": True, "false": False}.get(value.lower(), value)
        values[key] = value
    return HParams.from_dict(values, hp.name, "--set")


def _preset_files() -> dict:
    folder = resources.files("das") / "configs"
    return {f.name[:-5]: f for f in folder.iterdir() if f.name.endswith(".json")}


def presets() -> list[str]:
    """The names of the shipped presets (H1, H2, BOHB-...)."""
    return sorted(_preset_files())


@lru_cache(maxsize=None)
def shipped_preset(name: str) -> HParams | None:
    """The preset of that name that ships with the project, or None."""
    return load_hparams(name) if name in _preset_files() else None


def load_hparams(name_or_path: str) -> HParams:
    """A preset name (das/configs/<name>.json, shipped with the package) or a path to a user's JSON file."""
    path = Path(name_or_path)
    if path.parent.name == "configs" and not path.exists() and path.stem in _preset_files():
        name_or_path = path.stem  # configs/<preset>.json from before the presets moved into the package
        path = Path(name_or_path)
    if path.suffix == ".json" or path.exists():
        d = read_json(path, "hyperparameter file", "pass a preset name or a JSON file like das/configs/H1.json")
        return HParams.from_dict(d, d.get("name", path.stem), str(path))
    preset = _preset_files().get(name_or_path)
    if preset is None:
        raise UserError(f"unknown hyperparameter preset {name_or_path!r}; choose one of {presets()} "
                        "or pass a path to a JSON file")
    try:
        d = json.loads(preset.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"preset {name_or_path}: broken JSON in the installed package ({exc})") from exc
    return HParams.from_dict(d, name_or_path, f"preset {name_or_path}")

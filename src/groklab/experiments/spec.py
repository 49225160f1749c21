"""Sweep specs: a TOML file with a base config and grid/zip axes over any config field, expanded into runs.

    name = "wd-vs-fraction"
    [base]                  # any config field, by its flag name or alias (p, op, lr, wd, max_iters, ...)
    operators = "/"
    prime = 97
    max_steps = 20000
    [grid]                  # the cartesian product of these lists
    weight_decay = [0.1, 1.0]
    train_fraction = [0.3, 0.5]
    [zip]                   # lists of equal length taken together, then crossed with the grid
    learning_rate = [1e-3, 3e-4]
    warmup_steps  = [0, 100]

Several studies in one file: `[[experiment]]` tables, each with its own `name`, `base`, `grid` and `zip`
(over the file's top-level `base`). Every field name and value is checked before anything runs, and the
error names the file and the field. Data paths are read relative to the spec and may not leave its folder.
"""

from __future__ import annotations

import itertools
import math
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from groklab.config import ConfigError, RunConfig, field_info
from groklab.errors import GroklabError
from groklab.files import read_bytes
from groklab.data.ops import OPERATIONS

# set by the sweep itself: where a run lives and whether it resumes
MANAGED_FIELDS = ("out_dir", "resume")
PATH_FIELDS = ("data_dir", "text_file")
_TOP_KEYS = {"name", "description", "base", "grid", "zip", "experiment"}
_EXPERIMENT_KEYS = {"name", "description", "base", "grid", "zip"}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # fullmatch: "$" would let a final newline through
_MAX_FOLDER_NAME = 255  # bytes in one folder name, on common file systems
MAX_SPEC_BYTES = 2**20  # a spec is a page of TOML; more is not one (or never ends: /dev/zero)
MAX_RUNS = 10_000  # runs a sweep expands to unless --max_runs says more: seed 000's whole study is 36


class SpecError(GroklabError):
    """A sweep spec is malformed; the message names the file and the offending key."""


@dataclass(frozen=True)
class PlannedRun:
    run_id: str  # "experiment/field=value,..." : also its folder under the sweep's runs/
    experiment: str
    params: dict[str, Any]  # the axis values of this run (canonical field names)
    config: RunConfig  # out_dir not yet set


@dataclass(frozen=True)
class Experiment:
    name: str
    description: str
    base: dict[str, Any]
    grid: dict[str, list[Any]]
    zip: dict[str, list[Any]]

    @property
    def axes(self) -> list[str]:
        return [*self.grid, *self.zip]

    @property
    def size(self) -> int:
        """How many runs it expands to, without expanding it."""
        zipped = len(next(iter(self.zip.values()))) if self.zip else 1
        return math.prod(len(v) for v in self.grid.values()) * zipped

    def points(self) -> list[dict[str, Any]]:
        """Every combination of axis values, grid axes varying slowest-first in the order written."""
        zipped: list[dict[str, Any]] = [{}]
        if self.zip:
            zipped = [dict(zip(self.zip, values)) for values in zip(*self.zip.values())]
        grid = [dict(zip(self.grid, values)) for values in itertools.product(*self.grid.values())]
        return [{**g, **z} for g in grid for z in zipped]


@dataclass(frozen=True)
class SweepSpec:
    name: str
    description: str
    base: dict[str, Any]
    experiments: tuple[Experiment, ...]
    source: str  # the TOML text (copied into the sweep folder)
    where: str  # file name, for messages

    def expand(self, overrides: Mapping[str, Any] | None = None, max_runs: int = MAX_RUNS,
               echo: Callable[[str], None] | None = None) -> list[PlannedRun]:
        """All runs, in spec order. `overrides` (e.g. from the command line) replace base values of every
        experiment; overriding a field that an experiment sweeps over is an error. A spec of more than
        `max_runs` runs is refused before any is expanded (a typo in a grid can ask for millions)."""
        overrides = _canonical(dict(overrides or {}), "override", self.where)
        total = sum(e.size for e in self.experiments)
        if total > max_runs:
            raise SpecError(f"{self.where}: expands to {total:,} runs, more than the {max_runs:,} a sweep takes "
                            f"unless told otherwise; check the axes, or pass --max_runs {total}")
        if echo is not None and total >= 1000:
            echo(f"{self.where}: expanding {total:,} runs")
        runs: list[PlannedRun] = []
        seen: dict[str, str] = {}
        for exp in self.experiments:
            clash = sorted(set(overrides) & set(exp.axes))
            if clash:
                raise SpecError(f"{self.where}: {clash[0]} is an axis of experiment {exp.name!r}; "
                                "change it in the spec rather than overriding it")
            base = {**self.base, **exp.base, **overrides}
            for point in exp.points():
                values = {**base, **point}
                try:
                    cfg = RunConfig().replace(**values)
                except ConfigError as e:
                    where = f"experiment {exp.name!r}" + (f", run {_slug(point)}" if point else "")
                    raise SpecError(f"{self.where}: {where}: {e}") from None
                run_id = f"{exp.name}/{_slug(point) or 'run'}"
                for part in run_id.split("/"):
                    if len(part.encode()) > _MAX_FOLDER_NAME:
                        raise SpecError(f"{self.where}: experiment {exp.name!r}: a run folder would be named "
                                        f"{part[:40]!r}... ({len(part.encode())} bytes, more than the "
                                        f"{_MAX_FOLDER_NAME} a file system allows); shorten the names or values")
                key = cfg.to_json()
                if run_id in seen:
                    raise SpecError(f"{self.where}: two runs would share the folder {run_id!r}")
                seen[run_id] = key
                runs.append(PlannedRun(run_id, exp.name, dict(point), cfg))
        if not runs:
            raise SpecError(f"{self.where}: the spec expands to no runs (an axis with an empty list?)")
        return runs


def require_data(spec: SweepSpec, runs: list[PlannedRun]) -> None:
    """A run without a data source can never train: a sweep of such runs is a mistake in its spec (or its
    flags), refused before its folder is made rather than recorded as runs that all fail."""
    missing = next((r for r in runs if not r.config.data.has_source), None)
    if missing is not None:
        raise SpecError(f"{spec.where}: experiment {missing.experiment!r}: no data: set operators and prime, data_dir "
                        "or text_file in [base] (or give them as flags, e.g. --operators + --prime 97)")


def _slug_value(field: str, value: Any) -> str:
    if field == "operators" and isinstance(value, str):
        names = []
        for part in value.replace(" ", "").split(","):
            op = OPERATIONS.get(part)
            names.append(op.name if op is not None else part)
        text = "+".join(names)
    elif isinstance(value, float):
        text = f"{value:g}"
    else:
        text = str(value)
    return re.sub(r"[^A-Za-z0-9.+_-]", "_", text)


def _slug(point: Mapping[str, Any]) -> str:
    return ",".join(f"{k}={_slug_value(k, v)}" for k, v in point.items())


def _canonical(values: dict[str, Any], what: str, where: str) -> dict[str, Any]:
    """Field names to their canonical spelling; unknown or managed fields are errors naming the field."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        try:
            _, canonical, _ = field_info(name)
        except ConfigError as e:
            raise SpecError(f"{where}: [{what}] {e}") from None
        if canonical in MANAGED_FIELDS:
            raise SpecError(f"{where}: [{what}] {canonical} is set by the sweep (each run gets its own folder)")
        if canonical in out:
            raise SpecError(f"{where}: [{what}] {name} and another spelling of {canonical} are both given")
        out[canonical] = value
    return out


def _table(obj: Any, key: str, where: str) -> dict[str, Any]:
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise SpecError(f"{where}: [{key}] must be a table of field = value")
    return obj


def _axes(obj: Any, key: str, where: str) -> dict[str, list[Any]]:
    axes = _canonical(_table(obj, key, where), key, where)
    for name, values in axes.items():
        if not isinstance(values, list):
            raise SpecError(f"{where}: [{key}] {name} must be a list of values, got {values!r}")
        if not values:
            raise SpecError(f"{where}: [{key}] {name} is an empty list")
        if len({repr(v) for v in values}) != len(values):
            raise SpecError(f"{where}: [{key}] {name} lists a value twice")
    return axes


def _resolve_paths(values: dict[str, Any], root: Path, key: str, where: str) -> dict[str, Any]:
    """Data paths relative to the spec's folder; a path that leaves it is refused (specs get shared)."""
    out = dict(values)
    for name in PATH_FIELDS:
        if name not in out:
            continue
        items = out[name] if isinstance(out[name], list) else [out[name]]
        resolved = []
        for item in items:
            if item is None:
                resolved.append(None)
                continue
            if not isinstance(item, str):
                raise SpecError(f"{where}: [{key}] {name}: expected a path, got {item!r}")
            try:
                path = (root / item).resolve()
            except (ValueError, OSError, RuntimeError) as e:  # a NUL byte, a symlink loop, ...
                raise SpecError(f"{where}: [{key}] {name} = {item!r} is not a usable path ({e})") from None
            if Path(item).is_absolute() or not path.is_relative_to(root.resolve()):
                raise SpecError(f"{where}: [{key}] {name} = {item!r} points outside the spec's folder {root}")
            if name == "data_dir" and path.is_dir():
                for inner in sorted(path.iterdir()):  # a link inside the folder may lead out of it too
                    try:
                        target = inner.resolve()
                    except (OSError, RuntimeError) as e:
                        raise SpecError(f"{where}: [{key}] {name} = {item!r}: {inner.name} is not a usable path "
                                        f"({e})") from None
                    if not target.is_relative_to(root.resolve()):
                        raise SpecError(f"{where}: [{key}] {name} = {item!r}: {inner.name} is a link that points "
                                        f"outside the spec's folder {root}; it was not read")
            resolved.append(str(path))
        out[name] = resolved if isinstance(out[name], list) else resolved[0]
    return out


def _experiment(obj: dict[str, Any], default_name: str, root: Path, where: str) -> Experiment:
    unknown = sorted(set(obj) - _EXPERIMENT_KEYS)
    if unknown:
        raise SpecError(f"{where}: unknown key {unknown[0]!r} in an experiment (expected one of "
                        f"{', '.join(sorted(_EXPERIMENT_KEYS))})")
    name = obj.get("name", default_name)
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise SpecError(f"{where}: experiment name must be letters, digits, '.', '_' or '-', got {name!r}")
    base = _resolve_paths(_canonical(_table(obj.get("base"), "base", where), "base", where), root, "base", where)
    grid = _resolve_paths(_axes(obj.get("grid"), "grid", where), root, "grid", where)
    zipped = _resolve_paths(_axes(obj.get("zip"), "zip", where), root, "zip", where)
    if len({len(v) for v in zipped.values()}) > 1:
        lengths = ", ".join(f"{k} has {len(v)}" for k, v in zipped.items())
        raise SpecError(f"{where}: experiment {name!r}: [zip] lists must have the same length ({lengths})")
    both = sorted(set(grid) & set(zipped))
    if both:
        raise SpecError(f"{where}: experiment {name!r}: {both[0]} is both a grid and a zip axis")
    return Experiment(name, str(obj.get("description", "")), base, grid, zipped)


def parse_spec(text: str, where: str = "spec", root: Path | None = None) -> SweepSpec:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"{where}: not valid TOML ({e})") from None
    except RecursionError:
        raise SpecError(f"{where}: not valid TOML (arrays or tables nested too deeply)") from None
    root = root or Path.cwd()
    if not raw:
        raise SpecError(f"{where}: an empty spec: it describes no runs (give [base] fields and a [grid], or "
                        "[[experiment]] tables)")
    unknown = sorted(set(raw) - _TOP_KEYS)
    if unknown:
        raise SpecError(f"{where}: unknown top-level key {unknown[0]!r} (expected one of {', '.join(sorted(_TOP_KEYS))};"
                        " config fields go under [base], [grid] or [zip])")
    name = raw.get("name", Path(where).stem)
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise SpecError(f"{where}: name must be letters, digits, '.', '_' or '-', got {name!r}")
    base = _resolve_paths(_canonical(_table(raw.get("base"), "base", where), "base", where), root, "base", where)
    if "experiment" in raw:
        if "grid" in raw or "zip" in raw:
            raise SpecError(f"{where}: put [grid]/[zip] inside each [[experiment]] when the file has experiments")
        entries = raw["experiment"]
        if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
            raise SpecError(f"{where}: [[experiment]] must be a list of tables")
        experiments = [_experiment(e, f"exp{i}", root, where) for i, e in enumerate(raw["experiment"])]
    else:
        experiments = [_experiment({k: raw[k] for k in ("grid", "zip") if k in raw} | {"name": name}, name, root, where)]
    names = [e.name for e in experiments]
    if len(set(names)) != len(names):
        raise SpecError(f"{where}: two experiments are named {next(n for n in names if names.count(n) > 1)!r}")
    return SweepSpec(name, str(raw.get("description", "")), base, tuple(experiments), text, where)


def load_spec(path: str | Path) -> SweepSpec:
    path = Path(path)
    # bounded: a device such as /dev/zero never ends
    raw = read_bytes(path, SpecError, "a sweep spec (.toml)", limit=MAX_SPEC_BYTES)
    if len(raw) > MAX_SPEC_BYTES:
        raise SpecError(f"{path}: larger than {MAX_SPEC_BYTES // 2**20} MiB; not a sweep spec")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SpecError(f"{path}: not UTF-8 text (byte {e.start})") from None
    return parse_spec(text, str(path), path.parent)

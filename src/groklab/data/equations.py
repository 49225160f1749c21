"""Equation datasets: enumerate or sample, split, write text + manifest (`groklab data`), and the names and
content hash of a run's data files. Reading them back is `parse`'s job.

An equation is one line `f"{a}{symbol}{b}={c}"`, e.g. `30/74=24`, numbers in canonical decimal (no sign, no
leading zero: "0" is allowed, "07" is not, because "07" and "7" would be two spellings of one number to a
char-level model and the number tokenizer could not round-trip them). Split files hold one equation a line
and end with a newline; files without the final newline (as the seed-003 scripts wrote them) also load.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import groklab
from groklab.errors import DataError
from groklab.files import atomic_write
from groklab.lock import FolderLock, entries
from groklab.data.ops import OPERATIONS, Operation, check_modulus, resolve_ops

SPLITS = ("train", "val", "test")
MANIFEST_FORMAT = "groklab-equations/1"
MAX_EQUATIONS = 10_000_000  # all pairs are held in memory as strings (~1 GB at this size)
_MAX_DIGITS = 9  # longer numbers cannot be below any p we can enumerate; also keeps int() cheap
# an equation is at most 29 characters (three 9-digit numbers); a longer line is refused after reading this
# much of it, so a huge line (or /dev/zero) costs neither the time nor the memory to read it whole
MAX_LINE_BYTES = 4096
# a text to memorise is read whole and cut into one window per character: refused above this size
MAX_TEXT_BYTES = 64 * 2**20
MANIFEST_FILE = "manifest.json"
TEXT_FILE = "text.txt"  # a text to memorise, as a run folder keeps it


@dataclass(frozen=True)
class DatasetSpec:
    """What to generate. Two specs that compare equal give byte-identical files."""

    ops: tuple[str, ...]  # operation symbols, in order (names, and a "+,-" string, are normalised to symbols)
    p: int  # modulus; numbers run over 0..p-1
    num_samples: int | None = None  # None: every (a, b) pair; N: N distinct random equations
    fractions: tuple[float, float, float] | None = None  # train/val/test shares; None: the seeds' defaults
    seed: int = 0  # seed of the shuffle (or sample) that makes the split

    def __post_init__(self) -> None:
        ops = resolve_ops(self.ops)
        object.__setattr__(self, "ops", tuple(op.symbol for op in ops))
        _check_size(ops, self.p)
        check_modulus(self.p, ops)
        if self.num_samples is not None and not (_is_int(self.num_samples) and self.num_samples >= 1):
            raise DataError(f"num_samples must be a positive integer, got {self.num_samples!r}")
        if not _is_int(self.seed):
            raise DataError(f"seed must be an integer, got {self.seed!r}")
        if self.fractions is not None:
            object.__setattr__(self, "fractions", _check_fractions(self.fractions))

    @property
    def operations(self) -> list[Operation]:
        return [OPERATIONS[s] for s in self.ops]

    @property
    def scheme(self) -> str:
        return "enumerate" if self.num_samples is None else "sample"

    @property
    def resolved_fractions(self) -> tuple[float, float, float]:
        """The given fractions, else 0.7/0.15/0.15 (seed 000, all pairs) or 0.4/0.4/0.2 (seed 003, sampled)."""
        if self.fractions is not None:
            return self.fractions
        return (0.7, 0.15, 0.15) if self.num_samples is None else (0.4, 0.4, 0.2)


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    try:
        values = tuple(float(f) for f in fractions)
    except (TypeError, ValueError):
        values = ()
    if len(values) != 3:
        raise DataError(f"fractions must be three numbers (train, val, test), got {fractions!r}")
    for split, f in zip(SPLITS, values):
        if not (0.0 <= f <= 1.0):  # also false for NaN
            raise DataError(f"fractions: the {split} fraction must be in [0, 1], got {f}")
    if abs(sum(values) - 1.0) > 1e-6:
        raise DataError(f"fractions must sum to 1, got {' + '.join(map(str, values))} = {sum(values):g}")
    if values[0] <= 0.0:
        raise DataError("fractions: the train fraction must be above 0")
    return values  # type: ignore[return-value]


def _check_size(ops: Sequence[Operation], p: object) -> None:
    # before check_modulus: its trial-division primality test would run for hours on a huge p
    if _is_int(p) and p >= 2 and len(ops) * p * p > MAX_EQUATIONS:  # type: ignore[operator]
        raise DataError(f"{len(ops)} operation(s) mod {p} make over {MAX_EQUATIONS:,} equations; use a smaller p")


def all_equations(ops: str | Sequence[str] | Sequence[Operation], p: int) -> list[str]:
    """Every defined equation: op order as given, then a, then b (0..p-1); undefined pairs are skipped."""
    resolved = resolve_ops(ops)
    _check_size(resolved, p)
    check_modulus(p, resolved)
    lines = []
    for op in resolved:
        for a in range(p):
            for b in range(p):
                c = op.apply(a, b, p)
                if c is not None:
                    lines.append(f"{a}{op.symbol}{b}={c}")
    return lines


def _split(lines: list[str], fractions: tuple[float, float, float]) -> dict[str, list[str]]:
    n = len(lines)
    # floor, as the seeds did; the 1e-9 keeps float noise (n*f = 69.99999...) from costing a line
    n_train = math.floor(n * fractions[0] + 1e-9)
    n_val = math.floor(n * fractions[1] + 1e-9)
    if n_train == 0:
        raise DataError(f"the train split would be empty ({n} equations × train fraction {fractions[0]})")
    return {"train": lines[:n_train], "val": lines[n_train : n_train + n_val], "test": lines[n_train + n_val :]}


def make_splits(spec: DatasetSpec) -> dict[str, list[str]]:
    """Train/val/test lines for a spec; deterministic for its seed.

    All pairs: shuffle with random.Random(seed), then floor(n*f_train), floor(n*f_val), the rest (this
    reproduces the seed report's 6,518/1,396/1,398 for division mod 97). With num_samples N: N *distinct*
    equations drawn uniformly without replacement, split the same way. The seed-003 scripts drew with
    replacement, so the same equation could land in train and val; here no equation repeats anywhere.
    """
    lines = all_equations(spec.ops, spec.p)
    rng = random.Random(spec.seed)
    if spec.num_samples is None:
        rng.shuffle(lines)
    else:
        if spec.num_samples > len(lines):
            raise DataError(
                f"num_samples {spec.num_samples:,} is more than the {len(lines):,} distinct equations "
                f"for {','.join(spec.ops)} mod {spec.p}"
            )
        lines = rng.sample(lines, spec.num_samples)  # already in random order
    return _split(lines, spec.resolved_fractions)


def _file_text(lines: Sequence[str]) -> str:
    return "".join(line + "\n" for line in lines)


def _sha256(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def content_hash(file_hashes: Sequence[str]) -> str:
    """sha256 of the train, val and test files' hex digests, one a line, in that order."""
    return _sha256("".join(h + "\n" for h in file_hashes).encode())


def manifest_for(spec: DatasetSpec, splits: dict[str, list[str]]) -> dict:
    """The manifest write_dataset would write, without writing (e.g. for stats_table)."""
    hashes = {f"{s}.txt": _sha256(_file_text(splits[s]).encode()) for s in SPLITS}
    return {
        "format": MANIFEST_FORMAT,
        "ops": [{"name": op.name, "symbol": op.symbol, "formula": op.formula} for op in spec.operations],
        "p": spec.p,
        "scheme": spec.scheme,
        "num_samples": spec.num_samples,
        "seed": spec.seed,
        "fractions": list(spec.resolved_fractions),
        "counts": {s: len(splits[s]) for s in SPLITS},
        "sha256": hashes,
        "content_hash": content_hash(list(hashes.values())),
        "groklab_version": groklab.__version__,
    }


_SAME_DATASET_KEYS = ("format", "ops", "p", "scheme", "num_samples", "seed", "fractions", "content_hash")


def _already_written(out_dir: Path, manifest: dict) -> dict | None:
    """The directory's manifest if it describes this very dataset and its files still match, else None."""
    try:
        old = json.loads((out_dir / MANIFEST_FILE).read_text(encoding="utf-8"))
        same = all(old[k] == manifest[k] for k in _SAME_DATASET_KEYS) and all(
            _sha256((out_dir / name).read_bytes()) == digest for name, digest in old["sha256"].items()
        )
    except (OSError, ValueError, KeyError, AttributeError, TypeError):
        return None
    return old if same else None


def write_dataset(spec: DatasetSpec, splits: dict[str, list[str]], out_dir: str | os.PathLike[str]) -> dict:
    """Write train.txt, val.txt, test.txt and manifest.json into out_dir; return the manifest.

    Re-running with the same spec on a directory it already wrote is a no-op (returns the old manifest);
    any other non-empty directory is refused rather than mixed with.
    """
    manifest = manifest_for(spec, splits)
    return write_data_folder(out_dir, {f"{s}.txt": _file_text(splits[s]) for s in SPLITS}, manifest,
                             lambda out: _already_written(out, manifest))


def write_data_folder(out_dir: str | os.PathLike[str], files: dict[str, str], manifest: dict,
                      already: Callable[[Path], dict | None]) -> dict:
    """`files` (name -> text), then manifest.json (last: a folder with a manifest is complete), into out_dir,
    new or empty, under the folder's lock, so that two writers at once never mix their files (the second is
    refused in one line). A folder that already holds this very data (`already(out)` returns its manifest)
    is left as it is; any other content is refused rather than mixed with."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise DataError(f"output directory {out} is a file; choose an empty directory")
    found: list[dict] = []

    def check(folder: Path) -> None:
        present = entries(folder)
        old = already(folder) if present else None
        if present and old is None:
            shown = ", ".join(present[:8]) + (f", ... ({len(present)} in all)" if len(present) > 8 else "")
            raise DataError(f"output directory {folder} already holds other files ({shown}); choose an empty directory")
        found[:] = [old] if old is not None else []

    with FolderLock(out).acquire_checked(check):
        if found:
            return found[0]
        for name, text in files.items():
            atomic_write(out / name, text)
        atomic_write(out / MANIFEST_FILE, json.dumps(manifest, indent=2) + "\n")
    return manifest


def stats_table(rows: list[dict]) -> str:
    """A Markdown table as in the seed report. Each row is a manifest (from write_dataset/manifest_for) or a
    dict with keys task, p, train, val, test."""
    header = ["Task", "Modulus", "Total Examples", "Train", "Val", "Test"]
    body = []
    for row in rows:
        if "counts" in row:
            task = "+".join(OPERATIONS[o["symbol"]].title for o in row["ops"])
            counts = [row["counts"][s] for s in SPLITS]
        else:
            task, counts = row["task"], [row[s] for s in SPLITS]
        body.append([task, str(row["p"]), f"{sum(counts):,}", *(f"{n:,}" for n in counts)])
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

    def fmt(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([fmt(header), rule, *map(fmt, body)]) + "\n"


def fingerprint(files: dict[str, str]) -> str:
    """The content hash of a run's data: sha256 over its split files (or its text), by name. The manifest is
    left out: it records the groklab version that wrote it, which is not part of the data."""
    h = hashlib.sha256()
    for name in sorted(files):
        if name != MANIFEST_FILE:
            h.update(name.encode() + b"\0" + files[name].encode("utf-8") + b"\0")
    return h.hexdigest()

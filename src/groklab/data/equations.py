"""Equations: enumerate or sample, split, write text + manifest, parse with file:line errors.

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
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Sequence

import groklab
from groklab.errors import DataError
from groklab.files import atomic_write, open_binary, parse_json
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
        old = json.loads((out_dir / "manifest.json").read_text(encoding="utf-8"))
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
    out = Path(out_dir)
    manifest = manifest_for(spec, splits)
    if out.exists() and not out.is_dir():
        raise DataError(f"output directory {out} is a file; choose an empty directory")
    present = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if present:
        old = _already_written(out, manifest)
        if old is not None:
            return old
        shown = ", ".join(present[:8]) + (f", ... ({len(present)} in all)" if len(present) > 8 else "")
        raise DataError(f"output directory {out} already holds other files ({shown}); choose an empty directory")
    out.mkdir(parents=True, exist_ok=True)
    for s in SPLITS:
        atomic_write(out / f"{s}.txt", _file_text(splits[s]))
    # manifest last: a directory with a manifest is a complete dataset
    atomic_write(out / "manifest.json", json.dumps(manifest, indent=2) + "\n")
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


_OP_CLASS = "".join(re.escape(s) for s in OPERATIONS)
_EQUATION = re.compile(rf"([0-9]+)([{_OP_CLASS}])([0-9]+)=([0-9]+)")
_ALLOWED = set("0123456789=") | set(OPERATIONS)


def _show(line: str) -> str:
    return repr(line) if len(line) <= 60 else repr(line[:57]) + "..."


def parse_equation(line: str) -> tuple[int, str, int, int]:
    """'30/74=24' -> (30, '/', 74, 24). DataError (without file:line; callers add it) if malformed."""
    if not line:
        raise DataError("empty line")
    for col, ch in enumerate(line, start=1):
        if ch not in _ALLOWED:
            raise DataError(f"unknown character {ch!r} at column {col} in {_show(line)}")
    m = _EQUATION.fullmatch(line)
    if m is None:
        raise DataError(f"expected <number><operation><number>=<number> such as '30/74=24', got {_show(line)}")
    numbers = (m.group(1), m.group(3), m.group(4))
    for text in numbers:
        if len(text) > 1 and text[0] == "0":
            raise DataError(f"number {text!r} has a leading zero in {_show(line)}")
        if len(text) > _MAX_DIGITS:
            raise DataError(f"number {text[:12]}... is too large in {_show(line)}")
    a, b, c = (int(t) for t in numbers)
    return a, m.group(2), b, c


def _parse_at(line: str, path: str | os.PathLike[str], lineno: int) -> tuple[int, str, int, int]:
    try:
        return parse_equation(line)
    except DataError as e:
        raise DataError(f"{path}:{lineno}: {e}") from None


def _decode(raw: bytes, path: Path, first_line: int = 1) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = first_line + raw.count(b"\n", 0, e.start)
        col = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise DataError(f"{path}:{line}: not UTF-8 text (byte 0x{raw[e.start]:02x} at column {col})") from None


def _open(path: Path) -> BinaryIO:
    return open_binary(path, DataError, "a text file")


def _read_utf8(path: Path) -> str:
    with _open(path) as f:
        too_big = os.fstat(f.fileno()).st_size > MAX_TEXT_BYTES  # known before reading a byte of it
        raw = b"" if too_big else f.read(MAX_TEXT_BYTES + 1)  # bounded: a device such as /dev/zero never ends
    if too_big or len(raw) > MAX_TEXT_BYTES:
        raise DataError(f"{path}: larger than {MAX_TEXT_BYTES // 2**20} MiB; groklab memorises small texts")
    return _decode(raw, path).removeprefix("\ufeff")  # a byte-order mark from Windows editors is not data


def _file_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text without its line end) for each line, read one at a time, each at most
    MAX_LINE_BYTES long; the final newline ends the last line, it does not start an empty one."""
    with _open(path) as f:
        for lineno, raw in enumerate(iter(lambda: f.readline(MAX_LINE_BYTES + 1), b""), start=1):
            if len(raw) > MAX_LINE_BYTES:
                raise DataError(f"{path}:{lineno}: line longer than {MAX_LINE_BYTES:,} bytes; not an equation")
            if lineno > MAX_EQUATIONS:
                raise DataError(f"{path}: more than {MAX_EQUATIONS:,} lines; not an equation file groklab can hold")
            if lineno == 1:
                raw = raw.removeprefix(b"\xef\xbb\xbf")  # a byte-order mark from Windows editors is not data
            yield lineno, _decode(raw, path, lineno).removesuffix("\n").removesuffix("\r")


def read_equation_file(path: str | os.PathLike[str]) -> list[str]:
    """The equations of one split file, without line ends. '\\r\\n' line ends are accepted; blank lines
    (other than the file's final newline) and malformed lines raise DataError naming file:line."""
    path = Path(path)

    def check(lineno: int, line: str) -> None:
        if not line:
            raise DataError(f"{path}:{lineno}: blank line (only the file's final newline may follow the last equation)")
        _parse_at(line, path, lineno)

    out: list[str] = []
    first_blank: tuple[int, str] | None = None  # a file of blank lines only is "empty", not "blank line 1"
    for lineno, line in _file_lines(path):
        if not out and not line.strip():
            first_blank = first_blank or (lineno, line)
            continue
        if first_blank is not None:
            check(*first_blank)
        check(lineno, line)
        out.append(line)
    if not out:
        raise DataError(f"{path}: no equations (the file is empty)")
    return out


def check_equations(
    lines: Sequence[str], p: int, path: str | os.PathLike[str], ops: Sequence[str] | None = None
) -> None:
    """Every number below p and every answer right (c == op(a, b) mod p); optionally only the given op
    symbols. The first bad line raises DataError with file:line (lines count from 1, as in the file)."""
    allowed = set(ops) if ops is not None else None
    for lineno, line in enumerate(lines, start=1):
        a, symbol, b, c = _parse_at(line, path, lineno)
        if allowed is not None and symbol not in allowed:
            raise DataError(f"{path}:{lineno}: operation {symbol!r} in {line} is not one of {' '.join(sorted(allowed))}")
        for n in (a, b, c):
            if n >= p:
                raise DataError(f"{path}:{lineno}: number {n} in {line} is not below p = {p}")
        op = OPERATIONS[symbol]
        expected = op.apply(a, b, p)
        where = f"mod {p}" if op.domain == "zp" else f"for the permutations numbered 0..{p - 1}"
        if expected is None:
            raise DataError(f"{path}:{lineno}: {a}{symbol}{b} is undefined {where}")
        if c != expected:
            raise DataError(f"{path}:{lineno}: {line} is wrong {where}: expected {expected}")


def _find_split_files(root: Path, name: str | None) -> dict[str, Path]:
    if name is None and (root / "train.txt").exists():
        return {s: root / f"{s}.txt" for s in SPLITS}
    if name is None:  # the seed-003 layout: train_<name>.txt, val_<name>.txt, test_<name>.txt
        names = [f.name[6:-4] for f in sorted(root.glob("train_*.txt")) if (root / f"val{f.name[5:]}").exists()]
        if len(names) != 1:
            raise DataError(
                f"{root}: holds several datasets ({', '.join(names)}); choose one by name" if names
                else f"{root / 'train.txt'}: no such file (nor a train_<name>.txt/val_<name>.txt pair)"
            )
        name = names[0]
    return {s: root / f"{s}_{name}.txt" for s in SPLITS}


def load_dataset_dir(
    data_dir: str | os.PathLike[str], name: str | None = None
) -> tuple[dict[str, list[str]], dict | None]:
    """({'train': [...], 'val': [...], 'test': [...]}, manifest or None) from a dataset folder.

    train and val are required (val may be an empty file, for a 0 val fraction); a missing test file gives [].
    With a manifest.json (as write_dataset leaves), every file must still match its sha256 and every
    equation is checked against its p and operations; without one, only the syntax is checked.
    `name` picks train_<name>.txt etc. (the seed-003 layout) when a folder holds several.
    """
    root = Path(data_dir)
    if not root.is_dir():
        raise DataError(f"{root}: no such directory" if not root.exists() else f"{root}: is not a directory")
    files = _find_split_files(root, name)
    splits: dict[str, list[str]] = {}
    for s, path in files.items():
        missing_test = s == "test" and not path.exists()
        empty_eval = s != "train" and path.is_file() and path.stat().st_size == 0
        splits[s] = [] if missing_test or empty_eval else read_equation_file(path)
    manifest_path = root / "manifest.json"
    if files["train"].name != "train.txt" or not manifest_path.exists():
        return splits, None
    manifest = read_manifest(manifest_path)
    for s, path in files.items():
        digest = manifest["sha256"].get(path.name)
        if digest is not None and (not path.exists() or _sha256(path.read_bytes()) != digest):
            raise DataError(
                f"{path}: does not match {manifest_path} (missing or sha256 differs): it changed after it was "
                "written; regenerate the dataset or delete manifest.json"
            )
        check_equations(splits[s], manifest["p"], path, [o["symbol"] for o in manifest["ops"]])
    return splits, manifest


def read_manifest(path: Path) -> dict:
    try:
        m = parse_json(path.read_text(encoding="utf-8"))
        ok = m["format"] == MANIFEST_FORMAT and _is_int(m["p"]) and m["p"] >= 2 and isinstance(m["sha256"], dict)
        ok = ok and all(o["symbol"] in OPERATIONS for o in m["ops"])
    except (OSError, ValueError, RecursionError) as e:  # RecursionError: JSON nested too deeply
        raise DataError(f"{path}: not a readable JSON manifest ({e})") from None
    except (KeyError, TypeError):
        ok = False
    if not ok:
        raise DataError(f"{path}: not a groklab dataset manifest ({MANIFEST_FORMAT}) with valid p, ops and sha256")
    return m


def read_text_file(path: str | os.PathLike[str]) -> str:
    """A plain UTF-8 text to memorise (seed 003's sanity run), returned unchanged (minus a byte-order mark)."""
    path = Path(path)
    text = _read_utf8(path)
    if not text:
        raise DataError(f"{path}: empty file, nothing to learn")
    return text

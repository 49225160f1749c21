"""Reading equation files back: one line `a<op>b=c` at a time, strictly (file:line errors), dataset folders
and their manifests checked against the files, and plain texts to memorise.

An equation is one line `f"{a}{symbol}{b}={c}"`, e.g. `30/74=24`, numbers in canonical decimal (no sign, no
leading zero: "0" is allowed, "07" is not, because "07" and "7" would be two spellings of one number to a
char-level model and the number tokenizer could not round-trip them). Split files hold one equation a line
and end with a newline; files without the final newline (as the seed-003 scripts wrote them) also load.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, Sequence

from groklab.data import equations
from groklab.data.equations import (MANIFEST_FILE, MANIFEST_FORMAT, MAX_LINE_BYTES, MAX_TEXT_BYTES, SPLITS, _is_int,
                                    _MAX_DIGITS, _sha256)
from groklab.data.ops import OPERATIONS
from groklab.errors import DataError
from groklab.files import open_binary, parse_json


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
            if lineno > equations.MAX_EQUATIONS:
                raise DataError(f"{path}: more than {equations.MAX_EQUATIONS:,} lines; not an equation file groklab can hold")
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
    manifest_path = root / MANIFEST_FILE
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


def read_json_manifest(path: Path, valid: Callable[[dict], bool], what: str) -> dict:
    """A manifest file read strictly: unreadable JSON, or `valid` false (or failing on a missing key or a
    wrong type), is one DataError saying it is not `what`."""
    try:
        m = parse_json(path.read_text(encoding="utf-8"))
        ok = valid(m)
    except (OSError, ValueError, RecursionError) as e:  # RecursionError: JSON nested too deeply
        raise DataError(f"{path}: not a readable JSON manifest ({e})") from None
    except (KeyError, TypeError):
        ok = False
    if not ok:
        raise DataError(f"{path}: not {what}")
    return m


def read_manifest(path: Path) -> dict:
    return read_json_manifest(
        path, lambda m: (m["format"] == MANIFEST_FORMAT and _is_int(m["p"]) and m["p"] >= 2
                         and isinstance(m["sha256"], dict) and all(o["symbol"] in OPERATIONS for o in m["ops"])),
        f"a groklab dataset manifest ({MANIFEST_FORMAT}) with valid p, ops and sha256")


def read_text_file(path: str | os.PathLike[str]) -> str:
    """A plain UTF-8 text to memorise (seed 003's sanity run), returned unchanged (minus a byte-order mark)."""
    path = Path(path)
    text = _read_utf8(path)
    if not text:
        raise DataError(f"{path}: empty file, nothing to learn")
    return text

"""A text to memorise, as a data folder: `groklab data --text "I love machine learning" --out data/sanity_check`
writes `text.txt` (the text, as given) and `manifest.json` (format groklab-text/1: its sha256 and length), and
`groklab train --data_dir data/sanity_check` trains on it as a text run, the loss on every token (seed 000's
sanity checks). The folder is read as strictly as an equation folder: a text.txt changed after it was written,
a manifest that is not ours, a folder holding equations too, or an empty text is one line naming the file.
"""

from __future__ import annotations

import os
from pathlib import Path

import groklab
from groklab.data.equations import MANIFEST_FILE, MAX_TEXT_BYTES, TEXT_FILE, _sha256, write_data_folder
from groklab.data.parse import read_json_manifest, read_text_file
from groklab.errors import DataError
from groklab.files import parse_json

TEXT_MANIFEST_FORMAT = "groklab-text/1"


def text_manifest(text: str) -> dict:
    return {"format": TEXT_MANIFEST_FORMAT, "characters": len(text), "sha256": {TEXT_FILE: _sha256(text.encode("utf-8"))},
            "groklab_version": groklab.__version__}


def write_text_dataset(text: str, out_dir: str | os.PathLike[str]) -> dict:
    """Write text.txt and manifest.json into out_dir (new or empty; the same text again is a no-op)."""
    text = text.removeprefix("\ufeff")  # as read_text_file reads it back: a byte-order mark is not data
    if not text:
        raise DataError("--text: empty text, nothing to learn")
    if "\x00" in text or len(text.encode("utf-8")) > MAX_TEXT_BYTES:
        raise DataError(f"--text: not a text groklab memorises (NUL bytes, or above {MAX_TEXT_BYTES // 2**20} MiB)")
    return write_data_folder(out_dir, {TEXT_FILE: text}, text_manifest(text), lambda out: _same_text(out, text))


def _same_text(out: Path, text: str) -> dict | None:
    """The folder's manifest if it is a text folder holding exactly `text`, else None (a damaged text folder
    raises, as reading it does)."""
    same = is_text_folder(out) and read_text_folder(out) == text
    return read_manifest(out / MANIFEST_FILE) if same else None


def read_manifest(path: Path) -> dict:
    return read_json_manifest(
        path, lambda m: (m["format"] == TEXT_MANIFEST_FORMAT and isinstance(m["sha256"], dict)
                         and isinstance(m["sha256"].get(TEXT_FILE), str)),
        f"a groklab text manifest ({TEXT_MANIFEST_FORMAT}) with the sha256 of {TEXT_FILE}")


def _manifest_format(path: Path) -> object:
    try:
        return parse_json(path.read_text(encoding="utf-8")).get("format")
    except (OSError, UnicodeDecodeError, ValueError, RecursionError, AttributeError):
        return None


def is_text_folder(folder: str | os.PathLike[str]) -> bool:
    """A folder whose manifest describes a text, or that holds text.txt and no equation files (an equation
    folder with a text.txt beside its splits stays an equation folder, as it always was)."""
    root = Path(folder)
    if not root.is_dir():
        return False
    manifest = root / MANIFEST_FILE
    if manifest.is_file() and _manifest_format(manifest) == TEXT_MANIFEST_FORMAT:
        return True
    equations = (root / "train.txt").exists() or any(root.glob("train_*.txt"))
    return (root / TEXT_FILE).is_file() and not equations


def read_text_folder(folder: str | os.PathLike[str]) -> str:
    """The text of a text folder, checked against its manifest when it has one (as equation folders are)."""
    root = Path(folder)
    path = root / TEXT_FILE
    equations = [n for n in ("train.txt", "val.txt", "test.txt") if (root / n).exists()]
    if equations:
        raise DataError(f"{root}: holds both {TEXT_FILE} and equation files ({', '.join(equations)}); a data folder "
                        "is a text to memorise or equations, not both")
    if not path.exists():
        raise DataError(f"{path}: no such file (the folder's {MANIFEST_FILE} describes a text)")
    text = read_text_file(path)
    if (root / MANIFEST_FILE).exists():
        digest = read_manifest(root / MANIFEST_FILE)["sha256"][TEXT_FILE]
        if _sha256(text.encode("utf-8")) != digest:
            raise DataError(f"{path}: does not match {root / MANIFEST_FILE} (sha256 differs): it changed after it "
                            "was written; write it again with `groklab data --text` or delete manifest.json")
    return text


def describe(manifest: dict, out: str | os.PathLike[str]) -> str:
    return (f"wrote {Path(out) / TEXT_FILE} ({manifest['characters']:,} characters) and {MANIFEST_FILE}: "
            f"`groklab train --data_dir {out}` memorises it (loss on every token)")


def text_data_command(text: str, out: str, *equation_options: object) -> str:
    """`groklab data --text TEXT --out DIR`: write the folder; the line to print. The equation options (--op,
    --p, --num_samples, --fractions) are refused beside it rather than ignored."""
    if any(o is not None for o in equation_options):
        raise DataError("--text writes a text to memorise: leave out --op, --p, --num_samples and --fractions")
    return describe(write_text_dataset(text, out), out)

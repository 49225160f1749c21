"""A run's data, from its DataConfig: the equation lines (read or generated), the tokenizer, the examples."""

from __future__ import annotations

import json
from dataclasses import dataclass

from groklab.data import equations as data
from groklab.data import parse
from groklab.data.equations import MANIFEST_FILE, TEXT_FILE
from groklab.config import DataConfig, ModelConfig
from groklab.errors import DataError
from groklab.data.examples import Examples, encode_equations, encode_text
from groklab.data.ops import OPERATIONS
from groklab.data.textset import is_text_folder, read_text_folder
from groklab.data.tokenizer import CharTokenizer, Tokenizer, make_tokenizer

DEFAULT_TEXT_BLOCK = 256  # nanoGPT's context length, for texts longer than that


@dataclass(frozen=True)
class RunData:
    tokenizer: Tokenizer
    splits: dict[str, Examples]  # "train", "val", "test" (test may be empty)
    lines: dict[str, list[str]] | None  # equations per split (None for a plain text)
    text: str | None
    manifest: dict | None
    block_size: int  # resolved context length
    # what evaluation scores: for equations always the answer after '=' (exact match and loss; with its end
    # of line unless loss_on is "answer_only"), whatever --loss_on / --mask_first_n train on, since the
    # operands are random and can never be predicted; for a plain text, the same examples as training.
    # None = `splits`.
    eval_splits: dict[str, Examples] | None = None

    @property
    def scored(self) -> dict[str, Examples]:
        return self.eval_splits if self.eval_splits is not None else self.splits

    def files(self) -> dict[str, str]:
        """What the run directory keeps of its data, so `evaluate` and `--resume` need nothing else."""
        if self.text is not None:
            return {TEXT_FILE: self.text}
        assert self.lines is not None
        files = {f"{s}.txt": "".join(f"{line}\n" for line in lines) for s, lines in self.lines.items()}
        if self.manifest is not None:
            files[MANIFEST_FILE] = json.dumps(self.manifest, indent=2) + "\n"
        return files


def _equation_lines(cfg: DataConfig) -> tuple[dict[str, list[str]], dict | None, tuple[str, ...], int | None]:
    """(splits, manifest, op symbols, p or None) from a data folder or generated on the fly."""
    if cfg.operators is not None:
        assert cfg.prime is not None
        fractions = None
        if cfg.train_fraction is not None or cfg.val_fraction is not None:
            default = data.DatasetSpec(ops=cfg.operators, p=cfg.prime, num_samples=cfg.num_samples)
            ft, fv, _ = default.resolved_fractions
            ft = cfg.train_fraction if cfg.train_fraction is not None else ft
            fv = cfg.val_fraction if cfg.val_fraction is not None else fv
            fractions = (ft, fv, round(1.0 - ft - fv, 12))
        spec = data.DatasetSpec(
            ops=cfg.operators, p=cfg.prime, num_samples=cfg.num_samples, fractions=fractions, seed=cfg.data_seed
        )
        splits = data.make_splits(spec)
        return splits, data.manifest_for(spec, splits), spec.ops, spec.p
    assert cfg.data_dir is not None
    splits, manifest = parse.load_dataset_dir(cfg.data_dir)
    if manifest is not None:
        return splits, manifest, tuple(o["symbol"] for o in manifest["ops"]), manifest["p"]
    used = {ch for lines in splits.values() for line in lines for ch in line if ch in OPERATIONS}
    return splits, None, tuple(s for s in OPERATIONS if s in used), None


def load_run_data(cfg: DataConfig, model: ModelConfig) -> RunData:
    if not cfg.has_source:
        raise DataError("no data: give --data_dir DIR, a text file, or --operators OPS --prime P")
    text_folder = cfg.data_dir is not None and is_text_folder(cfg.data_dir)  # `groklab data --text`'s folder
    if cfg.text_file is not None or text_folder:
        if text_folder and cfg.tokenizer != "char":
            raise DataError(f"{cfg.data_dir}: holds a text to memorise, which needs the char tokenizer")
        text = read_text_folder(cfg.data_dir) if text_folder else parse.read_text_file(cfg.text_file)
        tok = CharTokenizer.for_text(text)
        block = model.block_size or min(len(tok.encode(text)) - 1, DEFAULT_TEXT_BLOCK)
        ex = encode_text(text, tok, block, mask_first_n=cfg.mask_first_n, where=cfg.text_file or cfg.data_dir)
        empty = Examples(ex.inputs[:0], ex.targets[:0])
        # memorising a text has no held-out part: "val" is the text itself, as in seed 003's sanity run
        return RunData(tok, {"train": ex, "val": ex, "test": empty}, None, text, None, max(block, ex.seq_len))

    lines, manifest, ops, p = _equation_lines(cfg)
    if cfg.tokenizer != "char" and p is None:
        raise DataError(
            f"{cfg.data_dir}: the {cfg.tokenizer} tokenizer needs the modulus p; use a folder written by `groklab data` "
            "(it has manifest.json) or --operators/--prime"
        )
    tok = make_tokenizer(cfg.tokenizer, ops, p or 2)
    if not lines["train"]:
        raise DataError(f"{cfg.data_dir or 'data'}: the train split is empty")
    if not lines["val"]:  # grokking is read off val accuracy; training without it failed at the first evaluation
        raise DataError(f"{cfg.data_dir or 'data'}: the val split is empty; give it some equations (a val "
                        "fraction above 0, or a larger p)")
    longest = max(len(tok.encode(line + "\n")) - 1 for split in lines.values() for line in split)
    block = model.block_size or longest
    def encode(loss_on: str, mask_first_n: int | None) -> dict[str, Examples]:
        return {name: encode_equations(split, tok, loss_on=loss_on, mask_first_n=mask_first_n, seq_len=block,
                                       where=f"{name} split")
                for name, split in lines.items()}

    splits = encode(cfg.loss_on, cfg.mask_first_n)
    if cfg.mask_first_n is None and cfg.loss_on != "all":
        return RunData(tok, splits, lines, None, manifest, block)  # trained on what is scored
    return RunData(tok, splits, lines, None, manifest, block, encode("answer", None))

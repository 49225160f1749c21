"""Loading a trained run for sample, evaluate, analyze and export: a run folder (or any file in it) -> its
config, vocabulary and weights, every consistency check made first. Nothing is unpickled; file names are
`rundir`'s."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from groklab.store import checkpoint as ckpt
from groklab.store import rundir
from groklab.config import RunConfig
from groklab.data.parse import read_manifest
from groklab.errors import CheckpointError, TokenizerError
from groklab.model.gpt import GPT
from groklab.engine.device import resolve_device
from groklab.data.tokenizer import Tokenizer, load_tokenizer, make_tokenizer, tokenizer_from_dict


@dataclass
class LoadedRun:
    run_dir: Path
    cfg: RunConfig
    tokenizer: Tokenizer
    model: GPT  # E = 1, in eval mode
    step: int

    def to_hf(self):
        """(transformers.GPT2LMHeadModel, its tokenizer) with this run's weights (pip install 'groklab[hf]')."""
        from groklab.store.export import to_hf

        return to_hf(self)

    def to_module(self):
        """This run as a plain torch.nn.Module (state_dict, hooks, .to, .eval): ids (B, T) -> logits (B, T, V)."""
        from groklab.store.export import to_module

        return to_module(self)


def find_run_dir(path: str | Path) -> Path:
    """A run folder, or any file inside one (e.g. seed 003's `ckpt/model.pt` habit) -> the run folder."""
    p = Path(path)
    if not p.exists() and not (p.suffix and (p.parent / rundir.CONFIG_FILE).is_file()):
        raise CheckpointError(f"{p}: no such run directory or checkpoint")
    run_dir = p if p.is_dir() else p.parent
    if not (run_dir / rundir.CONFIG_FILE).is_file():
        raise CheckpointError(f"{p}: not a groklab run (no {rundir.CONFIG_FILE} in {run_dir})")
    return run_dir


def load_run(path: str | Path, device: str | torch.device = "cpu", weights: str | Path | None = None) -> LoadedRun:
    """A run folder (or a file inside it) -> its config, vocabulary and final weights (or the snapshot file
    `weights`). Refused, in one line: weights of another architecture or vocabulary, weights whose checksum
    fails, weights that are not finite."""
    device = resolve_device(str(device))
    run_dir = find_run_dir(path)
    cfg = rundir.read_config(run_dir).cfg
    tok = load_tokenizer(run_dir / rundir.VOCAB_FILE)
    wpath = Path(weights) if weights is not None else run_dir / rundir.WEIGHTS_FILE
    model, _, step = load_checked_weights(run_dir, cfg, tok, wpath, device)
    return LoadedRun(run_dir, cfg, tok, model, step)


def load_checked_weights(run_dir: Path, cfg: RunConfig, tok: Tokenizer, wpath: Path,
                         device: str | torch.device = "cpu") -> tuple[GPT, dict[str, torch.Tensor], int]:
    """One weights file of the run (its final weights or a snapshot) -> (the model, E = 1 in eval mode, its
    tensors, its step), after every check load_run promises: the same for sample, evaluate, analyze and
    export, so weights of another run are refused in one line wherever they are read."""
    tensors, meta = ckpt.load_weights(wpath)
    wpe, wte = tensors.get("wpe"), tensors.get("wte")
    if wpe is None or wte is None or wpe.dim() != 2 or wte.dim() != 2:
        raise CheckpointError(f"{wpath}: missing the embedding tables")
    if wte.shape[0] != tok.vocab_size:
        raise CheckpointError(
            f"{wpath}: the weights have a vocabulary of {wte.shape[0]} tokens but vocab.json has {tok.vocab_size}"
        )
    # same-sized vocabularies ('+' and '/' runs) would load silently: the weights name the one they were trained
    # with (checkpoints written before they did are not checked), and the run's dataset manifest names its own
    trained = _vocab_of(meta.get("vocab"), wpath)
    if trained is not None and trained != tok:
        raise CheckpointError(f"{run_dir}: vocab.json ({tok._describe()}) is not the vocabulary the weights in "
                              f"{wpath.name} were trained with ({trained._describe()})")
    if cfg.data.text_file is None and tok.kind != cfg.data.tokenizer:
        raise CheckpointError(f"{run_dir}: vocab.json holds a {tok.kind!r} vocabulary but the run's config says "
                              f"tokenizer = {cfg.data.tokenizer!r}: the weights and vocab.json come from another run")
    expected = _data_vocab(cfg, run_dir)
    if expected is not None and expected != tok:
        raise CheckpointError(f"{run_dir}: vocab.json ({tok._describe()}) does not match the run's data "
                              f"({expected._describe()}): the weights and vocab.json come from another run")
    mcfg = dataclasses.replace(cfg.model, block_size=wpe.shape[0])
    rundir.check_model(meta.get("model"), mcfg, wpath)
    if not ckpt.all_finite(tensors):
        raise CheckpointError(f"{wpath}: the weights are not finite (NaN or inf); the run diverged before they "
                              "were saved")
    model = GPT(mcfg, tok.vocab_size, 1, device)
    try:
        model.load_member_state(0, tensors)
    except ValueError as exc:
        raise CheckpointError(f"{wpath}: {exc}") from None
    model.training = False
    step = meta.get("step", 0)
    return model, tensors, step if isinstance(step, int) and not isinstance(step, bool) else 0


def _vocab_of(saved: object, where: Path) -> Tokenizer | None:
    if saved is None:
        return None
    try:
        return tokenizer_from_dict(saved)
    except TokenizerError as exc:
        raise CheckpointError(f"{where}: damaged vocabulary in the checkpoint metadata ({exc})") from None


def _data_vocab(cfg: RunConfig, run_dir: Path) -> Tokenizer | None:
    """The vocabulary the run's stored dataset manifest implies (None without one: a text, a folder without
    manifest.json); evaluate_split checks those against the data itself."""
    path = run_dir / rundir.DATA_DIR / "manifest.json"
    if cfg.data.text_file is not None or not path.is_file():
        return None
    manifest = read_manifest(path)
    return make_tokenizer(cfg.data.tokenizer, [o["symbol"] for o in manifest["ops"]], manifest["p"])

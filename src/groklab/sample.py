"""Load a run directory and generate: temperature, top-k, prompts, interactive mode, and split evaluation."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import torch

from groklab import checkpoint as ckpt
from groklab.config import RunConfig
from groklab.data import _read_manifest
from groklab.dataset import load_run_data, stored_data_config
from groklab.engine import evaluate
from groklab.errors import CheckpointError, GroklabError, TokenizerError
from groklab.examples import stack
from groklab.model import GPT
from groklab.tokenizer import Tokenizer, load_tokenizer, make_tokenizer, tokenizer_from_dict


@dataclass
class LoadedRun:
    run_dir: Path
    cfg: RunConfig
    tokenizer: Tokenizer
    model: GPT  # E = 1, in eval mode
    step: int

    def to_hf(self):
        """(transformers.GPT2LMHeadModel, its tokenizer) with this run's weights (pip install 'groklab[hf]')."""
        from groklab.export import to_hf

        return to_hf(self)

    def to_module(self):
        """This run as a plain torch.nn.Module (state_dict, hooks, .to, .eval): ids (B, T) -> logits (B, T, V)."""
        from groklab.export import to_module

        return to_module(self)


def load_run(path: str | Path, device: str | torch.device = "cpu") -> LoadedRun:
    """A run directory (or a file inside it) -> its config, vocabulary and final weights. Nothing is unpickled."""
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        raise GroklabError("device: --device cuda was asked for, but this torch build sees no CUDA GPU")
    run_dir = ckpt.find_run_dir(path)
    try:
        cfg = RunConfig.from_dict(ckpt.read_json(run_dir / ckpt.CONFIG_FILE)["config"])
    except (KeyError, TypeError, GroklabError) as exc:
        raise CheckpointError(f"{run_dir / ckpt.CONFIG_FILE}: not a groklab run config ({exc})") from None
    tok = load_tokenizer(run_dir / "vocab.json")
    weights, meta = ckpt.load_weights(run_dir / ckpt.WEIGHTS_FILE)
    wpe = weights.get("wpe")
    wte = weights.get("wte")
    if wpe is None or wte is None:
        raise CheckpointError(f"{run_dir / ckpt.WEIGHTS_FILE}: missing the embedding tables")
    if wte.shape[0] != tok.vocab_size:
        raise CheckpointError(
            f"{run_dir}: the weights have a vocabulary of {wte.shape[0]} tokens but vocab.json has {tok.vocab_size}"
        )
    # same-sized vocabularies ('+' and '/' runs) would load silently: the weights name the one they were trained
    # with (checkpoints written before they did are not checked), and the run's dataset manifest names its own
    trained = _vocab_of(meta.get("vocab"), run_dir / ckpt.WEIGHTS_FILE)
    if trained is not None and trained != tok:
        raise CheckpointError(f"{run_dir}: vocab.json ({tok._describe()}) is not the vocabulary the weights in "
                              f"{ckpt.WEIGHTS_FILE} were trained with ({trained._describe()})")
    if cfg.data.text_file is None and tok.kind != cfg.data.tokenizer:
        raise CheckpointError(f"{run_dir}: vocab.json holds a {tok.kind!r} vocabulary but the run's config says "
                              f"tokenizer = {cfg.data.tokenizer!r}: the weights and vocab.json come from another run")
    expected = _data_vocab(cfg, run_dir)
    if expected is not None and expected != tok:
        raise CheckpointError(f"{run_dir}: vocab.json ({tok._describe()}) does not match the run's data "
                              f"({expected._describe()}): the weights and vocab.json come from another run")
    mcfg = dataclasses.replace(cfg.model, block_size=wpe.shape[0])
    model = GPT(mcfg, tok.vocab_size, 1, device)
    try:
        model.load_member_state(0, weights)
    except ValueError as exc:
        raise CheckpointError(f"{run_dir / ckpt.WEIGHTS_FILE}: {exc}") from None
    model.training = False
    return LoadedRun(run_dir, cfg, tok, model, int(meta.get("step", 0)))


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
    path = run_dir / "data" / "manifest.json"
    if cfg.data.text_file is not None or not path.is_file():
        return None
    manifest = _read_manifest(path)
    return make_tokenizer(cfg.data.tokenizer, [o["symbol"] for o in manifest["ops"]], manifest["p"])


@torch.no_grad()
def generate(
    model: GPT,
    ids: list[int],
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
    stop_id: int | None = None,
) -> list[int]:
    """Continue `ids` by up to max_new_tokens tokens. temperature 0 is greedy; top_k keeps the k likeliest."""
    if not ids:
        raise GroklabError("the prompt is empty: give at least one character")
    if not temperature >= 0:  # also catches NaN
        raise GroklabError(f"temperature must be >= 0, got {temperature}")
    if top_k is not None and top_k < 1:
        raise GroklabError(f"top_k must be at least 1, got {top_k}")
    out = list(ids)
    block = model.cfg.block_size
    for _ in range(max_new_tokens):
        ctx = torch.tensor(out[-block:], device=model.device)[None, None, :]  # (E=1, B=1, T)
        logits = model(ctx)[0, 0, -1]  # (V,)
        if temperature == 0:
            nxt = int(logits.argmax())
        else:
            # from the maximum down, in float64: a tiny temperature (1e-300 is 0 in float32) then sends the
            # others to -inf and keeps the maximum at 0, where logits / T would give inf - inf = NaN
            logits = (logits.double() - logits.max()) / temperature
            if top_k is not None and top_k < logits.numel():
                kth = torch.topk(logits, top_k).values[-1]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            probs = torch.softmax(logits.float().cpu(), dim=-1)
            nxt = int(torch.multinomial(probs, 1, generator=generator))
        out.append(nxt)
        if stop_id is not None and nxt == stop_id:
            break
    return out


def complete(run: LoadedRun, prompt: str, max_new_tokens: int, temperature: float, top_k: int | None,
             generator: torch.Generator | None, stop_at_newline: bool = False) -> str:
    """The prompt followed by its generated continuation, as text."""
    ids = run.tokenizer.encode(prompt)
    stop = None
    if stop_at_newline:
        try:
            stop = run.tokenizer.encode("\n")[0]
        except TokenizerError:
            stop = None
    return run.tokenizer.decode(generate(run.model, ids, max_new_tokens, temperature, top_k, generator, stop))


def interactive(run: LoadedRun, max_new_tokens: int, temperature: float, top_k: int | None,
                generator: torch.Generator | None, read: Callable[[str], str] = input,
                write: Callable[[str], None] = print) -> None:
    """A prompt loop: each line is completed; a bad prompt gets a message and the loop goes on; EOF or
    'quit' ends it."""
    write(f"groklab interactive · {run.run_dir} (step {run.step:,}) · empty line or Ctrl-D to quit")
    while True:
        try:
            prompt = read("prompt> ")
        except (EOFError, KeyboardInterrupt):
            write("")
            return
        if prompt.strip() in ("", "quit", "exit"):
            return
        try:
            write(complete(run, prompt, max_new_tokens, temperature, top_k, generator))
        except GroklabError as exc:
            write(f"error: {exc}")


def evaluate_split(run: LoadedRun, split: str) -> dict:
    """Exact-match accuracy and mean answer-token loss of the run's weights on one of its stored splits."""
    dcfg = stored_data_config(run.cfg.data, run.run_dir)
    mcfg = dataclasses.replace(run.cfg.model, block_size=run.model.cfg.block_size)
    data = load_run_data(dcfg, mcfg)
    if data.tokenizer != run.tokenizer:  # ids from another vocabulary would be read as the wrong tokens
        raise CheckpointError(f"{run.run_dir}: vocab.json ({run.tokenizer._describe()}) does not match the run's "
                              f"data ({data.tokenizer._describe()}): the weights and vocab.json come from another run")
    examples = data.scored.get(split)
    if examples is None or len(examples) == 0:
        raise GroklabError(f"{run.run_dir}: the run has no {split!r} split")
    loss, acc = evaluate(run.model, stack([examples], mcfg.block_size))
    return {"split": split, "examples": len(examples), "accuracy": float(acc[0]), "loss": float(loss[0]),
            "step": run.step, "run_dir": str(run.run_dir)}


def prompts_from(args: Iterable[str]) -> list[str]:
    """--prompts "30/74=,5/3=" or several values; commas separate prompts (equations contain none)."""
    out: list[str] = []
    for a in args:
        out.extend(p for p in a.split(",") if p != "")
    return out

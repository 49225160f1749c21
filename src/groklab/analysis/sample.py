"""Generate from a loaded run (temperature, top-k, prompts, interactive mode) and evaluate it on its splits."""

from __future__ import annotations

import dataclasses
from typing import Callable, Iterable

import torch

from groklab.data.dataset import load_run_data
from groklab.engine.evaluate import evaluate
from groklab.errors import CheckpointError, GroklabError, TokenizerError
from groklab.data.examples import stack
from groklab.store.loadrun import LoadedRun
from groklab.model.gpt import GPT
from groklab.store.rundir import stored_data_config


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
                write: Callable[[str], None] = print, equations: bool = True) -> None:
    """A prompt loop: each line is completed (an equation up to its end-of-line token, as `sample` does, and
    written without it); a bad prompt gets a message and the loop goes on; EOF or 'quit' ends it."""
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
            write(complete(run, prompt, max_new_tokens, temperature, top_k, generator, equations).rstrip("\n"))
        except GroklabError as exc:
            write(f"error: {exc}")


def evaluate_split(run: LoadedRun, split: str) -> dict:
    """Exact-match accuracy and mean answer-token loss of the run's weights on one of its stored splits."""
    dcfg = stored_data_config(run.cfg, run.run_dir).data
    mcfg = dataclasses.replace(run.cfg.model, block_size=run.model.cfg.block_size)
    data = load_run_data(dcfg, mcfg)
    if data.tokenizer != run.tokenizer:  # ids from another vocabulary would be read as the wrong tokens
        raise CheckpointError(f"{run.run_dir}: vocab.json ({run.tokenizer._describe()}) does not match the run's "
                              f"data ({data.tokenizer._describe()}): the weights and vocab.json come from another run")
    examples = data.scored.get(split)
    if examples is None or len(examples) == 0:
        raise GroklabError(f"{run.run_dir}: the run has no {split!r} split")
    loss, acc, token_acc = evaluate(run.model, stack([examples], mcfg.block_size))
    return {"split": split, "examples": len(examples), "accuracy": float(acc[0]),
            "token_accuracy": float(token_acc[0]), "loss": float(loss[0]),
            "step": run.step, "run_dir": str(run.run_dir)}


def prompts_from(args: Iterable[str]) -> list[str]:
    """--prompts "30/74=,5/3=" or several values; commas separate prompts (equations contain none)."""
    out: list[str] = []
    for a in args:
        out.extend(p for p in a.split(",") if p != "")
    return out

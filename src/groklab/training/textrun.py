"""The measures that fit a run on a text to memorise (seed 003's sanity run: "I love machine learning").

A text has no held-out part: its val split is the text itself, so "grokked" / "did not grok" would be a
verdict on nothing, and none is given. Exact match over its 1-stride windows is a poor measure too: a window
that starts at an ambiguous character (the 'e' of "love " and of "learning") can never be all right, so it
caps below 1 even for a model that has the text by heart. What fits:
- per-token accuracy (every evaluation row has it: `train_token_acc`);
- the greedy reconstruction: from the text's first character, greedy decoding with the run's context window
  (what `groklab sample RUN --prompt I --temperature 0 --max_new_tokens N` prints) — does it give the text?

Shape legend: E runs, T time.
"""

from __future__ import annotations

from typing import Sequence

import torch

from groklab.model.gpt import GPT
from groklab.data.tokenizer import Tokenizer

TEXT_TASK = "text"
NO_VERDICT = "not applicable: a text to memorise has no held-out data (its val split is the text itself)"


@torch.no_grad()
def greedy_reconstructions(model: GPT, tokenizers: Sequence[Tokenizer], texts: Sequence[str | None]) -> list[dict | None]:
    """For each run of the group with a text: greedy decoding from its first token, as many tokens as the text
    has, each step seeing at most the last block_size tokens. All runs step together (E, 1, T); a run without a
    text (None) gets None."""
    ids = [tok.encode(t) if t is not None else [0] for tok, t in zip(tokenizers, texts)]
    n = max(len(i) for i in ids)
    out = [[i[0]] for i in ids]
    was_training = model.training
    model.training = False
    block = model.cfg.block_size
    for _ in range(n - 1):
        ctx = torch.tensor([o[-block:] for o in out], device=model.device)[:, None, :]  # (E, 1, T)
        nxt = model(ctx)[:, 0, -1].argmax(-1).tolist()  # host sync, once a token: texts here are short
        for o, t in zip(out, nxt):
            o.append(t)
    model.training = was_training
    results: list[dict | None] = []
    for tok, text, want, got in zip(tokenizers, texts, ids, out):
        if text is None:
            results.append(None)
            continue
        got = got[: len(want)]
        first = next((i for i, (a, b) in enumerate(zip(want, got)) if a != b), None)
        # first_difference: the 0-based index of the first wrong token (None: the whole text came back)
        results.append({"text": tok.decode(got), "reproduces_text": first is None, "first_difference": first,
                        "characters": len(want)})
    return results


def text_summary(reconstruction: dict) -> dict:
    """What a text run's summary.json says instead of a grokking verdict."""
    return {"task": TEXT_TASK, "steps_to_grok": None, "steps_to_grok_first": None, "steps_to_grok_held": None,
            "grokking_delay": None, "grokking_ratio": None,
            "grokking": NO_VERDICT, "reconstruction": reconstruction}


def describe(summary: dict) -> str:
    """The end-of-run line's middle part for a text run: per-token accuracy and the reconstruction."""
    final, rec = summary["final"], summary["reconstruction"]
    acc = final.get("train_token_acc")
    if rec["reproduces_text"]:
        got = f"greedy decoding from its first character reproduces all {rec['characters']} characters"
    else:
        got = (f"greedy decoding from its first character departs from it at character {rec['first_difference'] + 1}"
               f" of {rec['characters']}")
    return (f"memorising a text · per-token accuracy {acc:.4f} · {got}" if acc is not None else got)

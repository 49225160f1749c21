"""`groklab analyze RUN`: progress measures of what a model learned (Nanda et al. 2023, "Progress measures for
grokking via mechanistic interpretability").

- The Fourier spectrum of the token embeddings over the numbers 0..p-1: a model that grokked modular
  arithmetic uses a few key frequencies k (w_k = 2*pi*k/p) and ignores the rest.
- The total weight norm over training (weight decay shrinks it as the memorising solution is replaced).
- For modular addition, the restricted and excluded loss on the train split: the loss with the logits kept
  to, or stripped of, their components along cos(w_k (a + b - c)) for the key frequencies. Excluded loss
  rising while train loss stays low shows the generalising circuit forming before test accuracy moves.

Over training: from the weight snapshots the run kept (`--snapshots_per_decade`), and the final weights.
It needs one token per number (`--tokenizer number`): with characters there is no embedding per number.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path

import torch
import torch.nn.functional as F

from groklab import checkpoint as ckpt
from groklab import rundir
from groklab.loadrun import find_run_dir
from groklab.config import RunConfig
from groklab.data import parse_equation, read_equation_file
from groklab.errors import GroklabError
from groklab.files import write_json
from groklab.model import GPT
from groklab.plots import SERIES_COLORS as PALETTE, STEP_LABEL, new_figure, save_figure
from groklab.tokenizer import NumberTokenizer, load_tokenizer

SNAPSHOT_DIR, ANALYSIS_FILE = rundir.SNAPSHOT_DIR, rundir.ANALYSIS_FILE


def fourier_norms(emb: torch.Tensor) -> torch.Tensor:
    """Embeddings (p, d) of the numbers 0..p-1 -> the norm of each frequency k = 0..p//2 of the discrete
    Fourier transform along the number axis (cosine and sine parts together)."""
    return torch.fft.rfft(emb.double(), dim=0).abs().pow(2).sum(1).sqrt().float()


def key_frequencies(norms: torch.Tensor, max_keys: int = 8) -> list[int]:
    """The frequencies (k >= 1) that stand out, strongest first: at least a quarter of the strongest one's
    norm and three times the median (the noise floor of the unused frequencies); at most `max_keys`."""
    rest = norms[1:]
    cut = max(0.25 * float(rest.max()), 3 * float(rest.median()))
    order = torch.argsort(rest, descending=True)
    keys = [int(i) + 1 for i in order if rest[i] >= cut][:max_keys]
    return keys or [int(order[0]) + 1]


def _cos_directions(p: int, keys: list[int]) -> torch.Tensor:
    """(K, p, p, p) unit vectors over c of cos(w_k (a + b - c)), for each (a, b)."""
    n = torch.arange(p, dtype=torch.float64)
    s = (n[:, None] + n[None, :])[..., None]  # a + b
    w = torch.tensor([2 * math.pi * k / p for k in keys], dtype=torch.float64)[:, None, None, None]
    u = torch.cos(w * (s[None] - n[None, None, None, :]))
    return u / u.norm(dim=-1, keepdim=True)


def restricted_excluded(logits: torch.Tensor, keys: list[int], pairs: torch.Tensor) -> dict[str, float]:
    """Logits (p, p, p) over [a, b, c] for addition mod p; `pairs` (n, 2) the (a, b) of the train split.
    Full, restricted (constant + key cos(w_k (a+b-c)) components only) and excluded (those removed) loss."""
    p = logits.shape[0]
    x = logits.double()
    u = _cos_directions(p, keys)
    coef = (x[None] * u).sum(-1, keepdim=True)  # (K, p, p, 1)
    along = (coef * u).sum(0)  # the key-frequency part of each logit vector
    restricted = x.mean(-1, keepdim=True) + along
    excluded = x - along
    a, b = pairs[:, 0], pairs[:, 1]
    target = (a + b) % p

    def loss(z: torch.Tensor) -> float:
        return float(F.cross_entropy(z[a, b], target))

    return {"loss": loss(x), "restricted_loss": loss(restricted), "excluded_loss": loss(excluded)}


@torch.no_grad()
def answer_logits(model: GPT, tok: NumberTokenizer, symbol: str) -> torch.Tensor:
    """(p, p, p): the logits over the numbers c at the '=' of every equation 'a<op>b=' (a, b < p)."""
    p = tok.p
    ids = torch.tensor([tok.encode(f"{a}{symbol}{b}=") for a in range(p) for b in range(p)])
    out = []
    for chunk in ids.split(4096):
        out.append(model(chunk[None])[0, :, -1, :p])
    return torch.cat(out).view(p, p, p)


def _snapshots(run_dir: Path) -> list[tuple[int, Path]]:
    found = []
    for path in (run_dir / SNAPSHOT_DIR).glob("step_*.safetensors"):
        m = re.fullmatch(r"step_(\d+)\.safetensors", path.name)
        if m:
            found.append((int(m.group(1)), path))
    final = run_dir / rundir.WEIGHTS_FILE
    if final.exists():
        step = int(ckpt.load_weights(final)[1].get("step", 0))
        if step not in {s for s, _ in found}:
            found.append((step, final))
    return sorted(found)


def _train_pairs(run_dir: Path, symbol: str) -> torch.Tensor:
    """(a, b) of the run's train equations with this operation, read back as the run stored them."""
    equations = [parse_equation(line) for line in read_equation_file(run_dir / rundir.DATA_DIR / "train.txt")]
    return torch.tensor([(a, b) for a, op, b, _ in equations if op == symbol], dtype=torch.long).view(-1, 2)


def analyze(path: str | Path) -> dict:
    """Compute the measures over the run's snapshots, write analysis.json and the plots beside the run."""
    run_dir = find_run_dir(path)
    cfg = rundir.read_config(run_dir).cfg
    tok = load_tokenizer(run_dir / rundir.VOCAB_FILE)
    if not isinstance(tok, NumberTokenizer):
        raise GroklabError(f"{run_dir}: analyze needs one token per number (the run used the {tok.kind} "
                           "tokenizer); train with --tokenizer number")
    p = tok.p
    ops = [s for s in tok.symbols if s not in "=\n"]
    snaps = _snapshots(run_dir)
    if not snaps:
        raise GroklabError(f"{run_dir}: no weights to analyse")
    addition = ops == ["+"]
    pairs = _train_pairs(run_dir, "+") if addition else None

    def load(path: Path) -> tuple[GPT, dict[str, torch.Tensor]]:
        weights, _ = ckpt.load_weights(path)
        model = GPT(dataclasses.replace(cfg.model, block_size=weights["wpe"].shape[0]), tok.vocab_size, 1)
        model.load_member_state(0, weights)
        model.training = False
        return model, weights

    _, final_weights = load(snaps[-1][1])
    norms = fourier_norms(final_weights["wte"][:p])
    keys = key_frequencies(norms)
    rows = []
    for step, snap in snaps:
        model, weights = load(snap)
        row = {"step": step, "weight_norm": float(torch.sqrt(sum((w.double() ** 2).sum() for w in weights.values())))}
        spectrum = fourier_norms(weights["wte"][:p])
        row["key_frequency_share"] = float(spectrum[keys].pow(2).sum() / spectrum[1:].pow(2).sum())
        if addition and len(pairs):
            row.update(restricted_excluded(answer_logits(model, tok, "+"), keys, pairs))
        rows.append(row)
    result = {"run_dir": str(run_dir), "p": p, "operations": ops, "key_frequencies": keys,
              "fourier_norms": [round(float(x), 6) for x in norms], "over_training": rows,
              "restricted_excluded": "computed" if addition else "only for modular addition ('+')"}
    write_json(run_dir / ANALYSIS_FILE, result)
    metrics = rundir.read_metrics(run_dir)
    result["plots"] = [str(x) for x in _plot(result, metrics, run_dir)]
    return result


def _plot(result: dict, metrics: list[dict], run_dir: Path) -> list[Path]:
    norms, keys = result["fourier_norms"], result["key_frequencies"]
    fig = new_figure(figsize=(8, 3.2))
    ax = fig.subplots()
    colors = [PALETTE[1] if k in keys else PALETTE[0] for k in range(len(norms))]
    ax.bar(range(1, len(norms)), norms[1:], color=colors[1:], width=0.8)
    ax.set_xlabel(f"frequency k (w = 2πk/{result['p']})")
    ax.set_ylabel("embedding norm at k")
    ax.set_title("Fourier spectrum of the number embeddings (key frequencies highlighted: "
                 + ", ".join(map(str, keys)) + ")", fontsize=9)
    fig.tight_layout()
    spectrum = save_figure(fig, rundir.analysis_outputs(run_dir)[1][0], dpi=120)

    rows = result["over_training"]
    steps = [r["step"] for r in rows]
    fig = new_figure(figsize=(8, 6))
    top, bottom = fig.subplots(2, 1, sharex=True)
    if metrics:
        top.plot([m["step"] for m in metrics], [m["train_loss"] for m in metrics], color=PALETTE[0], label="train loss")
        test = [m for m in metrics if m.get("test_loss") is not None] or [m for m in metrics if m.get("val_loss")]
        key = "test_loss" if test and test[0].get("test_loss") is not None else "val_loss"
        top.plot([m["step"] for m in test], [m[key] for m in test], color=PALETTE[1], ls="--",
                 label=key.replace("_", " "))
    if rows and "restricted_loss" in rows[0]:
        top.plot(steps, [r["restricted_loss"] for r in rows], "o-", color=PALETTE[2], label="restricted loss (train)")
        top.plot(steps, [r["excluded_loss"] for r in rows], "s-", color=PALETTE[3], label="excluded loss (train)")
    top.set_yscale("log")
    top.set_ylabel("cross-entropy (nats)")
    top.legend(fontsize=8)
    bottom.plot(steps, [r["weight_norm"] for r in rows], "o-", color=PALETTE[4], label="total weight norm")
    bottom.set_ylabel("L2 norm of all weights")
    twin = bottom.twinx()
    twin.plot(steps, [r["key_frequency_share"] for r in rows], "^--", color=PALETTE[5],
              label="key-frequency share of embedding")
    twin.set_ylabel("share of embedding power")
    twin.set_ylim(0, 1)
    bottom.set_xscale("log")
    bottom.set_xlabel(STEP_LABEL)
    bottom.legend(loc="upper left", fontsize=8)
    twin.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return [spectrum, save_figure(fig, rundir.analysis_outputs(run_dir)[1][1], dpi=120)]

"""`groklab analyze RUN`: progress measures of what a model learned (Nanda et al. 2023, "Progress measures for
grokking via mechanistic interpretability"), for whichever measures apply to the run's operations
(`groklab.analysis.progress` says which and why):

- the total weight norm over training (every operation: weight decay shrinks it as the memorising solution is
  replaced);
- for `+` and `-` over Z_p, and for `*` and `/` over the discrete logarithms (p prime): the Fourier spectrum of
  the number embeddings with the key frequencies it uses, their share of the embedding over training, and the
  restricted and excluded loss on the train split;
- for the other operations (polynomials, permutations): the weight norm only, and a line saying so.

Over training: from the weight snapshots the run kept (`--snapshots_per_decade`, `--snapshot_interval`), and
the final weights. It needs one token per number (`--tokenizer number`): with characters there is no
embedding per number.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import torch

from groklab.store import checkpoint as ckpt
from groklab.store import rundir
from groklab.store.loadrun import find_run_dir, load_checked_weights
from groklab.data.parse import parse_equation, read_equation_file
from groklab.errors import GroklabError
from groklab.files import write_json
from groklab.model.gpt import GPT
from groklab.data.ops import OPERATIONS
from groklab.analysis.phases import phases, plot_phases
from groklab.plots import SERIES_COLORS as PALETTE, STEP_LABEL, new_figure, save_figure
from groklab.analysis.progress import (MAX_ELEMENTS, Basis, fourier_norms, key_frequencies, key_share, measures_for,
                              restricted_excluded_loss, spectrum)
from groklab.data.tokenizer import NumberTokenizer, load_tokenizer

SNAPSHOT_DIR, ANALYSIS_FILE = rundir.SNAPSHOT_DIR, rundir.ANALYSIS_FILE
PHASES_FILE = rundir.ANALYSIS_PLOTS[2]
__all__ = ["analyze", "fourier_norms", "key_frequencies", "restricted_excluded"]


def restricted_excluded(logits: torch.Tensor, keys: list[int], pairs: torch.Tensor, symbol: str = "+") -> dict[str, float]:
    """Logits (p, p, p) over [a, b, c]; `pairs` (n, 2) the (a, b) of the train split: full, restricted and
    excluded loss (groklab.analysis.progress.restricted_excluded_loss on a tensor already in memory)."""
    return restricted_excluded_loss(lambda pr: logits[pr[:, 0], pr[:, 1]], symbol, logits.shape[-1], keys, pairs)


def logits_of(model: GPT, tok: NumberTokenizer, symbol: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """pairs (n, 2) -> (n, p) on the CPU: the logits over the numbers c at the '=' of 'a<op>b=' (the last block
    computes that one position only; the model may sit on a GPU)."""
    sym, eq = tok.encode(symbol)[0], tok.encode("=")[0]

    @torch.no_grad()
    def fn(pairs: torch.Tensor) -> torch.Tensor:
        n = len(pairs)
        ids = torch.stack([pairs[:, 0], torch.full((n,), sym), pairs[:, 1], torch.full((n,), eq)], dim=1)
        ids, at = ids[None].to(model.device), torch.full((1, n, 1), 3, device=model.device)
        return model(ids, at)[0, :, 0, : tok.p].cpu()  # host sync

    return fn


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


def _loss_key(symbol: str, name: str, several: bool) -> str:
    return f"{OPERATIONS[symbol].name}_{name}" if several else name


def analyze(path: str | Path, max_elements: int = MAX_ELEMENTS, device: str | torch.device = "cpu") -> dict:
    """Compute the measures that apply over the run's snapshots, write analysis.json and the plots beside the
    run. `max_elements` bounds the largest tensor the restricted/excluded loss makes (memory, not p^3);
    `device`: where the model computes its logits (the measures themselves are computed on the CPU)."""
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
    measured = {s: measures_for(s, p) for s in ops}
    bases: dict[str, Basis] = {}
    for basis, _ in measured.values():
        if basis is not None:
            bases.setdefault(basis.name, basis)
    fourier_ops = [s for s in ops if measured[s][0] is not None]
    pairs = {s: _train_pairs(run_dir, s) for s in fourier_ops}

    def load(path: Path) -> tuple[GPT, dict[str, torch.Tensor]]:
        # load_run's checks for every file (final and snapshots): weights of another run are refused in one line
        model, weights, _ = load_checked_weights(run_dir, cfg, tok, path, device)
        return model, weights

    _, final_weights = load(snaps[-1][1])
    spectra = {name: spectrum(final_weights["wte"][:p], b) for name, b in bases.items()}
    keys = {name: key_frequencies(norms) for name, norms in spectra.items()}
    primary = next(iter(bases), None)
    rows = []
    for step, snap in snaps:
        model, weights = load(snap)
        row = {"step": step, "weight_norm": float(torch.sqrt(sum((w.double() ** 2).sum() for w in weights.values())))}
        for name, b in bases.items():
            norms = spectrum(weights["wte"][:p], b)
            row["key_frequency_share" if name == primary else f"key_frequency_share_{name}"] = key_share(norms, keys[name])
            if name == primary:
                row["fourier_norms"] = [round(float(x), 5) for x in norms]
        for s in fourier_ops:
            if len(pairs[s]):
                losses = restricted_excluded_loss(logits_of(model, tok, s), s, p, keys[measured[s][0].name],
                                                  pairs[s], max_elements)
                row.update({_loss_key(s, k, len(fourier_ops) > 1): v for k, v in losses.items() if k != "pairs"})
        rows.append(row)
    result = {"run_dir": str(run_dir), "p": p, "operations": ops, "measures": [line for _, line in measured.values()],
              "basis": primary, "key_frequencies": keys.get(primary, []),
              "fourier_norms": [round(float(x), 6) for x in spectra[primary]] if primary else [],
              "bases": {name: {"describe": b.describe(), "order": b.order, "generator": b.generator,
                               "key_frequencies": keys[name], "fourier_norms": [round(float(x), 6) for x in spectra[name]]}
                        for name, b in bases.items()},
              "over_training": rows,
              "restricted_excluded": ("computed for " + ", ".join(OPERATIONS[s].label() for s in fourier_ops)
                                      if fourier_ops else "not defined for " + ", ".join(OPERATIONS[s].label() for s in ops))}
    metrics = rundir.read_metrics(run_dir)
    if metrics:  # the three phases (groklab.analysis.phases says how each boundary is found)
        result["phases"] = phases(metrics, rows)
    write_json(run_dir / ANALYSIS_FILE, result)
    result["plots"] = [str(x) for x in _plot(result, metrics, run_dir)]
    if metrics:
        result["plots"].append(str(plot_phases(metrics, result, result["phases"], run_dir / PHASES_FILE,
                                               f"{run_dir.name}: the phases of grokking")))
    return result


def _plot(result: dict, metrics: list[dict], run_dir: Path) -> list[Path]:
    out = []
    norms, keys = result["fourier_norms"], result["key_frequencies"]
    if norms:
        fig = new_figure(figsize=(8, 3.2))
        ax = fig.subplots()
        colors = [PALETTE[1] if k in keys else PALETTE[0] for k in range(len(norms))]
        ax.bar(range(1, len(norms)), norms[1:], color=colors[1:], width=0.8)
        ax.set_xlabel(f"frequency k over {result['bases'][result['basis']]['describe']}")
        ax.set_ylabel("embedding norm at k")
        ax.set_title("Fourier spectrum of the number embeddings (key frequencies highlighted: "
                     + ", ".join(map(str, keys)) + ")", fontsize=9)
        fig.tight_layout()
        out.append(save_figure(fig, rundir.analysis_outputs(run_dir)[1][0], dpi=120))

    rows = result["over_training"]
    steps = [r["step"] for r in rows]
    fig = new_figure(figsize=(8, 6))
    top, bottom = fig.subplots(2, 1, sharex=True)
    if metrics:
        top.plot([m["step"] for m in metrics], [m["train_loss"] for m in metrics], color=PALETTE[0], label="train loss")
        for key, ls in (("val_loss", "--"), ("test_loss", ":")):  # val: the split grokking is read from
            held = [m for m in metrics if m.get(key) is not None]
            if held:
                top.plot([m["step"] for m in held], [m[key] for m in held], color=PALETTE[1], ls=ls,
                         label=key.replace("_", " "))
    for i, k in enumerate(k for k in (rows[0] if rows else {}) if k.endswith("restricted_loss")):
        prefix = k.removesuffix("restricted_loss")
        what = f" ({prefix.rstrip('_')})" if prefix else ""
        top.plot(steps, [r[k] for r in rows], "o-", color=PALETTE[2 + 2 * i % 4], label=f"restricted loss{what} (train)")
        top.plot(steps, [r[prefix + "excluded_loss"] for r in rows], "s-", color=PALETTE[3 + 2 * i % 4],
                 label=f"excluded loss{what} (train)")
    top.set_yscale("log")
    top.set_ylabel("cross-entropy (nats)")
    top.set_title("; ".join(result["measures"]), fontsize=7)
    top.legend(fontsize=8)
    bottom.plot(steps, [r["weight_norm"] for r in rows], "o-", color=PALETTE[4], label="total weight norm")
    bottom.set_ylabel("L2 norm of all weights")
    if rows and "key_frequency_share" in rows[0]:
        twin = bottom.twinx()
        twin.plot(steps, [r["key_frequency_share"] for r in rows], "^--", color=PALETTE[5],
                  label="key-frequency share of embedding")
        twin.set_ylabel("share of embedding power")
        twin.set_ylim(0, 1)
        twin.legend(loc="upper right", fontsize=8)
    bottom.set_xscale("log")
    bottom.set_xlabel(STEP_LABEL)
    bottom.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return [*out, save_figure(fig, rundir.analysis_outputs(run_dir)[1][1], dpi=120)]

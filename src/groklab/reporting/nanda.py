"""`groklab reproduce nanda`: Nanda et al. 2023's modular addition study, its tables and figures.

Every finished run is analysed (`groklab analyze`: restricted and excluded loss, the key frequencies, the
three phases, `analysis_phases.png` in its folder); the tables set the grokking epoch (the first evaluation
with test loss below 0.01) and the number of key frequencies beside the paper's, and `nanda_fractions.png`
draws every run's test loss with the paper's grokking epochs marked.

What differs from the paper's code, and why (also in docs/benchmarks.md):
- the input is `a + b =`, theirs `a b =`: groklab keeps one equation format for every task; in a one-operation
  run the operator token is the same in every example, so it adds a constant to the residual stream at one
  position and nothing the model could use to tell equations apart;
- the head also scores the symbols (`+`, `=`, end of line: p + 3 outputs, theirs p + 1); with the loss on the
  answer only, their logits are pushed down like any wrong number's;
- the warm-up's first update uses lr/10 (theirs: 0, LambdaLR before its first step).
Their train split for seed 0 is ours for data_seed 0, pair for pair (the same shuffle of the same list).
"""

from __future__ import annotations

import statistics
from pathlib import Path

import torch

from groklab.store import rundir
from groklab.analysis.analyze import ANALYSIS_FILE, analyze
from groklab.errors import CheckpointError
from groklab.files import read_json
from groklab.analysis.phases import GROK_LOSS
from groklab.plots import SERIES_COLORS, new_figure, save_figure
from groklab.store.sweepdir import collect
from groklab.tables import MISSING, md_table, steps

PAPER_GROK_EPOCHS = {0.5: 1_100, 0.4: 3_300, 0.3: 8_300, 0.25: 22_000}  # test loss < 0.01 (their figure)
PAPER_KEY_FREQUENCIES = 5  # about five (their main run: 14, 35, 41, 42, 52)
FIGURE = "nanda_fractions.png"


def _analysis(run_dir: Path, device: str) -> dict:
    """The run's analysis.json, (re)computed when missing or older than its final weights."""
    out, weights = run_dir / ANALYSIS_FILE, run_dir / rundir.WEIGHTS_FILE
    if out.exists() and out.stat().st_mtime >= weights.stat().st_mtime:
        return read_json(out, CheckpointError, "an analysis")
    return analyze(run_dir, device=device)


def _median(values: list[int]) -> str:
    return f"{statistics.median(values):,.0f}" if values else MISSING


def plot_fractions(curves: dict[float, list[list[dict]]], path: Path) -> Path:
    """Test (val) loss over epochs, every run of each train fraction, the paper's grokking epochs dashed."""
    fig = new_figure(figsize=(9, 4.5), layout="constrained")
    ax = fig.subplots()
    for i, (fraction, runs) in enumerate(sorted(curves.items(), reverse=True)):
        color = SERIES_COLORS[(i + 1) % len(SERIES_COLORS)]
        for j, history in enumerate(runs):
            ax.plot([h["step"] for h in history], [max(h["val_loss"], 1e-9) for h in history], color=color,
                    lw=1, alpha=0.8, label=f"{fraction:.0%} train" if j == 0 else None)
        if fraction in PAPER_GROK_EPOCHS:
            ax.axvline(PAPER_GROK_EPOCHS[fraction], color=color, ls="--", lw=1)
    ax.axhline(GROK_LOSS, color="0.5", ls=":", lw=0.8)
    ax.set_yscale("log")
    ax.set_xlabel("optimizer steps (full batch: epochs)")
    ax.set_ylabel("test (val) loss (nats per answer, log scale)")
    ax.set_title("a+b mod 113: test loss of each run; dashed: the paper's grokking epoch (test loss < 0.01)")
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    return save_figure(fig, path, dpi=110)


def tables(folder: Path) -> str:
    """The study's tables (and, as a side effect, each run's analysis and the fractions figure)."""
    runs = [r for r in collect(folder)[0] if r["experiment"] == "fractions"]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    by_fraction: dict[float, list[tuple[dict, dict]]] = {}
    curves: dict[float, list[list[dict]]] = {}
    for r in runs:
        if r["status"] != "done":
            continue
        a = _analysis(Path(r["run_dir"]), device)
        by_fraction.setdefault(r["train_fraction"], []).append((r, a))
        curves.setdefault(r["train_fraction"], []).append(rundir.read_metrics(Path(r["run_dir"])))
    rows, detail = [], []
    for fraction in sorted(by_fraction, reverse=True):
        done = sorted(by_fraction[fraction], key=lambda x: x[0]["seed"])
        grok = [a["phases"]["grokked"] for _, a in done]
        stays = [a["phases"]["grokked_stays"] for _, a in done]
        keys = [len(a["key_frequencies"]) for _, a in done]
        rows.append([f"{fraction:.0%}", " / ".join(steps(g, "not grokked") for g in grok),
                     _median([g for g in grok if g is not None]), f"{PAPER_GROK_EPOCHS.get(fraction, MISSING):,}",
                     _median([s for s in stays if s is not None]), " / ".join(map(str, keys)),
                     f"~{PAPER_KEY_FREQUENCIES}"])
        for r, a in done:
            p = a["phases"]
            detail.append([f"{fraction:.0%}", str(r["seed"]), steps(p["memorised"], MISSING),
                           steps(p["circuit_formed"], MISSING), steps(p["grokked"], "not grokked"),
                           f"{r['final_val_loss']:.2e}" if r["final_val_loss"] is not None else MISSING,
                           ", ".join(map(str, a["key_frequencies"]))])
    if curves:
        plot_fractions(curves, folder / FIGURE)
    seeds = sorted({r["seed"] for r in runs})
    note = "" if all(r["status"] == "done" for r in runs) else \
        f"\n\n{sum(r['status'] != 'done' for r in runs)} run(s) not finished; they are left out."
    primes = ", ".join(str(p) for p in sorted({r["prime"] for r in runs})) or "113"
    return (f"### Grokking epoch and key frequencies (a+b mod {primes}, full batch)\n\n" + md_table(
        ["Train fraction", f"Grokking epoch, seeds {', '.join(map(str, seeds))} (test loss < 0.01)", "Median",
         "Nanda et al.", "Median epoch from which it stays < 0.01", "Key frequencies (count)", "Nanda et al."],
        rows) + "\n\n### The three phases of each run\n\n" + md_table(
        ["Train fraction", "Seed", "Memorisation ends", "Cleanup begins", "Grokked (test loss < 0.01)",
         "Final test loss", "Key frequencies"], detail)
        + "\n\nA step is an epoch (full batch). Test loss is the val split (everything not trained on but one "
          "equation of rounding). Phase boundaries as `groklab.analysis.phases` defines them: memorisation ends at the "
          "lowest excluded loss before grokking, cleanup begins when the test loss has fallen to a tenth of its "
          f"peak, grokked is the first test loss below {GROK_LOSS}. Each run's picture: `analysis_phases.png` in "
          f"its folder; all test-loss curves: `{FIGURE}`." + note)

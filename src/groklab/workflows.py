"""`groklab reproduce seed-000|seed-003|nanda`: a seed report's (or a paper's) whole study as one sweep, then its
tables.

The studies are ordinary sweep specs shipped with the package (`groklab/studies/*.toml`); the tables are
written from the results as Markdown (`tables.md` in the sweep folder), beside the numbers each report gave.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from groklab.reporting import nanda
from groklab.errors import GroklabError
from groklab.files import atomic_write
from groklab.data.ops import OPERATIONS
from groklab.engine.device import resolve_device
from groklab.reporting.report import write_report
from groklab.experiments.sweep import run_sweep
from groklab.experiments.spec import SweepSpec, parse_spec
from groklab.store.sweepdir import TABLES_FILE, SweepFolder, collect
from groklab.tables import md_table as _table, mean_std as _mean_std, num as _num, pct as _pct, steps as _steps

QUICK_DIVISOR = 50  # --quick: this many times fewer steps (seed 000: 2,000 instead of 100,000)

# What seed 000 reported (percentages as printed there; "train loss" was printed as a percentage too).
SEED000_ADDSUB = {  # (op, p, layers) -> {seed: (train loss, train acc, test acc)}
    ("+", 97, 1): {42: (0, 100, 99.04), 123: (0, 100, 99.36), 456: (0, 100, 99.07)},
    ("+", 113, 1): {42: (0, 100, 97.27), 123: (0, 100, 97.26), 456: (0, 100, 97.78)},
    ("-", 97, 1): {42: (0, 100, 97.08), 123: (0, 100, 91.92), 456: (0, 100, 97.15)},
    ("-", 113, 1): {42: (2, 100, 91.49), 123: (0, 100, 94.06), 456: (0, 100, 93.54)},
    ("+", 97, 2): {42: (0, 100, 99.78), 123: (0, 100, 99.96), 456: (0, 100, 99.78)},
    ("+", 113, 2): {42: (0, 100, 98.49), 123: (0, 100, 98.04), 456: (0, 100, 98.34)},
    ("-", 97, 2): {42: (0, 100, 99.2), 123: (0, 100, 99.31), 456: (0, 100, 99.64)},
    ("-", 113, 2): {42: (0, 100, 98.46), 123: (0, 100, 98.44), 456: (1.8, 100, 97.87)},
}
SEED000_BATCH = {  # batch size -> (steps to grok, final train loss, train acc %, test acc %)
    64: ("not grokking", 1.7755, 18.25, 17.06),
    128: ("~9000", 0.0191, 100.0, 97.85),
    256: ("~10000", 0.0032, 100.0, 99.24),
    512: ("~800", 0.0007, 100.0, 99.57),
}
SEED000_DIVISION = {"val_loss": 0.0972, "val_acc": 0.9913, "train_loss": 0.0160, "train_acc": 1.0}


def study_spec(name: str) -> SweepSpec:
    try:
        text = resources.files("groklab.experiments").joinpath("studies", f"{name}.toml").read_text(encoding="utf-8")
    except FileNotFoundError:
        raise GroklabError(f"no study {name!r}; choose one of: {', '.join(STUDIES)}") from None
    return parse_spec(text, f"{name}.toml")


def _runs(folder: Path, experiment: str) -> list[dict]:
    return [r for r in collect(folder)[0] if r["experiment"] == experiment]


def _status_note(runs: Sequence[dict]) -> str:
    unfinished = [r for r in runs if r["status"] != "done"]
    if not unfinished:
        return ""
    return ("\n\n" + f"{len(unfinished)} run(s) not finished: "
            + ", ".join(f"{r['run_id']} ({r['status']}" + (f": {r['failure']}" if r["failure"] else "") + ")"
                        for r in unfinished))


def _seed000_tables(folder: Path) -> str:
    out = []
    addsub = _runs(folder, "addsub")
    seeds = sorted({r["seed"] for r in addsub})
    for layers in sorted({r["n_layer"] for r in addsub}):
        rows = []
        for op in ("+", "-"):
            for p in (97, 113):
                cell = {r["seed"]: r for r in addsub if (r["operators"], r["prime"], r["n_layer"]) == (op, p, layers)}
                ref = SEED000_ADDSUB.get((op, p, layers), {})
                task = f"{OPERATIONS[op].title} p={p}"
                for metric, key, fmt, idx in (("Final train loss", "final_train_loss", _num, 0),
                                              ("Final train acc", "final_train_acc", _pct, 1),
                                              ("Final test acc", "final_test_acc", _pct, 2),
                                              ("Steps to grok (val ≥ 99%)", "steps_to_grok", _steps, None)):
                    vals = [fmt(cell[s][key]) if s in cell and cell[s]["status"] == "done" else "–" for s in seeds]
                    reported = " / ".join(
                        f"{ref[s][idx]:g}" + ("" if idx == 0 else "%") for s in seeds if s in ref
                    ) if idx is not None and ref else "–"
                    rows.append([task, metric, *vals, reported])
        out.append(f"### {layers}-layer model (add/sub, batch 64)\n\n"
                   + _table(["Task", "Metric", *(f"Seed {s}" for s in seeds), "Seed 000 reported (per seed)"], rows))
    out[-1] += _status_note(addsub)

    batch = _runs(folder, "batch")
    grok = [r for r in batch if r["batch_size"] == 512 and r["seed"] == 42]
    if grok:
        r = grok[0]
        out.append("### Division mod 97, batch 512, seed 42 (the grokking run)\n\n" + _table(
            ["Metric", "groklab", "Seed 000 reported"],
            [["Final val loss", _num(r["final_val_loss"]), _num(SEED000_DIVISION["val_loss"])],
             ["Final val acc", _pct(r["final_val_acc"]), _pct(SEED000_DIVISION["val_acc"])],
             ["Final train loss", _num(r["final_train_loss"]), _num(SEED000_DIVISION["train_loss"])],
             ["Final train acc", _pct(r["final_train_acc"]), _pct(SEED000_DIVISION["train_acc"])],
             ["Steps to memorise (train ≥ 99%)", _steps(r["steps_to_memorise"], "not memorised"), "–"],
             ["Steps to grok (val ≥ 99%)", _steps(r["steps_to_grok"]), "~800 (from the ablation table)"]]))
    rows = []
    for b in sorted({r["batch_size"] for r in batch}):
        runs = sorted((r for r in batch if r["batch_size"] == b and r["status"] == "done"), key=lambda r: r["seed"])
        ref = SEED000_BATCH.get(b, ("–", None, None, None))
        rows.append([str(b), " / ".join(_steps(r["steps_to_grok"]) for r in runs) or "–",
                     _mean_std([r["final_train_loss"] for r in runs], _num),
                     _mean_std([r["final_train_acc"] for r in runs], _pct),
                     _mean_std([r["final_test_acc"] for r in runs], _pct),
                     f"{ref[0]} · {_num(ref[1])} · {ref[2]}% · {ref[3]}%" if ref[1] is not None else "–"])
    seeds = sorted({r["seed"] for r in batch})
    out.append("### Batch-size ablation (division mod 97, 2 layers)\n\n" + _table(
        ["Batch size", f"Steps to grok (seeds {', '.join(map(str, seeds))})", "Final train loss",
         "Final train acc", "Final test acc", "Seed 000 reported (steps · loss · train · test)"], rows)
        + "\n\nFinal values are mean ± std over the seeds; steps to grok is the first evaluation from which "
          "val accuracy stays ≥ 99 % (seed 000 judged it by eye)." + _status_note(batch) + _division_note(batch))
    return "\n\n".join(out)


def _division_note(batch: list[dict]) -> str:
    """Where no character-level division run generalised: what groklab's sweeps of this task found."""
    done = [r for r in batch if r["status"] == "done"]
    if not done or any(r["tokenizer"] != "char" or r["steps_to_grok"] is not None for r in done):
        return ""
    return ("\n\nNo character-level run here generalised, nor did any of the 128 in groklab's sweeps of this task "
            "(docs/benchmarks.md, \"What the evidence says about seed 000's division\"). With one token per number "
            "the same recipe reproduces the report's batch-size pattern: `groklab reproduce seed-000 --tokenizer "
            "number`.")


def _seed003_tables(folder: Path) -> str:
    out = []
    addsub = _runs(folder, "addsub")
    rows = []
    for p in sorted({r["prime"] for r in addsub}):
        runs = sorted((r for r in addsub if r["prime"] == p and r["status"] == "done"), key=lambda r: r["seed"])
        for r in runs:
            rows.append([f"+/- p={p}", str(r["seed"]), _num(r["final_train_loss"]), _pct(r["final_train_acc"]),
                         _pct(r["final_val_acc"]), _pct(r["final_test_acc"]), _steps(r["steps_to_grok"])])
    out.append("### Mixed addition and subtraction, 5,000 random equations (40/40/20)\n\n" + _table(
        ["Task", "Seed", "Final train loss", "Final train acc", "Final val acc", "Final test acc",
         "Steps to grok (val ≥ 99%)"], rows)
        + "\n\nSeed 003 reported: final loss 0.0 and accuracy 1.0 across its three seeds." + _status_note(addsub))
    size = _runs(folder, "datasize")
    rows = []
    for n in sorted({r["num_samples"] for r in size}):
        runs = sorted((r for r in size if r["num_samples"] == n and r["status"] == "done"), key=lambda r: r["seed"])
        rows.append([f"{n:,}", f"{int(n * 0.4):,}", " / ".join(_steps(r["steps_to_grok"]) for r in runs) or "–",
                     _mean_std([r["final_train_acc"] for r in runs], _pct),
                     _mean_std([r["final_val_acc"] for r in runs], _pct),
                     _mean_std([r["best_val_acc"] for r in runs], _pct)])
    seeds = sorted({r["seed"] for r in size})
    out.append("### Dataset-size ablation (division mod 97)\n\n" + _table(
        ["Equations", "Train examples", f"Steps to grok (seeds {', '.join(map(str, seeds))})", "Final train acc",
         "Final val acc", "Best val acc"], rows)
        + "\n\nSeed 003 reported: with few samples train accuracy reaches ~1.0 while val stays near 0.49; more "
          "data slows memorisation and raises val accuracy." + _status_note(size))
    return "\n\n".join(out)


STUDIES: dict[str, Callable[[Path], str]] = {"seed-000": _seed000_tables, "seed-003": _seed003_tables,
                                             "nanda": nanda.tables}


def write_tables(study: str, folder: str | Path) -> Path:
    folder = Path(folder)
    spec = study_spec(study)
    text = f"# {spec.description}\n\nSweep folder: `{folder}`\n\n{STUDIES[study](folder)}\n"
    atomic_write(folder / TABLES_FILE, text)
    return folder / TABLES_FILE


def reproduce(study: str, out: str | Path | None = None, *, quick: bool = False,
              overrides: Mapping[str, Any] | None = None, argv: Sequence[str] | None = None,
              echo: Callable[[str], None] = print, **backend: Any) -> dict[str, int]:
    """Train the study (what is not trained yet), then write and print its tables, then its report."""
    if study not in STUDIES:
        raise GroklabError(f"no study {study!r}; choose one of: {', '.join(STUDIES)}")
    spec = study_spec(study)
    overrides = dict(overrides or {})
    if quick:
        steps = max(r.config.train.max_steps for r in spec.expand()) // QUICK_DIVISOR
        overrides.setdefault("max_steps", steps)
        overrides.setdefault("checkpoint_interval", max(steps // 4, 1))
        # evaluating the full splits dominates a short CPU try: a few log-spaced points are enough
        overrides.setdefault("eval_points_per_decade", 4)
        overrides.setdefault("eval_interval", 0)
    if not quick and "compile" not in overrides and backend.get("backend", "local") == "local" \
            and resolve_device(str(overrides.get("device", "auto"))).type == "cuda":
        # a full study on a GPU: compiling each group's step costs ~15 s a group and saves far more (seed 000
        # on an H100: 9.6 min end to end; docs/benchmarks.md). `--compile false` turns it off.
        overrides["compile"] = True
    folder = Path(out or f"out/{study}" + ("-quick" if quick else ""))
    with SweepFolder(folder) as claimed:  # held through the tables and the report too
        counts = run_sweep(spec, claimed, overrides, argv=argv, echo=echo, **backend)
        path = write_tables(study, folder)
        echo(path.read_text(encoding="utf-8"))
        echo(f"tables written to {path}")
        write_report(folder, echo=echo)
    return counts

"""The tables of `groklab reproduce` (tables.md in the sweep folder): a study's results beside the numbers its
report gave, how far each cell is from the report (in percentage points), and summary lines computed from
those cells, never typed. A study trained with `--quick` is labelled a pipeline check: its numbers are not
comparable with the report's.

Seed 003's own part is `seed003_tables`; Nanda et al.'s is `groklab.reporting.nanda`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from groklab.data.ops import OPERATIONS
from groklab.experiments.study import full_steps, study_spec
from groklab.files import atomic_write
from groklab.reporting import nanda
from groklab.reporting.seed003_tables import seed003_tables
from groklab.reporting.table_cells import (WITHIN_POINTS, gap, held, quick_banner, runs_of, schedule_line,
                                           settings_line, status_note, within)
from groklab.store.sweepdir import TABLES_FILE, collect
from groklab.tables import MISSING, md_table, mean_std, num, pct, steps

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
SEED000_METRICS = (("Final train loss", "final_train_loss", num, 0), ("Final train acc", "final_train_acc", pct, 1),
                   ("Final test acc", "final_test_acc", pct, 2),
                   ("Steps to grok (val ≥ 99%, held)", None, None, None))


def _cell_name(op: str, p: int, layers: int, seed: int) -> str:
    return f"{OPERATIONS[op].title} p={p}, {layers} layer{'s' if layers > 1 else ''}, seed {seed}"


def _addsub_rows(addsub: list[dict], layers: int, seeds: list[int], quick: bool,
                 cells: dict[str, list[tuple[str, float | None, float]]]) -> list[list[str]]:
    """The rows of one depth's table; each finished run's (name, ours, reported) goes into `cells` by metric."""
    rows = []
    for op in ("+", "-"):
        for p in (97, 113):
            cell = {r["seed"]: r for r in addsub if (r["operators"], r["prime"], r["n_layer"]) == (op, p, layers)}
            done = {s: r for s, r in cell.items() if r["status"] == "done"}
            ref = SEED000_ADDSUB.get((op, p, layers), {})
            for metric, key, fmt, idx in SEED000_METRICS:
                if key is None:
                    vals = [steps(held(done[s], "grok")) if s in done else MISSING for s in seeds]
                    rows.append([f"{OPERATIONS[op].title} p={p}", metric, *vals, MISSING, MISSING])
                    continue
                vals = [fmt(done[s][key]) if s in done else MISSING for s in seeds]
                reported = " / ".join(f"{ref[s][idx]:g}" + ("" if idx == 0 else "%") for s in seeds if s in ref) \
                    if ref else MISSING
                gaps = MISSING  # the report printed its loss as a percentage: not comparable
                if idx > 0 and ref:
                    gaps = " / ".join(gap(done[s][key] if s in done else None, ref[s][idx], quick) for s in seeds)
                    for s in seeds:
                        if s in done and s in ref:
                            cells[key].append((_cell_name(op, p, layers, s), done[s][key], ref[s][idx]))
                rows.append([f"{OPERATIONS[op].title} p={p}", metric, *vals, reported, gaps])
    return rows


def _summary(cells: list[tuple[str, float | None, float]], what: str, expected: int, quick: bool) -> str:
    """'21 of 24 add/sub cells within 2 points of the report (...); the farthest: ...', from the cells."""
    if quick:
        return f"{what}: not compared (a pipeline check)."
    if not cells:
        return f"{what}: no finished run to compare."
    near = sum(within(ours, ref) for _, ours, ref in cells)
    name, ours, ref = max(cells, key=lambda c: abs(100 * (c[1] or 0) - c[2]))
    missing = f" ({expected - len(cells)} of {expected} not finished)" if len(cells) < expected else ""
    farthest = "" if abs(100 * (ours or 0) - ref) < 0.05 else \
        f"; the farthest: {name}, {gap(ours, ref)} ({pct(ours)} against {ref:g}%)"
    return f"{what}: **{near} of {len(cells)}** cells within {WITHIN_POINTS:g} points of the report{missing}{farthest}."


def _addsub_tables(addsub: list[dict], quick: bool) -> tuple[list[str], list[str]]:
    seeds = sorted({r["seed"] for r in addsub})
    cells: dict[str, list[tuple[str, float | None, float]]] = {"final_train_acc": [], "final_test_acc": []}
    out = []
    for layers in sorted({r["n_layer"] for r in addsub}):
        rows = _addsub_rows(addsub, layers, seeds, quick, cells)
        out.append(f"### {layers}-layer model (add/sub, batch 64)\n\n" + md_table(
            ["Task", "Metric", *(f"Seed {s}" for s in seeds), "Seed 000 reported (per seed)",
             "groklab − report (per seed)"], rows))
    out[-1] += status_note(addsub)
    expected = len(SEED000_ADDSUB) * 3
    lines = [_summary(cells["final_test_acc"], "Add/sub, final test accuracy", expected, quick),
             _summary(cells["final_train_acc"], "Add/sub, final train accuracy", expected, quick)]
    return out, lines


def _grokking_run(batch: list[dict], quick: bool) -> str:
    grok = [r for r in batch if r["batch_size"] == 512 and r["seed"] == 42 and r["status"] == "done"]
    if not grok:
        return ""
    r = grok[0]
    ref = SEED000_DIVISION

    def acc(label: str, key: str) -> list[str]:
        return [label, pct(r[f"final_{key}"]), pct(ref[key]), gap(r[f"final_{key}"], 100 * ref[key], quick)]

    return "### Division mod 97, batch 512, seed 42 (the grokking run)\n\n" + md_table(
        ["Metric", "groklab", "Seed 000 reported", "groklab − report"],
        [["Final val loss", num(r["final_val_loss"]), num(ref["val_loss"]), MISSING], acc("Final val acc", "val_acc"),
         ["Final train loss", num(r["final_train_loss"]), num(ref["train_loss"]), MISSING],
         acc("Final train acc", "train_acc"),
         ["Steps to memorise (train ≥ 99%, held)", steps(held(r, "memorise"), "not memorised"), MISSING, MISSING],
         ["Steps to grok (val ≥ 99%, held)", steps(held(r, "grok")), "~800 (from the ablation table)", MISSING]])


def _batch_table(batch: list[dict], quick: bool) -> tuple[str, list[tuple[str, float | None, float]]]:
    rows, cells = [], []
    for b in sorted({r["batch_size"] for r in batch}):
        runs = sorted((r for r in batch if r["batch_size"] == b and r["status"] == "done"), key=lambda r: r["seed"])
        ref = SEED000_BATCH.get(b)
        cells += [(f"division, batch {b}, seed {r['seed']}", r["final_test_acc"], ref[3]) for r in runs if ref]
        rows.append([str(b), " / ".join(steps(held(r, "grok")) for r in runs) or MISSING,
                     mean_std([r["final_train_loss"] for r in runs], num),
                     mean_std([r["final_train_acc"] for r in runs], pct),
                     mean_std([r["final_test_acc"] for r in runs], pct),
                     f"{ref[0]} · {num(ref[1])} · {ref[2]}% · {ref[3]}%" if ref else MISSING,
                     " / ".join(gap(r["final_test_acc"], ref[3], quick) for r in runs) if ref and runs else MISSING])
    seeds = sorted({r["seed"] for r in batch})
    table = "### Batch-size ablation (division mod 97, 2 layers)\n\n" + md_table(
        ["Batch size", f"Steps to grok (held; seeds {', '.join(map(str, seeds))})", "Final train loss",
         "Final train acc", "Final test acc", "Seed 000 reported (steps · loss · train · test)",
         "Test acc: groklab − report (per seed)"], rows)
    return table, cells


HELD_NOTE = ("Steps to grok is *held*: the first evaluation with val accuracy ≥ 99 % after which it never falls "
             "below 90 % for more than 100 steps (`groklab.metrics`; seed 000 judged \"a generally high and stable "
             "test accuracy\" by eye). Final values in the ablation are mean ± std over the seeds.")


def seed000_tables(rows: list[dict], quick: bool) -> str:
    addsub, batch = runs_of(rows, "addsub"), runs_of(rows, "batch")
    out, lines = _addsub_tables(addsub, quick)
    grok = _grokking_run(batch, quick)
    table, cells = _batch_table(batch, quick)
    lines.append(_summary(cells, "Division (batch-size ablation), final test accuracy", 12, quick))
    out += [grok] if grok else []
    out.append(table + "\n\n" + HELD_NOTE + status_note(batch) + division_note(batch))
    against = ("### Against the report\n\n" + schedule_line(addsub + batch, "the setting that reproduces the "
               "report's 100 % train accuracy (issue 17's H200 measurement, docs/benchmarks.md)")
               + "\n\n" + "\n".join(f"- {line}" for line in lines))
    return "\n\n".join([against, *out])


def division_note(batch: list[dict]) -> str:
    """Where no character-level division run generalised: what groklab's sweeps of this task found."""
    done = [r for r in batch if r["status"] == "done"]
    if not done or any(r["tokenizer"] != "char" or r["steps_to_grok"] is not None for r in done):
        return ""
    return ("\n\nNo character-level run here generalised, nor did any of the 128 in groklab's sweeps of this task "
            "(docs/benchmarks.md, \"What the evidence says about seed 000's division\"). With one token per number "
            "the same recipe reproduces the report's batch-size pattern: `groklab reproduce seed-000 --tokenizer "
            "number`.")


STUDY_TABLES: dict[str, Callable[[list[dict], bool], str]] = {"seed-000": seed000_tables, "seed-003": seed003_tables}


def tables_text(study: str, folder: Path) -> str:
    """tables.md's text for the study's sweep folder."""
    spec = study_spec(study)
    rows = collect(folder)[0]
    budget = full_steps(spec)
    trained = max((r["max_steps"] for r in rows), default=budget)
    quick = trained < budget
    body = nanda.tables(folder) if study == "nanda" else STUDY_TABLES[study](rows, quick)
    if quick:
        body = quick_banner(trained, budget) + "\n\n" + body
    if settings := settings_line(rows, spec):
        body = settings + "\n\n" + body
    return f"# {spec.description}\n\nSweep folder: `{folder}`\n\n{body}\n"


def write_tables(study: str, folder: str | Path) -> Path:
    folder = Path(folder)
    text = tables_text(study, folder)
    atomic_write(folder / TABLES_FILE, text)
    return folder / TABLES_FILE


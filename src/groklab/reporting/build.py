"""`groklab report DIR`: a run's or a sweep's results as `report.html` (one self-contained file, images
inline, opens offline) and `report.md` (images in `report_files/` beside it), written from the run folders.

Per experiment of a sweep: a steps-to-grok heatmap when two axes vary (never-grokked cells marked), the
settings compared, each setting's curves (several seeds: their mean and min–max band, each seed's
steps-to-memorise and steps-to-grok marked; each seed's own curves one click away) and the seed-style table
(final train loss, train/val/test accuracy per seed, mean ± std). Then every run's exact config, command,
device, versions and wall time. The report is built as a list of blocks that both writers render, so the
HTML and the Markdown always say the same thing.
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
import shlex
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Union

import groklab
from groklab import plots
from groklab.store import rundir
from groklab.store import sweepdir
from groklab.config import SECTION_CLASSES, RunConfig
from groklab.errors import GroklabError
from groklab.files import DIR_MODE, atomic_write
from groklab.tables import MISSING, md_table, mean_std, num, pct, seconds, steps

REPORT_HTML, REPORT_MD, FILES_DIR = rundir.REPORT_FILES
MARKER = "<!-- written by groklab report -->"  # the last line of report.md: how a rerun knows the files are ours
SEED_AXIS = "seed"
METRIC_KEYS = ("step", "elapsed_s", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc",
               "train_token_acc", "val_token_acc", "test_token_acc")
MAX_COMPARED = len(plots.SERIES_COLORS) * 2  # more settings than this in one panel is a tangle
SEED_FIGURE_DPI = 80  # each seed's own curves: one click away, smaller


# ---------------------------------------------------------------- blocks: what both writers render

@dataclass
class Heading:
    level: int
    text: str
    anchor: str | None = None


@dataclass
class Para:
    text: str  # plain text; `code` spans allowed


@dataclass
class Items:
    items: list[str]


@dataclass
class Code:
    text: str
    label: str = ""


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    strong: set[int] = field(default_factory=set)  # rows to emphasise (mean ± std)
    kind: str = ""  # a CSS class and a name a reader (or a test) can find the table by


@dataclass
class Figure:
    name: str  # file name under report_files/
    png: bytes
    caption: str
    alt: str


@dataclass
class Details:
    summary: str
    blocks: list["Block"]


Block = Union[Heading, Para, Items, Code, Table, Figure, Details]


# ---------------------------------------------------------------- what the report is made from

@dataclass
class Run:
    row: dict[str, Any]  # results.collect's run row: flat config, status, grokking measures, final metrics
    params: dict[str, Any]  # the run's axis values in its sweep
    history: list[dict]
    meta: dict[str, Any]
    argv: list[str] | None
    config: dict[str, Any]

    @property
    def run_id(self) -> str:
        return self.row["run_id"]

    @property
    def status(self) -> str:
        return self.row["status"]

    @property
    def is_text(self) -> bool:
        """A run that memorised a text (no held-out data: no grokking verdict, loss on every token)."""
        return self.row.get("text_file") is not None

    @property
    def marks(self) -> dict[str, int | None]:
        """The steps marked on its curves; a failed run's failure too; a text run has no "grokked"."""
        marks = {"memorised": self.row["steps_to_memorise"], "grokked": self.row["steps_to_grok"]}
        if self.is_text:
            del marks["grokked"]
        if self.status == "failed":
            marks["failed"] = self.row.get("failed_step")
        return marks

    @property
    def wall_time(self) -> float | None:
        if self.row.get("wall_time_s") is not None:
            return self.row["wall_time_s"]
        return self.history[-1].get("elapsed_s") if self.history else None


def _load(folder: Path) -> tuple[dict | None, list[dict], list[Run]]:
    """(sweep header or None, experiments [{name, description, axes}], runs in the sweep's order)."""
    rows, evals = sweepdir.collect(folder)
    header, params = None, {}
    if (folder / sweepdir.SWEEP_FILE).exists():
        header, sweep_runs = sweepdir.read_sweep(folder)
        params = {r.run_id: r.params for r in sweep_runs}
    histories: dict[str, list[dict]] = {}
    for e in evals:
        histories.setdefault(e["run_id"], []).append({k: e.get(k) for k in METRIC_KEYS})
    runs = []
    for row in rows:
        run_dir = Path(row["run_dir"])
        meta = rundir.read_meta(run_dir)
        saved = rundir.read_config(run_dir) if (run_dir / rundir.CONFIG_FILE).exists() else None
        config = saved.cfg.to_dict() if saved else _sweep_config(header, row["run_id"])
        runs.append(Run(row, params.get(row["run_id"], {}), sorted(histories.get(row["run_id"], []),
                                                                  key=lambda h: h["step"]),
                        meta, saved.argv if saved else None, config))
    experiments = [dict(e) for e in header["experiments"]] if header else []
    for r in runs:  # runs of an earlier spec kept in the folder, or a single run folder
        if r.row["experiment"] not in {e["name"] for e in experiments}:
            experiments.append({"name": r.row["experiment"], "description": "", "axes": list(r.params)})
    return header, experiments, runs


def _sweep_config(header: dict | None, run_id: str) -> dict:
    for r in (header or {}).get("runs", []):
        if r["run_id"] == run_id:
            return r["config"]
    return {}


# ---------------------------------------------------------------- helpers

def fmt_value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:80] or "x"


def _distinct(values: Sequence[Any]) -> list[Any]:
    """Values in order of first appearance (a sweep lists its axes' values in the order the spec gave)."""
    out: list[Any] = []
    for v in values:
        if v not in out:
            out.append(v)
    return out


def _median(values: Sequence[float]) -> float:
    v = sorted(values)
    return v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2


def run_command(config: dict[str, Any]) -> list[str]:
    """`groklab train` with every config field that differs from the default: the same run, alone."""
    cfg = RunConfig.from_dict(config)
    default = RunConfig()
    argv = ["groklab", "train"]
    for section in SECTION_CLASSES:
        ours, theirs = getattr(cfg, section), getattr(default, section)
        for name in ours.__dataclass_fields__:
            value = getattr(ours, name)
            if name == "resume" or value == getattr(theirs, name) or value is None:
                continue
            if isinstance(value, bool):
                argv.append(f"--{name}" if value else f"--no_{name}")
            else:
                argv += [f"--{name}", str(value)]
    return argv


def _status_text(run: Run) -> str:
    if run.status == "partial":
        return f"partial (step {run.row['last_step']:,})"
    return run.status


# ---------------------------------------------------------------- grokking heatmap

def heatmap_cell(runs: Sequence[Run]) -> dict[str, Any]:
    """One cell of a steps-to-grok heatmap: `value` (steps, for the colour) and `text` (what it says).
    Several runs (seeds): the median over those that grokked, and how many of them did."""
    if not runs:
        return {"value": None, "text": "no run", "kind": "missing"}
    done = [r for r in runs if r.status == "done"]
    failed = sum(r.status == "failed" for r in runs)
    grokked = [r.row["steps_to_grok"] for r in done if r.row["steps_to_grok"] is not None]
    note = f"{failed} failed" if failed else ""
    if not done:
        text = "failed" if failed == len(runs) else "not trained" if not failed else f"{note}\nrest not trained"
        return {"value": None, "text": text, "kind": "failed" if failed else "missing"}
    if not grokked:
        budget = max(r.row["max_steps"] for r in done)
        text = f"never\n(> {budget:,})" + (f"\n{note}" if note else "")
        return {"value": None, "text": text, "kind": "never"}
    value = _median(grokked)
    text = f"{value:,.0f}"
    if len(runs) > 1:
        text += f"\n{len(grokked)}/{len(runs)} grokked"
    if note:
        text += f"\n{note}"
    return {"value": value, "text": text, "kind": "grokked" if len(grokked) == len(runs) else "partial"}


def heatmap_axes(axes: Sequence[str], runs: Sequence[Run]) -> tuple[str, str, list[str]] | None:
    """(y axis, x axis, facet axes) of an experiment's heatmap, or None when fewer than two axes vary.
    Seeds are aggregated when two other axes vary; with one other axis, seed is the second axis."""
    varying = [a for a in axes if len(_distinct([r.params.get(a) for r in runs])) > 1]
    others = [a for a in varying if a != SEED_AXIS]
    if len(others) >= 2:
        return others[0], others[1], others[2:]
    if len(others) == 1 and SEED_AXIS in varying:
        return others[0], SEED_AXIS, []
    return None


def _heatmaps(exp: dict, runs: list[Run], figure: Callable[..., Figure]) -> list[Block]:
    spec = heatmap_axes(exp["axes"], runs)
    if spec is None:
        return []
    y_axis, x_axis, facets = spec
    ys = _distinct([r.params.get(y_axis) for r in runs])
    xs = _distinct([r.params.get(x_axis) for r in runs])
    blocks: list[Block] = []
    facet_values = _distinct([tuple(r.params.get(a) for a in facets) for r in runs])
    seeds = x_axis != SEED_AXIS and len(_distinct([r.row["seed"] for r in runs])) > 1
    for fv in facet_values:
        part = [r for r in runs if tuple(r.params.get(a) for a in facets) == fv]
        cells = [[heatmap_cell([r for r in part if r.params.get(y_axis) == y and r.params.get(x_axis) == x])
                  for x in xs]
                 for y in ys]
        where = ", ".join(f"{a}={fmt_value(v)}" for a, v in zip(facets, fv))
        title = f"{exp['name']}: steps to grok" + (f" · {where}" if where else "")
        never = sum(c["kind"] == "never" for row in cells for c in row)
        blocks.append(figure(
            f"heatmap {exp['name']} {where}",
            lambda cells=cells, title=title: plots.plot_heatmap(cells, [fmt_value(x) for x in xs],
                                                                [fmt_value(y) for y in ys], x_axis, y_axis,
                                                                None, title),
            f"Steps to grok (val accuracy ≥ the threshold and staying there) over {y_axis} × {x_axis}"
            + (f", {where}" if where else "") + ". "
            + ("Each cell: the median over its seeds that grokked, and how many of them did. " if seeds else "")
            + "Hatched grey: never grokked within the step budget (> budget), failed or not trained, as written "
            f"in the cell ({never} never-grokked cell(s)).",
            f"heatmap of steps to grok over {y_axis} and {x_axis}"))
    return blocks


# ---------------------------------------------------------------- an experiment

def _condition_label(axes: Sequence[str], key: tuple) -> str:
    return ", ".join(f"{a}={fmt_value(v)}" for a, v in zip(axes, key))


def seed_table(cond_axes: Sequence[str], conditions: dict[tuple, list[Run]]) -> Table:
    """Each run's final numbers and grokking steps, and per setting with several finished runs a
    mean ± std row (over the finished runs)."""
    header = [*cond_axes, "seed", "status", "final train loss", "final train acc", "final val acc",
              "final test acc", "final val token acc", "steps to memorise", "steps to grok", "wall time"]
    rows: list[list[str]] = []
    strong: set[int] = set()
    for key, runs in conditions.items():
        values = [fmt_value(v) for v in key]
        for r in sorted(runs, key=lambda r: r.row["seed"]):
            done = r.status == "done"
            rows.append([*values, str(r.row["seed"]), _status_text(r), num(r.row["final_train_loss"]),
                         pct(r.row["final_train_acc"]), pct(r.row["final_val_acc"]), pct(r.row["final_test_acc"]),
                         pct(r.row.get("final_val_token_acc")),
                         steps(r.row["steps_to_memorise"], "not memorised") if done else MISSING,
                         _grok_cell(r) if done else MISSING, seconds(r.wall_time)])
        done = [r for r in runs if r.status == "done"]
        if len(done) > 1:
            grokked = [r.row["steps_to_grok"] for r in done if r.row["steps_to_grok"] is not None]
            memorised = [r.row["steps_to_memorise"] for r in done if r.row["steps_to_memorise"] is not None]
            strong.add(len(rows))
            rows.append([*values, "mean ± std", f"{len(done)} done",
                         mean_std([r.row["final_train_loss"] for r in done], num),
                         mean_std([r.row["final_train_acc"] for r in done], pct),
                         mean_std([r.row["final_val_acc"] for r in done], pct),
                         mean_std([r.row["final_test_acc"] for r in done], pct),
                         mean_std([r.row.get("final_val_token_acc") for r in done], pct),
                         _reached(memorised, len(done)),
                         TEXT_GROK if all(r.is_text for r in done) else _reached(grokked, len(done)),
                         mean_std([r.wall_time for r in done], seconds)])
    return Table(header, rows, strong, kind="seeds")


TEXT_GROK = "n/a (a text)"  # a text to memorise has no held-out part: no grokking verdict


def _grok_cell(r: Run) -> str:
    return TEXT_GROK if r.is_text else steps(r.row["steps_to_grok"])


def _reached(values: Sequence[int], n: int) -> str:
    """'2 of 3 runs, median 1,200': how many finished runs reached a threshold, and when."""
    return f"{len(values)} of {n} runs" + (f", median {_median(values):,.0f}" if values else "")


def _experiment(exp: dict, runs: list[Run], figure: Callable[..., Figure], single: bool) -> list[Block]:
    name = exp["name"]
    blocks: list[Block] = [] if single else [Heading(2, f"Experiment {name}", f"exp-{_slug(name)}")]
    if exp.get("description"):
        blocks.append(Para(exp["description"]))
    cond_axes = [a for a in exp["axes"] if a != SEED_AXIS]
    conditions: dict[tuple, list[Run]] = {}
    for r in runs:
        conditions.setdefault(tuple(r.params.get(a) for a in cond_axes), []).append(r)
    counts = {s: sum(r.status == s for r in runs) for s in ("done", "failed", "partial", "pending")}
    text = all(r.is_text for r in runs)  # texts memorised: no held-out data, so no grokking verdict or heatmap
    blocks.append(Para(f"{len(runs)} run(s): " + ", ".join(f"{n} {s}" for s, n in counts.items() if n)
                       + (f" · axes: {', '.join(exp['axes'])}" if exp["axes"] else "")
                       + (" · a text to memorise: loss and per-token accuracy on every token; no grokking verdict "
                          "(its val split is the text itself)" if text else
                          f" · grokked means val accuracy ≥ {runs[0].row['grok_threshold']:g} from then on")
                       + f"; memorised means train accuracy ≥ {runs[0].row['grok_threshold']:g} from then on."))
    blocks += [] if text else _heatmaps(exp, runs, figure)

    curved = {k: [r for r in v if r.history] for k, v in conditions.items()}
    if 2 <= len([k for k, v in curved.items() if v]) <= MAX_COMPARED:
        series = [(_condition_label(cond_axes, k), [r.history for r in v]) for k, v in curved.items() if v]
        bands = plots.compare_bands(series)
        blocks.append(figure(f"compare {name}", lambda: plots.plot_compare(
            series, "val_token_acc" if text else "val_acc", None, f"{name}: val accuracy by setting", text=text),
            "Validation accuracy of each setting: the mean over its seeds"
            + (", with a min–max band." if bands else " (the bands of each setting are in its own figure below)."),
            f"validation accuracy of each setting of {name}"))
    for key, cond in curved.items():
        if not cond:
            continue
        label = _condition_label(cond_axes, key)
        if len(cond) == 1:
            r = cond[0]
            blocks.append(figure(f"curves {r.run_id}", lambda r=r: plots.plot_curves(
                r.history, None, f"{r.run_id} · seed {r.row['seed']}", r.marks, text=r.is_text),
                (f"{label} · " if label else "") + f"seed {r.row['seed']} ({_status_text(r)}): loss and accuracy "
                "of each split; vertical lines at steps-to-memorise (dotted), steps-to-grok (dashed)"
                + (" and the failure (dash-dot)." if r.status == "failed" else "."), f"curves of {r.run_id}"))
            continue
        seeds_text = ", ".join(str(r.row["seed"]) for r in cond)
        label = label or "all seeds"
        title = f"{name}: {label} · {len(cond)} runs (seeds {seeds_text})"
        blocks.append(figure(f"band {name} {label}", lambda cond=cond, title=title: plots.plot_band(
            [r.history for r in cond], [r.marks for r in cond], None, title, text=text),
            f"{label}: the mean over {len(cond)} runs (seeds {seeds_text}) with a min–max band; the strip "
            "below marks each run's steps-to-memorise (▲) and steps-to-grok (◆); grey lines: their medians.",
            f"mean and band of {label}"))
        blocks.append(Details(f"Each seed of {label} ({len(cond)} figures)", [
            figure(f"seed {r.run_id}", lambda r=r: plots.plot_curves(
                r.history, None, f"{r.run_id} · seed {r.row['seed']}", r.marks, dpi=SEED_FIGURE_DPI,
                text=r.is_text),
                f"seed {r.row['seed']} ({_status_text(r)})", f"curves of {r.run_id}")
            for r in cond]))
    blocks.append(seed_table(cond_axes, conditions))
    unfinished = [r for r in runs if r.status != "done"]
    if unfinished:
        blocks.append(Para("Not finished:"))
        blocks.append(Items([f"`{r.run_id}`: {_status_text(r)}"
                             + (f" at step {r.row['failed_step']:,}" if r.row.get("failed_step") is not None else "")
                             + (f": {r.row['failure']}" if r.row.get("failure") else "") for r in unfinished]))
    return blocks


# ---------------------------------------------------------------- the whole report

def _environment(runs: Sequence[Run]) -> list[list[str]]:
    def distinct(key: str) -> str:
        return ", ".join(_distinct([str(r.meta[key]) for r in runs if r.meta.get(key)])) or MISSING

    devices = _distinct([_device(r) for r in runs if r.meta.get("device")])
    spans = []
    for r in runs:
        if r.meta.get("started") and r.wall_time is not None:
            start = datetime.fromisoformat(r.meta["started"]).timestamp()
            spans.append((start, start + r.wall_time))
    total = max(e for _, e in spans) - min(s for s, _ in spans) if spans else None
    return [["groklab that trained the runs", distinct("groklab_version")],
            ["groklab that wrote this report", groklab.__version__],
            ["torch", distinct("torch_version")],
            ["git commit", distinct("git_commit")],
            ["devices", ", ".join(devices) or MISSING],
            ["hosts", distinct("host")],
            ["wall time (first run's start to last run's end)", seconds(total)]]


def _device(r: Run) -> str:
    name = r.meta.get("device_name")
    return f"{r.meta.get('device', MISSING)}" + (f" ({name})" if name else "")


def _runs_section(runs: Sequence[Run]) -> list[Block]:
    rows = [[r.run_id, _status_text(r), f"{r.row['last_step']:,}", seconds(r.wall_time),
             _device(r), r.meta.get("started", MISSING),
             str(r.meta.get("groklab_version", MISSING)), str(r.meta.get("torch_version", MISSING))] for r in runs]
    blocks: list[Block] = [
        Heading(2, "Runs: config, command, device, wall time", "runs"),
        Table(["run", "status", "last evaluated step", "wall time", "device", "started (UTC)", "groklab",
               "torch"], rows, kind="runs"),
    ]
    for r in runs:
        inner: list[Block] = []
        if r.argv:
            inner.append(Code(shlex.join(r.argv), "command as run"))
        if r.config:
            inner.append(Code(shlex.join(run_command(r.config)), "the same run alone"))
            inner.append(Code(json.dumps(r.config, indent=2, sort_keys=True), "config"))
        if r.meta:
            inner.append(Code(json.dumps(r.meta, indent=2, sort_keys=True), "meta.json"))
        inner.append(Para(f"Folder: `{r.row['run_dir']}`"))
        blocks.append(Details(f"{r.run_id} ({_status_text(r)})", inner))
    return blocks


def build(folder: str | Path) -> tuple[str, list[Block]]:
    """The report's title and blocks (figures rendered), read from a sweep folder or a run folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise GroklabError(f"{folder}: no such folder")
    header, experiments, runs = _load(folder)
    single = header is None
    title = f"groklab report: {header['name'] if header else folder.name}"
    names: set[str] = set()

    def figure(what: str, draw: Callable[[], bytes], caption: str, alt: str) -> Figure:
        name = f"{len(names) + 1:03d}-{_slug(what)}.png"
        names.add(name)
        return Figure(name, draw(), caption, alt)

    blocks: list[Block] = [Heading(1, title)]
    if header and header.get("description"):
        blocks.append(Para(header["description"]))
    made = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    facts = [["folder", f"`{folder}`"], ["written", made]]
    if header and header.get("argv"):
        facts.append(["sweep command", f"`{shlex.join(header['argv'])}`"])
    counts = {s: sum(r.status == s for r in runs) for s in ("done", "failed", "partial", "pending")}
    facts.append(["runs", f"{len(runs)}: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n)])
    blocks.append(Table(["", ""], facts + _environment(runs), kind="facts"))
    problems = [r for r in runs if r.status == "failed"]
    if problems:
        blocks.append(Para(f"{len(problems)} run(s) failed: "
                           + "; ".join(f"`{r.run_id}` ({r.row['failure']})" for r in problems)))
    if not single and len(experiments) > 1:
        blocks.append(Items([f"[{e['name']}](#exp-{_slug(e['name'])})" for e in experiments] + ["[Runs](#runs)"]))
    if not runs:
        blocks.append(Para("No runs yet."))
    for exp in experiments:
        members = [r for r in runs if r.row["experiment"] == exp["name"]]
        if members:
            blocks += _experiment(exp, members, figure, single)
    blocks += _runs_section(runs)
    spec = folder / sweepdir.SPEC_FILE
    if header and spec.exists():
        text = spec.read_bytes().decode("utf-8", errors="replace")
        blocks.append(Details(f"The sweep spec ({sweepdir.SPEC_FILE})", [Code(text)]))
    return title, blocks


# ---------------------------------------------------------------- writers

def _inline_html(text: str) -> str:
    """Plain text with `code` spans and [label](#anchor) links, escaped."""
    out = []
    for i, part in enumerate(text.split("`")):
        if i % 2:
            out.append(f"<code>{html.escape(part)}</code>")
        else:
            esc = html.escape(part)
            out.append(re.sub(r"\[([^\]]+)\]\((#[A-Za-z0-9._-]+)\)", r'<a href="\2">\1</a>', esc))
    return "".join(out)


CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1a1a1a; margin: 0; }
main { max-width: 1180px; margin: 0 auto; padding: 1.5em 2em 4em; }
h1 { font-size: 1.7em; margin-bottom: .2em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: .8em 0 1.2em; font-size: 13px; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #bbb; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #eef1f5; } tr.strong td { font-weight: 600; background: #f6f3e8; }
table.facts td:first-child { color: #444; }
figure { margin: 1em 0 1.6em; } figure img { max-width: 100%; height: auto; border: 1px solid #ddd; }
figcaption { font-size: 13px; color: #333; margin-top: .3em; }
details { margin: .4em 0; } summary { cursor: pointer; color: #0b4f8a; }
pre { background: #f5f5f5; border: 1px solid #ddd; padding: .6em; overflow-x: auto; font-size: 12px; }
code { font-size: .92em; } .label { font-size: 12px; color: #555; margin: .6em 0 0; }
@media print { details > *:not(summary) { display: block; } main { max-width: none; } }
"""


def to_html(title: str, blocks: Sequence[Block]) -> str:
    def render(b: Block) -> str:
        if isinstance(b, Heading):
            anchor = f' id="{html.escape(b.anchor)}"' if b.anchor else ""
            return f"<h{b.level}{anchor}>{_inline_html(b.text)}</h{b.level}>"
        if isinstance(b, Para):
            return f"<p>{_inline_html(b.text)}</p>"
        if isinstance(b, Items):
            return "<ul>" + "".join(f"<li>{_inline_html(i)}</li>" for i in b.items) + "</ul>"
        if isinstance(b, Code):
            label = f'<p class="label">{html.escape(b.label)}</p>' if b.label else ""
            return f"{label}<pre><code>{html.escape(b.text)}</code></pre>"
        if isinstance(b, Table):
            head = "".join(f"<th>{html.escape(h)}</th>" for h in b.header) if any(b.header) else ""
            body = "".join(
                ('<tr class="strong">' if i in b.strong else "<tr>")
                + "".join(f"<td>{_inline_html(c)}</td>" for c in row) + "</tr>" for i, row in enumerate(b.rows))
            head = f"<thead><tr>{head}</tr></thead>" if head else ""
            return f'<table class="{b.kind}">{head}<tbody>{body}</tbody></table>'
        if isinstance(b, Figure):
            data = base64.b64encode(b.png).decode("ascii")
            return (f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(b.alt)}">'
                    f"<figcaption>{_inline_html(b.caption)}</figcaption></figure>")
        if isinstance(b, Details):
            return (f"<details><summary>{_inline_html(b.summary)}</summary>"
                    + "\n".join(render(x) for x in b.blocks) + "</details>")
        raise TypeError(b)

    body = "\n".join(render(b) for b in blocks)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head>\n"
            f"<body><main>\n{body}\n</main></body></html>\n")


def to_markdown(blocks: Sequence[Block], files_dir: str = FILES_DIR) -> str:
    def render(b: Block) -> str:
        if isinstance(b, Heading):  # an explicit anchor: the links of the contents list work on any host
            return (f'<a id="{b.anchor}"></a>\n\n' if b.anchor else "") + "#" * b.level + " " + b.text
        if isinstance(b, Para):
            return b.text
        if isinstance(b, Items):
            return "\n".join(f"- {i}" for i in b.items)
        if isinstance(b, Code):
            fence = "````" if "```" in b.text else "```"
            return (f"*{b.label}:*\n\n" if b.label else "") + f"{fence}\n{b.text.rstrip()}\n{fence}"
        if isinstance(b, Table):
            rows = [[f"**{c}**" if i in b.strong and c else c for c in row] for i, row in enumerate(b.rows)]
            return md_table(b.header, rows)
        if isinstance(b, Figure):
            return f"![{b.alt}]({files_dir}/{b.name})\n\n*{b.caption}*"
        if isinstance(b, Details):
            inner = "\n\n".join(render(x) for x in b.blocks)
            return f"<details><summary>{html.escape(b.summary)}</summary>\n\n{inner}\n\n</details>"
        raise TypeError(b)

    return "\n\n".join(render(b) for b in blocks) + f"\n\n{MARKER}\n"


def _figures(blocks: Sequence[Block]) -> list[Figure]:
    out: list[Figure] = []
    for b in blocks:
        if isinstance(b, Figure):
            out.append(b)
        elif isinstance(b, Details):
            out += _figures(b.blocks)
    return out


def _refuse_foreign_report(folder: Path) -> None:
    """An earlier report of ours is replaced; files of the same names that groklab did not write are not."""
    md, page, files = folder / REPORT_MD, folder / REPORT_HTML, folder / FILES_DIR
    ours_md = md.is_file() and (MARKER in md.read_bytes().decode("utf-8", "replace")[-200:]
                                or b"groklab report" in md.read_bytes()[:200])  # 0.1's first line: its title
    if (md.exists() and not ours_md) or (page.exists() and b"groklab report" not in page.read_bytes()[:2000]):
        raise GroklabError(f"{folder} holds a {REPORT_MD} or {REPORT_HTML} that groklab did not write; move it away")
    figures = list(files.iterdir()) if files.is_dir() else []
    if files.exists() and (not files.is_dir() or any(not p.name.endswith(".png") or not p.is_file() for p in figures)
                           or (figures and not ours_md)):
        raise GroklabError(f"{files} holds files groklab's report did not write; move them away")


def write_report(folder: str | Path, echo: Callable[[str], None] | None = None) -> tuple[Path, Path]:
    """report.html (self-contained) and report.md with report_files/*.png, in `folder`; their paths."""
    folder = Path(folder)
    title, blocks = build(folder)
    _refuse_foreign_report(folder)
    files = folder / FILES_DIR
    # the new figures go into a folder of their own, then replace the old one (names may differ now); a
    # kill at any point leaves the earlier report's figures or these, plus at most a stray temp folder
    fresh = Path(tempfile.mkdtemp(dir=folder, prefix=f".{FILES_DIR}.", suffix=".tmp"))
    try:
        for f in _figures(blocks):
            atomic_write(fresh / f.name, f.png, sync=False)
        os.chmod(fresh, DIR_MODE)  # as the umask makes folders (mkdtemp's are 0700)
        if files.exists():
            stale = files.with_name(f".{FILES_DIR}.old-{os.getpid()}.tmp")
            os.replace(files, stale)
            os.replace(fresh, files)
            shutil.rmtree(stale, ignore_errors=True)
        else:
            os.replace(fresh, files)
    finally:
        shutil.rmtree(fresh, ignore_errors=True)
    atomic_write(folder / REPORT_MD, to_markdown(blocks))
    atomic_write(folder / REPORT_HTML, to_html(title, blocks))
    if echo is not None:
        echo(f"report written: {folder / REPORT_HTML} (self-contained) and {folder / REPORT_MD} "
             f"(figures in {files})")
    return folder / REPORT_HTML, folder / REPORT_MD

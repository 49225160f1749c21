"""What a report says, as blocks (`blocks`), read from a sweep folder or a run folder.

The header: the folder, the sweep's first command (the one that defined the study) and its last, the runs
by status, versions, devices and wall time. Per experiment (`experiment`): a steps-to-grok heatmap when two
axes vary, the settings compared, each setting's curves and the seed-style table. Then the study's tables
beside the seed reports (tables.md, as `groklab reproduce` wrote it), `groklab analyze`'s figures of the runs
that have them, and every run's exact config, command, device, versions and wall time.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

import groklab
from groklab.errors import GroklabError
from groklab.reporting.blocks import Block, Code, Details, Figure, Heading, Items, Para, Table, markdown_blocks
from groklab.reporting.drawing import Draw, draw_all
from groklab.reporting.experiment import experiment_blocks
from groklab.reporting.runs import Run, distinct, load, run_command, slug, status_text
from groklab.store import rundir, sweepdir
from groklab.tables import MISSING, seconds

__all__ = ["build"]
# what each of `groklab analyze`'s figures shows (rundir.ANALYSIS_PLOTS, in that order)
ANALYSIS_CAPTIONS = ("the embeddings' Fourier spectrum and key frequencies",
                     "restricted and excluded loss, key-frequency share and weight norm over training",
                     "the three phases: memorisation, circuit formation, cleanup")


def _environment(runs: Sequence[Run]) -> list[list[str]]:
    def values(key: str) -> str:
        return ", ".join(distinct([str(r.meta[key]) for r in runs if r.meta.get(key)])) or MISSING

    devices = distinct([_device(r) for r in runs if r.meta.get("device")])
    spans = []
    for r in runs:
        if r.meta.get("started") and r.wall_time is not None:
            start = datetime.fromisoformat(r.meta["started"]).timestamp()
            spans.append((start, start + r.wall_time))
    total = max(e for _, e in spans) - min(s for s, _ in spans) if spans else None
    return [["groklab that trained the runs", values("groklab_version")],
            ["groklab that wrote this report", groklab.__version__],
            ["torch", values("torch_version")],
            ["git commit", values("git_commit")],
            ["devices", ", ".join(devices) or MISSING],
            ["hosts", values("host")],
            ["wall time (first run's start to last run's end)", seconds(total)]]


def _device(r: Run) -> str:
    name = r.meta.get("device_name")
    return f"{r.meta.get('device', MISSING)}" + (f" ({name})" if name else "")


def _commands(header: dict | None) -> list[list[str]]:
    """The command that defined the sweep (sweep.json's argv) and, if another ran since, the last one."""
    if not header:
        return []
    first = header.get("argv")
    commands = [c for c in header.get("commands") or [] if isinstance(c, list)]
    rows = [["first command (defined the study)", f"`{shlex.join(first)}`"]] if first else []
    if commands and commands[-1] != first:
        rows.append([f"last command (of {len(commands)} run on this folder)", f"`{shlex.join(commands[-1])}`"])
    return rows


def _runs_section(runs: Sequence[Run]) -> list[Block]:
    rows = [[r.run_id, status_text(r), f"{r.row['last_step']:,}", seconds(r.wall_time),
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
        blocks.append(Details(f"{r.run_id} ({status_text(r)})", inner))
    return blocks


def _study_tables(folder: Path) -> list[Block]:
    """tables.md (the study's tables beside the seed reports, written by `groklab reproduce`), as written."""
    path = folder / sweepdir.TABLES_FILE
    if not path.is_file():
        return []
    text = path.read_bytes().decode("utf-8", errors="replace")
    written = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    inner = [b for b in markdown_blocks(text, shift=1, kind="study") if not (isinstance(b, Heading) and b.level == 2)]
    return [Heading(2, "Against the seed reports", "study-tables"),
            Para(f"`{sweepdir.TABLES_FILE}` as `groklab reproduce` wrote it ({written}): each table beside the "
                 "numbers its report gave. `groklab reproduce` writes it again after training."), *inner]


def _analysis(runs: Sequence[Run], figure: Callable[..., Figure], single: bool) -> list[Block]:
    """`groklab analyze`'s figures of each run that has them (a run folder's analysis_*.png)."""
    blocks: list[Block] = []
    for r in runs:
        found = [(name, caption) for name, caption in zip(rundir.ANALYSIS_PLOTS, ANALYSIS_CAPTIONS)
                 if (Path(r.row["run_dir"]) / name).is_file()]
        figures = [figure(f"analysis {r.run_id} {name}", partial(Path.read_bytes, Path(r.row["run_dir"]) / name),
                          f"`{r.run_id}`: {caption} (`{name}`, from `groklab analyze`)", f"{name} of {r.run_id}")
                   for name, caption in found]
        if figures:
            blocks += figures if single else [Details(f"{r.run_id}: progress measures ({len(figures)} figures)",
                                                      figures)]
    if blocks:
        blocks[:0] = [Heading(2, "Progress measures (groklab analyze)", "analysis")]
    return blocks


def _facts(folder: Path, header: dict | None, runs: Sequence[Run]) -> Table:
    made = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    counts = {s: sum(r.status == s for r in runs) for s in ("done", "failed", "partial", "pending")}
    facts = [["folder", f"`{folder}`"], ["written", made], *_commands(header),
             ["runs", f"{len(runs)}: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n)]]
    return Table(["", ""], facts + _environment(runs), kind="facts")


def build(folder: str | Path, *, workers: int | None = None,
          note: Callable[[str], None] | None = None) -> tuple[str, list[Block]]:
    """The report's title and blocks (figures rendered), read from a sweep folder or a run folder. The
    figures are drawn last, all at once, in worker processes when that pays (`drawing.draw_all`: `workers`,
    0 for none; `note` hears why the pool stopped, if it did)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise GroklabError(f"{folder}: no such folder")
    header, experiments, runs = load(folder)
    single = header is None
    title = f"groklab report: {header['name'] if header else folder.name}"
    pending: list[tuple[Figure, Draw]] = []

    def figure(what: str, draw: Draw, caption: str, alt: str) -> Figure:
        made = Figure(f"{len(pending) + 1:03d}-{slug(what)}.png", b"", caption, alt)  # its PNG: at the end
        pending.append((made, draw))
        return made

    blocks: list[Block] = [Heading(1, title)]
    if header and header.get("description"):
        blocks.append(Para(header["description"]))
    blocks.append(_facts(folder, header, runs))
    problems = [r for r in runs if r.status == "failed"]
    if problems:
        blocks.append(Para(f"{len(problems)} run(s) failed: "
                           + "; ".join(f"`{r.run_id}` ({r.row['failure']})" for r in problems)))
    body: list[Block] = []
    for exp in experiments:
        members = [r for r in runs if r.row["experiment"] == exp["name"]]
        if members:
            body += experiment_blocks(exp, members, figure, single)
    tables = _study_tables(folder) if header else []
    analysis = _analysis(runs, figure, single)  # after the experiments: figures are numbered as they are read
    if not single and (len(experiments) > 1 or tables or analysis):
        blocks.append(Items([f"[{e['name']}](#exp-{slug(e['name'])})" for e in experiments]
                            + (["[Against the seed reports](#study-tables)"] if tables else [])
                            + (["[Progress measures](#analysis)"] if analysis else []) + ["[Runs](#runs)"]))
    if not runs:
        blocks.append(Para("No runs yet."))
    blocks += body + tables + analysis + _runs_section(runs)
    spec = folder / sweepdir.SPEC_FILE
    if header and spec.exists():
        text = spec.read_bytes().decode("utf-8", errors="replace")
        blocks.append(Details(f"The sweep spec ({sweepdir.SPEC_FILE})", [Code(text)]))
    for (made, _), png in zip(pending, draw_all([d for _, d in pending], workers, note=note)):
        made.png = png
    return title, blocks

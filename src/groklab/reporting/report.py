"""`groklab report DIR`: a run's or a sweep's results as `report.html` (one self-contained file, images
inline, opens offline) and `report.md` (images in `report_files/` beside it), written from the run folders.

What the report says is `build`'s (from the blocks of `blocks`); how it is written, `render`'s; this module
writes the files, replacing only a report of its own.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from groklab.errors import GroklabError
from groklab.files import DIR_MODE, atomic_write
from groklab.reporting.blocks import figures
from groklab.reporting.build import build
from groklab.reporting.render import FILES_DIR, MARKER, to_html, to_markdown
from groklab.store import rundir
# names this module held before it was split in two, kept for their callers (tests among them)
from groklab.reporting.experiment import seed_table
from groklab.reporting.heatmap import heatmap_axes, heatmap_cell
from groklab.reporting.runs import Run, run_command
from groklab.reporting.runs import load as _load

REPORT_HTML, REPORT_MD = rundir.REPORT_FILES[:2]
__all__ = ["FILES_DIR", "MARKER", "REPORT_HTML", "REPORT_MD", "Run", "_load", "build", "heatmap_axes",
           "heatmap_cell", "run_command", "seed_table", "to_html", "to_markdown", "write_report"]


def _refuse_foreign_report(folder: Path) -> None:
    """An earlier report of ours is replaced; files of the same names that groklab did not write are not."""
    md, page, files = folder / REPORT_MD, folder / REPORT_HTML, folder / FILES_DIR
    ours_md = md.is_file() and rundir.report_md_is_ours(md.read_bytes())
    if (md.exists() and not ours_md) or (page.exists() and not rundir.report_html_is_ours(page.read_bytes())):
        raise GroklabError(f"{folder} holds a {REPORT_MD} or {REPORT_HTML} that groklab did not write; move it away")
    figures = list(files.iterdir()) if files.is_dir() else []
    if files.exists() and (not files.is_dir() or any(not p.name.endswith(".png") or not p.is_file() for p in figures)
                           or (figures and not ours_md)):
        raise GroklabError(f"{files} holds files groklab's report did not write; move them away")


def write_report(folder: str | Path, echo: Callable[[str], None] | None = None, *,
                 workers: int | None = None) -> tuple[Path, Path]:
    """report.html (self-contained) and report.md with report_files/*.png, in `folder`; their paths.
    `workers`: processes drawing the figures (0: this one); by default as many as pay (`drawing`)."""
    folder = Path(folder)
    title, blocks = build(folder, workers=workers, note=echo)
    _refuse_foreign_report(folder)
    files = folder / FILES_DIR
    # the new figures go into a folder of their own, then replace the old one (names may differ now); a
    # kill at any point leaves the earlier report's figures or these, plus at most a stray temp folder
    fresh = Path(tempfile.mkdtemp(dir=folder, prefix=f".{FILES_DIR}.", suffix=".tmp"))
    try:
        for f in figures(blocks):
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

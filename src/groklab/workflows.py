"""`groklab reproduce seed-000|seed-003|nanda`: a seed report's (or a paper's) whole study as one sweep, then its
tables.

The studies are ordinary sweep specs shipped with the package (`groklab/experiments/studies/*.toml`,
`groklab.experiments.study`); the tables (`tables.md` in the sweep folder, beside the numbers each report gave)
are `groklab.reporting.study_tables`'. This module only orchestrates: train, then tables, then the report.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
import dataclasses
from pathlib import Path
from typing import Any

from groklab.experiments.spec import SweepSpec
from groklab.experiments.study import QUICK_DIVISOR, full_steps, study_spec
from groklab.experiments.sweep import run_sweep
from groklab.reporting.report import write_report
from groklab.reporting.study_tables import write_tables
from groklab.store.sweepdir import SweepFolder


def _scaled_overrides(spec: SweepSpec, overrides: dict[str, Any], quick: bool) -> dict[str, Any]:
    """The overrides `reproduce` trains with: --quick's shorter budget and sparser evaluations, and a learning
    rate that decays to the step budget follows the budget when it changes (--quick, or --max_steps), unless
    --lr_decay_steps says otherwise."""
    overrides = dict(overrides)
    if quick:
        steps = full_steps(spec) // QUICK_DIVISOR
        overrides.setdefault("max_steps", steps)
        overrides.setdefault("checkpoint_interval", max(steps // 4, 1))
        # evaluating the full splits dominates a short CPU try: a few log-spaced points are enough
        overrides.setdefault("eval_points_per_decade", 4)
        overrides.setdefault("eval_interval", 0)
        overrides.setdefault("compile", False)  # on a GPU, compiling 7 groups costs more than 2,000 steps take
    runs = spec.expand()
    to_budget = all(r.config.optim.lr_decay_steps == r.config.train.max_steps for r in runs)
    if "max_steps" in overrides and "lr_decay_steps" not in overrides and to_budget:
        overrides["lr_decay_steps"] = overrides["max_steps"]
    return overrides


def reproduce(study: str, out: str | Path | None = None, *, quick: bool = False,
              overrides: Mapping[str, Any] | None = None, argv: Sequence[str] | None = None,
              echo: Callable[[str], None] = print, **backend: Any) -> dict[str, int]:
    """Train the study (what is not trained yet), then write and print its tables, then its report."""
    spec = study_spec(study)
    overrides = _scaled_overrides(spec, dict(overrides or {}), quick)
    if quick:  # the report's first paragraph (the sweep's description) says what a quick study is
        spec = dataclasses.replace(spec, description=f"A pipeline check (--quick: {QUICK_DIVISOR}× fewer steps), "
                                   f"not comparable with the report. {spec.description}")
    folder = Path(out or f"out/{study}" + ("-quick" if quick else ""))
    with SweepFolder(folder) as claimed:  # held through the tables and the report too
        counts = run_sweep(spec, claimed, overrides, argv=argv, echo=echo, **backend)
        path = write_tables(study, folder)
        echo(path.read_text(encoding="utf-8"))
        echo(f"tables written to {path}")
        write_report(folder, echo=echo)
    return counts

"""reproduce's tables: the distance of each cell from the report and the summary lines are computed from the
runs; a --quick study is labelled a pipeline check; seed 000's learning rate decays to the step budget by
default, one flag away from constant, and --quick / --max_steps move the decay with the budget."""

import re

import pytest

from groklab import workflows
from groklab.experiments.study import study_spec
from groklab.reporting import study_tables
from groklab.reporting.seed003_tables import seed003_tables
from groklab.reporting.study_tables import SEED000_ADDSUB, SEED000_BATCH, seed000_tables
from groklab.reporting.table_cells import gap, held, within


def _row(experiment, seed, **values):
    row = {"experiment": experiment, "run_id": f"{experiment}/seed={seed}", "status": "done", "failure": None,
           "seed": seed, "tokenizer": "char", "learning_rate": 1e-3, "lr_decay_steps": 100000, "min_lr": None,
           "max_steps": 100000, "weight_decay": 0.1, "beta1": 0.9, "beta2": 0.95, "final_train_loss": 0.0,
           "final_val_loss": 0.01, "final_val_acc": 0.99, "best_val_acc": 0.995, "final_val_token_acc": 0.995,
           "steps_to_grok": None, "steps_to_grok_first": 900, "steps_to_grok_held": 1000,
           "steps_to_memorise": None, "steps_to_memorise_first": 400, "steps_to_memorise_held": 400}
    row.update(values)
    return row


def _seed000_rows(offset_pt=0.0, far=()):
    """Every add/sub cell at the report's test accuracy plus offset_pt (cells in `far` 5 points lower)."""
    rows = []
    for (op, p, layers), per_seed in SEED000_ADDSUB.items():
        for seed, (_, _, test) in per_seed.items():
            shift = -5.0 if (op, p, layers, seed) in far else offset_pt
            rows.append(_row("addsub", seed, operators=op, prime=p, n_layer=layers, batch_size=64,
                             final_train_acc=1.0, final_test_acc=(test + shift) / 100))
    for b in SEED000_BATCH:
        for seed in (42, 123, 456):
            rows.append(_row("batch", seed, operators="/", prime=97, n_layer=2, batch_size=b, final_train_acc=0.9,
                             final_test_acc=0.02, steps_to_grok_held=None, steps_to_grok_first=None))
    return rows


def test_gap_and_within_are_points_against_a_percentage():
    assert gap(0.9908, 99.04) == "+0.0 pt" and gap(0.9864, 99.04) == "\u22120.4 pt" and gap(None, 99.0) == "–"
    assert gap(0.95, 99.0, quick=True) == "–"
    assert within(0.97, 99.0) and within(0.9704, 99.04) and not within(0.969, 99.0) and not within(None, 99.0)


def test_held_falls_back_to_stays_above_for_summaries_from_before_it():
    assert held({"steps_to_grok_held": 5, "steps_to_grok_first": 4, "steps_to_grok": 9}, "grok") == 5
    assert held({"steps_to_grok_held": None, "steps_to_grok_first": 4, "steps_to_grok": None}, "grok") is None
    assert held({"steps_to_grok": 9}, "grok") == 9  # an old summary: no first crossing recorded


def test_seed000_summary_counts_the_cells_within_two_points():
    far = {("-", 113, 1, 123), ("+", 97, 2, 42), ("-", 97, 1, 456)}
    text = seed000_tables(_seed000_rows(offset_pt=-0.4, far=far), quick=False)
    assert "Add/sub, final test accuracy: **21 of 24** cells within 2 points of the report" in text
    assert "Add/sub, final train accuracy: **24 of 24**" in text
    assert "Division (batch-size ablation), final test accuracy: **0 of 12**" in text
    # a column per cell: how far each seed is from the report
    row = next(line for line in text.splitlines() if line.startswith("| Addition p=97 | Final test acc") and
               "99.04%" in line)
    assert row.endswith("| \u22120.4 pt / \u22120.4 pt / \u22120.4 pt |")
    assert "the farthest: " in text and "\u22125.0 pt" in text
    assert "cosine decay from 0.001 to 0.0001 at step 100,000 (the step budget)" in text
    assert "`--lr_decay_steps 0` keeps it constant" in text
    constant = [dict(r, lr_decay_steps=0) for r in _seed000_rows()]
    assert "Learning rate: constant at 0.001" in seed000_tables(constant, quick=False)


def test_seed000_counts_only_finished_cells():
    rows = _seed000_rows()
    rows[0]["status"] = "partial"
    text = seed000_tables(rows, quick=False)
    assert "**23 of 23** cells within 2 points of the report (1 of 24 not finished)" in text
    assert "1 run(s) not finished" in text


def test_a_quick_study_is_labelled_a_pipeline_check(tmp_path, monkeypatch):
    rows = [dict(r, max_steps=2000, lr_decay_steps=2000) for r in _seed000_rows()]
    monkeypatch.setattr(study_tables, "collect", lambda folder: (rows, []))
    text = study_tables.tables_text("seed-000", tmp_path)
    assert "**A pipeline check, not comparable with the report.** These runs trained 2,000 of the study's " \
           "100,000 steps" in text
    assert "not compared (a pipeline check)" in text and " pt" not in text
    monkeypatch.setattr(study_tables, "collect", lambda folder: (_seed000_rows(), []))
    assert "pipeline check" not in study_tables.tables_text("seed-000", tmp_path)


def _seed003_rows(val_by_size, memorise_by_size):
    rows = [_row("addsub", s, prime=p, operators="+,-", num_samples=5000, lr_decay_steps=0, max_steps=10000,
                 final_train_acc=1.0, final_val_acc=va, final_test_acc=va)
            for p, va in ((97, 0.995), (113, 0.95)) for s in (42, 493, 599)]
    for n, val in val_by_size.items():
        for s in (42, 493, 599):
            rows.append(_row("datasize", s, num_samples=n, operators="/", prime=97, lr_decay_steps=0,
                             max_steps=10000, final_train_acc=1.0, final_val_acc=val,
                             steps_to_memorise_first=memorise_by_size[n]))
    return rows


def test_seed003_tables_check_the_reports_claims_from_the_runs():
    text = seed003_tables(_seed003_rows({2500: 0.05, 5000: 0.3, 9312: 0.9}, {2500: 300, 5000: 600, 9312: 900}),
                          quick=False)
    assert "Mixed +/-, final val accuracy: **3 of 6** cells within 2 points of the report's 1.0 " \
           "(train accuracy: 6 of 6)" in text
    assert re.search(r"slows memorisation.*300 → 600 → 900.*\*\*matches\*\*", text)
    assert re.search(r"raises validation accuracy.*5\.00% → 30\.00% → 90\.00%: \*\*matches\*\*", text)
    assert "What cannot be compared" in text and "AdamW lr 0.001, weight decay 0.1" in text
    assert "Learning rate: constant at 0.001" in text
    worse = seed003_tables(_seed003_rows({2500: 0.5, 5000: 0.3, 9312: 0.9}, {2500: 900, 5000: 600, 9312: 300}),
                           quick=False)
    assert worse.count("**does not match**") == 2
    assert "not checked (a pipeline check)" in seed003_tables(_seed003_rows({2500: 0.5}, {2500: 1}), quick=True)


def _overrides(monkeypatch, tmp_path, **kwargs):
    given = []
    monkeypatch.setattr(workflows, "run_sweep", lambda spec, folder, overrides, **k: given.append((spec, overrides))
                        or {"failed": 0})
    monkeypatch.setattr(workflows, "write_tables", lambda study, folder: tmp_path / "t.md")
    monkeypatch.setattr(workflows, "write_report", lambda folder, echo: None)
    (tmp_path / "t.md").write_text("")
    workflows.reproduce("seed-000", tmp_path / "study", echo=lambda _: None, **kwargs)
    return given[-1]


def test_seed000_decays_to_the_step_budget_by_default_and_quick_scales_it(monkeypatch, tmp_path):
    runs = study_spec("seed-000").expand()
    assert {(r.config.optim.lr_decay_steps, r.config.train.max_steps) for r in runs} == {(100000, 100000)}
    _, full = _overrides(monkeypatch, tmp_path, overrides={"device": "cpu"})
    assert "lr_decay_steps" not in full  # the study's own: 100,000
    spec, quick = _overrides(monkeypatch, tmp_path, quick=True, overrides={"device": "cpu"})
    assert quick["max_steps"] == 2000 and quick["lr_decay_steps"] == 2000
    assert spec.description.startswith("A pipeline check (--quick")  # the report's first paragraph
    _, constant = _overrides(monkeypatch, tmp_path, quick=True, overrides={"device": "cpu", "lr_decay_steps": 0})
    assert constant["lr_decay_steps"] == 0
    _, longer = _overrides(monkeypatch, tmp_path, overrides={"device": "cpu", "max_steps": 5000})
    assert longer["lr_decay_steps"] == 5000
    given = []
    monkeypatch.setattr(workflows, "run_sweep", lambda spec, folder, overrides, **k: given.append(overrides) or {})
    workflows.reproduce("nanda", tmp_path / "n", quick=True, overrides={"device": "cpu"}, echo=lambda _: None)
    assert "lr_decay_steps" not in given[-1]  # a study without decay keeps none


def test_an_unknown_study_is_one_line():
    from groklab.errors import GroklabError

    with pytest.raises(GroklabError, match="no study 'seed-999'; choose one of: seed-000, seed-003, nanda"):
        study_spec("seed-999")


def test_settings_other_than_the_studys_are_said_above_the_tables():
    """`reproduce seed-000 --precision tf32` (or --tokenizer number): the tables say so; the budget and its
    schedule are said by their own lines, and a study trained as it is says nothing."""
    from groklab.config import flat_fields
    from groklab.reporting.table_cells import settings_line

    spec = study_spec("seed-000")
    rows = [{"run_id": p.run_id, **flat_fields(p.config)} for p in spec.expand(echo=lambda _: None)]
    assert settings_line(rows, spec) == ""
    rows[0] = {**rows[0], "precision": "tf32", "max_steps": 2000, "device": "cuda:0"}  # budget, "how": not listed
    rows[1] = {**rows[1], "precision": "bf16", "tokenizer": "number"}
    assert settings_line(rows, spec) == ("Trained with settings other than the study's own: precision = bf16 / tf32 "
                                         "(the study: fp32); tokenizer = number (the study: char).")

"""The three phases read off the curves as groklab.analysis.phases defines them, and `groklab reproduce nanda` end to
end on a tiny modulus: every run analysed, the phase picture per run, the tables beside the paper's numbers."""

import json
import random
from importlib import resources

from groklab.data.equations import DatasetSpec, make_splits
from groklab.analysis.phases import phases, stays_below
from groklab.workflows import study_spec, write_tables
from groklab.experiments.sweep import run_sweep
from groklab.experiments.spec import parse_spec


def _curves():
    steps = list(range(100, 3100, 100))
    metrics = []
    for s in steps:
        val = 5.0 + s / 100 if s <= 1500 else max(20.0 * 10 ** (-(s - 1500) / 250), 1e-4)  # peak at 1,500
        metrics.append({"step": s, "train_loss": 1e-3, "train_acc": 1.0 if s >= 300 else 0.5, "val_loss": val})
    rows = [{"step": s, "excluded_loss": abs(s - 600) / 100 + 0.1} for s in range(100, 3100, 200)]  # lowest at 500/700
    return metrics, rows


def test_phase_boundaries_follow_their_definitions():
    metrics, rows = _curves()
    p = phases(metrics, rows)
    # val loss < 0.01 first at 1500 + 250 * log10(2000) = 2325 -> the evaluation at 2,400
    assert p["grokked"] == 2400 and p["grokked_stays"] == 2400
    assert p["memorised"] in (500, 700) and p["memorised_by"] == "lowest excluded loss"
    assert p["circuit_formed"] == 1800  # a tenth of the peak (20 -> 2) first at 1,750 -> the evaluation at 1,800
    no_snapshots = phases(metrics, [])
    assert no_snapshots["memorised"] == 300 and no_snapshots["memorised_by"] == "train accuracy stays ≥ 0.99"


def test_a_run_that_never_groks_has_no_cleanup():
    metrics, rows = _curves()
    for m in metrics:
        m["val_loss"] = 4.0
    p = phases(metrics, rows)
    assert p["grokked"] is None and p["circuit_formed"] is None and p["grokked_stays"] is None


def test_stays_below_needs_every_later_value_below():
    assert stays_below([1, 2, 3, 4], [0.5, 0.001, 0.5, 0.001], 0.01) == 4
    assert stays_below([1, 2], [0.001, 0.5], 0.01) is None


def test_the_study_split_is_the_papers_split():
    """Nanda et al.'s gen_train_test: the pairs (i, j) in row order, random.seed(seed), shuffle, the first
    int(frac * n) for training. groklab's data_seed 0 split of the study is the same, pair for pair."""
    spec = study_spec("nanda").expand()[2]  # seed 0, 30 % train
    assert spec.config.data.train_fraction == 0.3
    pairs = [(i, j) for i in range(113) for j in range(113)]
    random.seed(0)
    random.shuffle(pairs)
    theirs = pairs[: int(0.3 * len(pairs))]
    ours = make_splits(DatasetSpec(ops="+", p=113, fractions=(0.3, 0.7, 0.0), seed=0))["train"]
    assert [f"{a}+{b}={(a + b) % 113}" for a, b in theirs] == ours


def test_nanda_tables_on_a_tiny_version_of_the_study(tmp_path):
    """The shipped study with a tiny modulus and model and two of its fractions, one seed (its own axes cut
    down): every run analysed, the phase picture per run, the tables beside the paper's numbers."""
    text = resources.files("groklab.experiments").joinpath("studies", "nanda.toml").read_text()
    text = text.replace("train_fraction = [0.5, 0.4, 0.3, 0.25]", "train_fraction = [0.5, 0.3]")
    text = text.replace("val_fraction = [0.5, 0.6, 0.7, 0.75]", "val_fraction = [0.5, 0.7]")
    text = text.replace("seed = [0, 1, 2]", "seed = [0]")
    out = tmp_path / "nanda"
    counts = run_sweep(parse_spec(text, "nanda.toml"), out, {"prime": 11, "n_embd": 16, "n_head": 2,
                                                             "max_steps": 40, "eval_interval": 10,
                                                             "snapshot_interval": 20, "snapshots_per_decade": 1,
                                                             "checkpoint_interval": 40}, echo=lambda _: None)
    assert counts["failed"] == 0
    tables = write_tables("nanda", out).read_text()
    assert "| 30% |" in tables and "| 8,300 |" in tables and "| 1,100 |" in tables and "~5" in tables
    assert "Memorisation ends" in tables and (out / "nanda_fractions.png").read_bytes()[:4] == b"\x89PNG"
    assert len(sorted(out.rglob("analysis_phases.png"))) == 2
    analysis = json.loads(next(out.rglob("analysis.json")).read_text())
    assert set(analysis["phases"]) >= {"memorised", "circuit_formed", "grokked", "grokked_stays"}

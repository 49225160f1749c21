"""Runs on a text to memorise get the measures that fit them: per-token accuracy, the greedy reconstruction
from the first character (the same as `groklab sample --temperature 0`), and no grokking verdict anywhere."""

import json

import pytest

from groklab import plots
from groklab.cli import main
from groklab.reporting.report import write_report
from groklab.analysis.sample import complete
from groklab.store.loadrun import load_run


def _train_text(tmp_path, text, *extra):
    (tmp_path / "text.txt").write_text(text)
    out = tmp_path / "run"
    argv = ["train", str(tmp_path / "text.txt"), "--n_layer", "1", "--n_head", "2", "--n_embd", "32",
            "--batch_size", "8", "--learning_rate", "1e-2", "--out_dir", str(out), "--no-progress",
            "--eval_points_per_decade", "3", *extra]
    return out, main(argv)


def test_a_memorised_text_is_reconstructed_and_gets_no_grokking_verdict(tmp_path, capsys):
    out, rc = _train_text(tmp_path, "hello world", "--max_steps", "150", "--block_size", "16")
    assert rc == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert "grok" not in line  # neither "grokked" nor "did not grok"
    assert "per-token accuracy 1.0000" in line and "reproduces all 11 characters" in line
    summary = json.loads((out / "summary.json").read_text())
    assert summary["task"] == "text" and summary["steps_to_grok"] is None and summary["grokking_ratio"] is None
    assert summary["reconstruction"] == {"text": "hello world", "reproduces_text": True, "first_difference": None,
                                         "characters": 11}
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(0 <= r["train_token_acc"] <= 1 for r in rows) and rows[-1]["train_token_acc"] == 1.0


def test_the_reconstruction_is_what_greedy_sampling_prints(tmp_path, capsys):
    """A text longer than the context (windows of 4): the run's reconstruction, right or wrong, is exactly
    `complete(prompt=first character, temperature 0)`."""
    text = "I love machine learning"
    out, rc = _train_text(tmp_path, text, "--max_steps", "20", "--block_size", "4")
    assert rc == 0
    rec = json.loads((out / "summary.json").read_text())["reconstruction"]
    run = load_run(out)
    assert rec["text"] == complete(run, text[0], len(text) - 1, temperature=0, top_k=None, generator=None)
    first = rec["first_difference"]
    assert (first is None) == rec["reproduces_text"] == (rec["text"] == text)
    if first is not None:
        assert rec["text"][:first] == text[:first] and rec["text"][first] != text[first]
        assert f"departs from it at character {first + 1} of 23" in capsys.readouterr().out


def test_text_curves_and_report_speak_of_tokens_and_give_no_verdict(tmp_path, monkeypatch):
    out, rc = _train_text(tmp_path, "hello world", "--max_steps", "10", "--block_size", "16", "--no-plot")
    assert rc == 0
    labels = []

    def keep_labels(fig, path, dpi):
        labels.extend(ax.get_ylabel() for ax in fig.axes)
        return b"png"

    monkeypatch.setattr(plots, "save_figure", keep_labels)
    write_report(out, workers=0)  # drawn here: a worker would not see the patched save_figure
    assert plots.TEXT_LOSS_LABEL in labels and plots.TEXT_ACC_LABEL in labels
    assert plots.LOSS_LABEL not in labels  # not "nats per answer token": the loss is on every token
    md = (out / "report.md").read_text()
    assert "grokked" not in md and "did not grok" not in md and "n/a (a text)" in md
    assert "final val token acc" in md


def test_old_metrics_without_token_accuracy_still_report(tmp_path):
    """Run folders written before per-token accuracy existed load and report, the column showing '–'."""
    from helpers import tiny_config
    from groklab.store.sweepdir import collect
    from groklab.training.loop import train_runs

    train_runs([tiny_config(tmp_path / "run", max_steps=3)], log=lambda _: None)
    metrics = tmp_path / "run/metrics.jsonl"
    rows = [{k: v for k, v in json.loads(x).items() if "token" not in k} for x in metrics.read_text().splitlines()]
    metrics.write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = json.loads((tmp_path / "run/summary.json").read_text())
    summary["final"] = {k: v for k, v in summary["final"].items() if "token" not in k}
    (tmp_path / "run/summary.json").write_text(json.dumps(summary))
    [row], _ = collect(tmp_path / "run")
    assert row["final_val_token_acc"] is None and row["final_val_acc"] is not None
    write_report(tmp_path / "run")
    md = (tmp_path / "run/report.md").read_text()
    header = next(line for line in md.splitlines() if "final val token acc" in line)
    col = [c.strip() for c in header.split("|")].index("final val token acc")
    body = md.splitlines()[md.splitlines().index(header) + 2]
    assert [c.strip() for c in body.split("|")][col] == "–"


@pytest.mark.parametrize("text", [False, True])
def test_equation_curves_keep_their_labels(text, monkeypatch):
    labels = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path, dpi: labels.extend(a.get_ylabel() for a in fig.axes))
    history = [{"step": s, "train_loss": 1 / s, "train_acc": 0.5, "train_token_acc": 0.7, "val_loss": 1.0,
                "val_acc": 0.1, "val_token_acc": 0.3, "test_loss": None, "test_acc": None} for s in (1, 10)]
    plots.plot_curves(history, None, "t", {"memorised": None}, text=text)
    assert labels == ([plots.TEXT_LOSS_LABEL, plots.TEXT_ACC_LABEL] if text else [plots.LOSS_LABEL, plots.ACC_LABEL])

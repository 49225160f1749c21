"""What a resume or a fresh start does to the files already in a run folder: results without their config are
never wiped, a resume needs every evaluation up to its checkpoint, restores the files derived from the config
(or refuses a changed one), drops outputs computed from the earlier weights, and a fresh start deletes only
what groklab wrote and says what it replaced."""

import shutil
from pathlib import Path

import pytest

from helpers import assert_clean_error, hide, run_cli, stop_after, tiny_config
from groklab.training.interrupts import Interrupted
from groklab.training.loop import train_runs

QUIET = {"log": lambda _: None}
TINY = ["--operators", "+", "--prime", "7", "--tokenizer", "char", "--n_layer", "1", "--n_head", "2",
        "--n_embd", "16", "--batch_size", "8", "--max_steps", "12", "--eval_points_per_decade", "3",
        "--checkpoint_interval", "5", "--learning_rate", "3e-3", "--weight_decay", "0.1", "--train_fraction", "0.6",
        "--val_fraction", "0.2", "--no_plot", "--no_progress", "--device", "cpu", "-q"]  # tiny_config's run


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_finished_run_without_its_config_is_refused_not_wiped(tmp_path, capsys, reliability):
    run = tmp_path / "run"
    train_runs([tiny_config(run)], **QUIET)
    (run / "config.json").unlink()
    before = snapshot(run)
    code, _, err = run_cli(capsys, ["train", *TINY, "--seed", "7", "--max_steps", "5", "--out_dir", str(run)])
    message = assert_clean_error(code, err)
    assert "summary.json, state.safetensors" in message and "config.json" in message
    assert snapshot(run) == before
    reliability("strict resume", "a finished run's config.json deleted, then `groklab train` with another seed and "
                "budget on its folder", f"exit {code}: {hide(message, tmp_path)}; not one byte changed")
    for name in ("summary.json", "state.safetensors"):  # its final weights and evaluations are still results
        (run / name).unlink()
    before = snapshot(run)
    code, _, err = run_cli(capsys, ["train", *TINY, "--seed", "7", "--max_steps", "5", "--out_dir", str(run)])
    message = assert_clean_error(code, err)
    assert "model.safetensors, metrics.jsonl" in message and snapshot(run) == before  # it was wiped, exit 0
    reliability("strict resume", "a finished run's config.json, state and summary deleted (its weights and metrics "
                "kept), then `groklab train` with another seed on its folder",
                f"exit {code}: {hide(message, tmp_path)}; not one byte changed")


def measures(summary: dict) -> dict:
    """A summary without its timings."""
    return {k: ({n: x for n, x in v.items() if n != "elapsed_s"} if k == "final" else v) for k, v in summary.items()
            if k not in ("wall_time_s", "run_dir", "already")}


def partial_run(tmp_path: Path, monkeypatch, name: str = "run", steps: int = 7, **changes) -> Path:
    """A tiny run stopped (as by Ctrl-C) after `steps` steps and saved there."""
    cfg = tiny_config(tmp_path / name, **changes)
    with pytest.raises(Interrupted):
        train_runs([cfg], stop=stop_after(monkeypatch, steps), **QUIET)
    monkeypatch.undo()
    return tmp_path / name


@pytest.mark.parametrize("damage", ["deleted", "cut to its first line"])
def test_a_resume_whose_metrics_lack_evaluations_before_the_checkpoint_is_refused(tmp_path, monkeypatch, capsys,
                                                                                    damage, reliability):
    [ref] = train_runs([tiny_config(tmp_path / "ref")], **QUIET)
    run = partial_run(tmp_path, monkeypatch)  # evaluated at steps 1, 2, 5; saved at 7
    metrics = (run / "metrics.jsonl").read_bytes()
    if damage == "deleted":
        (run / "metrics.jsonl").unlink()
    else:
        (run / "metrics.jsonl").write_bytes(metrics.split(b"\n")[0] + b"\n")
    before = snapshot(run)
    code, _, err = run_cli(capsys, ["train", *TINY, "--out_dir", str(run)])
    message = assert_clean_error(code, err)
    assert f"{run / 'metrics.jsonl'}: lacks" in message and "step 7" in message
    assert snapshot(run) == before
    (run / "metrics.jsonl").write_bytes(metrics)  # the complete history back: the resume ends as the reference
    [done] = train_runs([tiny_config(run)], **QUIET)
    assert measures(done) == measures(ref)
    reliability("strict resume", f"a stopped run's metrics.jsonl {damage}, then the same command",
                f"exit {code}: {hide(message, tmp_path)}; nothing changed; with the file back it resumed and ended "
                "as the uninterrupted run")


def derived(run: Path) -> dict[str, bytes]:
    return {k: v for k, v in snapshot(run).items() if k == "vocab.json" or k.startswith("data/")}


@pytest.mark.parametrize("loss", ["vocab.json", "data"])
def test_a_resume_writes_again_the_files_derived_from_the_config(tmp_path, monkeypatch, capsys, loss, reliability):
    train_runs([tiny_config(tmp_path / "ref")], **QUIET)
    run = partial_run(tmp_path, monkeypatch)
    shutil.rmtree(run / loss) if (run / loss).is_dir() else (run / loss).unlink()
    [done] = train_runs([tiny_config(run)], **QUIET)
    assert done["status"] == "done"
    assert derived(run) == derived(tmp_path / "ref")  # byte for byte what a fresh start writes
    code, out, err = run_cli(capsys, ["evaluate", str(run), "--split", "train"])
    assert code == 0, err
    reliability("strict resume", f"a stopped run's {loss} deleted, then the same command",
                f"the resume wrote {loss} again, byte-identical to a fresh start's; `evaluate --split train` works")


def test_a_resume_over_a_changed_copy_of_its_data_is_refused(tmp_path, monkeypatch, capsys, reliability):
    run = partial_run(tmp_path, monkeypatch)
    with open(run / "data" / "train.txt", "a") as f:
        f.write("5+5=3\n")
    before = snapshot(run)
    code, _, err = run_cli(capsys, ["train", *TINY, "--out_dir", str(run)])
    message = assert_clean_error(code, err)
    assert f"{run / 'data' / 'train.txt'}: differs from what this run trained on" in message
    assert snapshot(run) == before
    reliability("strict resume", "a line added to a stopped run's data/train.txt, then the same command",
                f"exit {code}: {hide(message, tmp_path)}; nothing changed")


def test_a_resume_deletes_the_outputs_computed_from_the_earlier_weights(tmp_path, monkeypatch, capsys, reliability):
    run = partial_run(tmp_path, monkeypatch, tokenizer="number")  # analyze reads numbers as tokens
    for command in (["analyze", str(run)], ["report", str(run)]):
        code, _, err = run_cli(capsys, command)
        assert code == 0, err
    assert (run / "analysis.json").exists() and (run / "report.md").exists()
    lines = []
    train_runs([tiny_config(run, tokenizer="number")], log=lines.append)
    assert not [p.name for p in run.iterdir() if p.name.startswith(("analysis", "report"))]
    [said] = [line for line in lines if "deleted" in line]
    assert "analysis.json" in said and "report.md" in said and "step 7" in said
    reliability("strict resume", "`groklab analyze` and `groklab report` on a stopped run, then the same command",
                f"the resume deleted the outputs of the earlier weights, saying: {hide(said, tmp_path)}")


def test_a_fresh_start_deletes_only_what_groklab_wrote_and_says_what(tmp_path, monkeypatch, capsys, reliability):
    run = tmp_path / "run"
    train_runs([tiny_config(run)], **QUIET)
    (run / "state.safetensors").unlink()
    (run / "summary.json").unlink()  # no checkpoint, not finished: the same command starts it afresh
    (run / "report.md").write_text("mine\n")
    (run / "report_files").mkdir()
    (run / "report_files" / "notes.txt").write_text("mine\n")
    lines = []
    [done] = train_runs([tiny_config(run)], log=lines.append)
    assert done["status"] == "done"
    assert (run / "report.md").read_text() == (run / "report_files" / "notes.txt").read_text() == "mine\n"
    [said] = [line for line in lines if "started afresh" in line]
    assert "metrics.jsonl" in said and "model.safetensors" in said and "report" not in said
    reliability("non-run folders", "a run's checkpoint and summary deleted, a report.md and report_files/notes.txt "
                "of the user's put in its folder, then the same command", "started afresh, the user's two files "
                f"kept, saying: {hide(said, tmp_path)}")


@pytest.mark.parametrize("nan_after, says", [(1, "it has no finite checkpoint: add --resume to train it again "
                                                   "from the start"),
                                             (11, "add --resume to train it again from its last finite checkpoint "
                                                  "(step 10)")])
def test_a_failed_run_says_what_resume_would_do(tmp_path, monkeypatch, capsys, nan_after, says, reliability):
    from groklab.engine.step import Engine

    real = Engine.step

    def poisoned(self):
        out = real(self)
        if self.steps_taken == nan_after:
            self.model.flat.fill_(float("nan"))
        return out

    run = tmp_path / "run"
    monkeypatch.setattr(Engine, "step", poisoned)
    assert run_cli(capsys, ["train", *TINY, "--out_dir", str(run)])[0] == 1
    monkeypatch.undo()
    code, out, err = run_cli(capsys, ["train", *TINY, "--out_dir", str(run)])  # the same command: still failed
    said = (out + err).strip().splitlines()[-1]
    assert code == 1 and said.endswith(says), said
    reliability("checkpoints", f"a run gone non-finite after step {nan_after}, then the same command",
                f"exit {code}: {hide(said, tmp_path)}")

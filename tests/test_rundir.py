"""The run folder is a contract: one writer, nothing groklab did not write is touched, a resume with any
change to what the run is is refused naming the field, checkpoints are finite and checked, every file read
back is checked by shape. Each case records what groklab did in docs/reliability.md."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Literal, get_args, get_origin

import pytest
import torch
from safetensors.torch import load_file

from groklab.store import rundir
from groklab.config import SECTION_CLASSES, field_roles
from groklab.data.equations import DatasetSpec, make_splits, write_dataset
from groklab.engine.step import Engine
from groklab.errors import CheckpointError, GroklabError
from groklab.lock import FolderInUse, FolderLock
from groklab.training.loop import train_runs
from helpers import assert_clean_error, hide, run_cli, signal_at_step, stop_after, tiny_config

QUIET = {"log": lambda _: None}
TINY = ["--n_layer", "1", "--n_head", "2", "--n_embd", "16", "--batch_size", "8", "--max_steps", "12",
        "--eval_points_per_decade", "3", "--checkpoint_interval", "5", "--train_fraction", "0.6",
        "--val_fraction", "0.2", "--no_plot", "--no_progress", "--device", "cpu"]  # CPU tests, on any machine


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- one writer

@pytest.mark.parametrize("command", ["train", "run"])
def test_a_second_writer_is_refused_in_one_line_and_changes_nothing(tmp_path, capsys, monkeypatch, reliability,
                                                                    command):
    """A run stopped by Ctrl-C, then the same command while another process holds its folder: refused by the
    lock, in one line, with nothing said or written before it. (This test once passed its flags to a run of
    other settings, so the refusal it recorded was the config check's, never the lock's; and `run` said
    "...: resuming it" before it was refused.)"""
    argv = [command, "--operators", "+", "--prime", "7", *TINY, "--out_dir", str(tmp_path / "run")]
    signal_at_step(monkeypatch, 7)
    code, _, err = run_cli(capsys, argv)
    assert code == 130 and "interrupted (SIGINT) at step 7" in err, (code, err)
    monkeypatch.undo()
    before = snapshot(tmp_path / "run")
    with FolderLock(tmp_path / "run"):  # as another process training it would hold it
        if command == "train":
            with pytest.raises(FolderInUse, match=f"is in use by pid {os.getpid()}"):
                train_runs([rundir.read_config(tmp_path / "run").cfg.replace(resume=True)], **QUIET)
        code, out, err = run_cli(capsys, argv + ["--resume"])
    line = assert_clean_error(code, err)
    assert f"is in use by pid {os.getpid()}" in line and out == ""
    assert snapshot(tmp_path / "run") == before
    reliability("concurrent writers", f"a second `groklab {command}` on a stopped run's folder that another "
                "process holds", f"exit 2, nothing said before it, nothing changed: {hide(line, tmp_path)}")


def test_two_commands_started_at_once_on_one_folder_one_trains_one_is_refused(tmp_path, reliability):
    """Two terminals, the same --out_dir, different learning rates, started together: today both exited 0 and
    the folder mixed the two. Now one trains, the other says who holds the folder, and the folder is the
    winner's alone."""
    cmd = [sys.executable, "-m", "groklab", "train", "--operators", "+", "--prime", "7", *TINY,
           "--max_steps", "400", "--out_dir", str(tmp_path / "run")]
    procs = [subprocess.Popen(cmd + ["--lr", lr], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for lr in ("0.003", "0.001")]
    outs = [p.communicate(timeout=300) for p in procs]
    codes = [p.returncode for p in procs]
    assert sorted(codes) == [0, 2], (codes, outs)
    winner, loser = (0, 1) if codes[0] == 0 else (1, 0)
    assert "is in use by pid" in outs[loser][1].strip().splitlines()[-1]
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["config"]["optim"]["learning_rate"] == (0.003, 0.001)[winner]
    assert saved["argv"][-2:] == ["--lr", ("0.003", "0.001")[winner]]
    meta = json.loads((tmp_path / "run" / "meta.json").read_text())
    assert meta["resumes"] == [] and (tmp_path / "run" / "summary.json").exists()
    reliability("concurrent writers", "two `groklab train` on one --out_dir with different --lr, started together",
                f"exit codes {sorted(codes)}; the loser said: {hide(outs[loser][1].strip().splitlines()[-1], tmp_path)}; "
                "config.json, weights and metrics are the winner's alone")


def test_a_lock_dies_with_its_process(tmp_path):
    script = f"from groklab.lock import FolderLock; import os; FolderLock({str(tmp_path)!r}).acquire(); os._exit(0)"
    subprocess.run([sys.executable, "-c", script], check=True)
    with FolderLock(tmp_path):  # the holder is gone: free, though the lock file stays
        pass


def test_two_sweeps_on_one_folder_are_refused(tmp_path, capsys, reliability):
    spec = tmp_path / "s.toml"
    spec.write_text('[base]\noperators = "+"\nprime = 7\nmax_steps = 2\nn_layer = 1\nn_head = 2\nn_embd = 16\n'
                    'train_fraction = 0.6\nval_fraction = 0.2\n[grid]\nseed = [1, 2]\n')
    with FolderLock(tmp_path / "out"):
        code, _, err = run_cli(capsys, ["sweep", str(spec), "--out", str(tmp_path / "out")])
    line = assert_clean_error(code, err)
    assert "is in use by pid" in line and rundir.entries(tmp_path / "out") == []
    reliability("concurrent writers", "a second `groklab sweep` on a sweep folder another process holds",
                f"exit 2, nothing written: {hide(line, tmp_path)}")


# ---------------------------------------------------------------- folders that are not ours

def _users_folder(path: Path) -> dict[str, bytes]:
    (path / "data").mkdir(parents=True)
    (path / "config.json").write_text('{"my": "settings"}')
    (path / "metrics.jsonl").write_text("my notes\n")
    (path / "data" / "train.txt").write_text("1+1=2\n")
    (path / "spec.toml").write_text("mine")
    (path / "results").mkdir()
    return snapshot(path)


@pytest.mark.parametrize("command", ["train", "sweep", "report"])
def test_a_folder_groklab_did_not_write_is_never_written_into(tmp_path, capsys, command, reliability):
    folder = tmp_path / "mine"
    before = _users_folder(folder)
    spec = tmp_path / "s.toml"
    spec.write_text('[base]\noperators = "+"\nprime = 7\nmax_steps = 2\n[grid]\nseed = [1]\n')
    argv = {"train": ["train", "--operators", "+", "--prime", "7", *TINY, "--out_dir", str(folder)],
            "sweep": ["sweep", str(spec), "--out", str(folder)],
            "report": ["report", str(folder)]}[command]
    code, _, err = run_cli(capsys, argv)
    line = assert_clean_error(code, err)
    assert snapshot(folder) == before and sorted(p.name for p in folder.iterdir()) == sorted(
        ["config.json", "data", "metrics.jsonl", "results", "spec.toml"])
    reliability("non-run folders", f"`groklab {command}` into a folder holding the user's own config.json, "
                "metrics.jsonl, data/, spec.toml, results/", f"exit 2, nothing changed: {hide(line, tmp_path)}")


def test_report_keeps_a_report_files_folder_it_did_not_write(tmp_path, capsys, reliability):
    train_runs([tiny_config(tmp_path / "run", max_steps=3)], **QUIET)
    (tmp_path / "run" / "report_files").mkdir()
    (tmp_path / "run" / "report_files" / "thesis.tex").write_text("months of work")
    code, _, err = run_cli(capsys, ["report", str(tmp_path / "run")])
    line = assert_clean_error(code, err)
    assert (tmp_path / "run" / "report_files" / "thesis.tex").read_text() == "months of work"
    assert not (tmp_path / "run" / "report.html").exists()
    (tmp_path / "run" / "report_files" / "thesis.tex").unlink()
    assert main_ok(capsys, ["report", str(tmp_path / "run")])  # its own earlier report is replaced, twice
    assert main_ok(capsys, ["report", str(tmp_path / "run")])
    reliability("non-run folders", "`groklab report` on a run whose report_files/ holds the user's thesis.tex",
                f"exit 2, the file kept: {hide(line, tmp_path)}")


def main_ok(capsys, argv) -> bool:
    code, _, err = run_cli(capsys, argv)
    assert code == 0, err
    return True


# ---------------------------------------------------------------- strict resume

def _other_value(name: str, value, tp):
    """A valid value of this field that differs from `value`."""
    special = {"n_head": 4, "n_embd": 32, "block_size": 12, "operators": "-", "prime": 11, "tokenizer": "number",
               "loss_on": "all", "mask_first_n": 2, "num_samples": 40, "train_fraction": 0.5, "val_fraction": 0.3,
               "min_lr": 1e-4, "lr_decay_steps": 10, "beta1": 0.8, "beta2": 0.9, "grok_threshold": 0.9,
               "grokfast_alpha": 0.9, "embedding_init_std": 0.1, "dropout": 0.1}
    if name in special:
        return special[name]
    if get_origin(tp) is Literal:
        return next(v for v in get_args(tp) if v != value)
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value * 2 if value else 0.5
    raise AssertionError(f"no other value for {name}")


def test_a_resume_with_any_change_to_what_the_run_is_is_refused_naming_the_field(tmp_path, monkeypatch, reliability):
    from typing import get_type_hints

    stop = stop_after(monkeypatch, 7)
    cfg = tiny_config(tmp_path / "run", max_steps=40)
    with pytest.raises(GroklabError, match="interrupted"):
        train_runs([cfg], stop=stop, **QUIET)
    monkeypatch.undo()
    before = snapshot(tmp_path / "run")
    refused = []
    roles = field_roles()
    for section, cls in SECTION_CLASSES.items():
        hints = get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if roles[f.name] != "is":
                continue
            new = _other_value(f.name, getattr(getattr(cfg, section), f.name), hints[f.name])
            with pytest.raises(GroklabError) as err:
                train_runs([cfg.replace(**{f.name: new})], **QUIET)
            assert f"{f.name}=" in str(err.value) and "holds a run with" in str(err.value), (f.name, err.value)
            refused.append(f.name)
    assert snapshot(tmp_path / "run") == before
    assert {"seed", "batch_size", "max_steps", "learning_rate", "n_layer", "eval_interval"} <= set(refused)
    # and a change in how it executes is allowed, and recorded
    [done] = train_runs([cfg.replace(checkpoint_interval=3, plot=False)], **QUIET)
    resume = json.loads((tmp_path / "run" / "meta.json").read_text())["resumes"][-1]
    assert done["status"] == "done" and resume["changed"]["checkpoint_interval"] == [5, 3]
    reliability("strict resume", f"an interrupted run resumed with each of its {len(refused)} config fields of what "
                f"it is changed ({', '.join(refused)})", "every one refused, naming the field and both values; "
                "nothing in the folder changed; a change of checkpoint_interval (how it runs) resumed and was "
                "recorded in meta.json")


def test_the_data_is_compared_by_content_not_by_its_path(tmp_path, monkeypatch, reliability):
    spec = DatasetSpec("+", 7, fractions=(0.6, 0.2, 0.2))
    write_dataset(spec, make_splits(spec), tmp_path / "dd")
    cfg = tiny_config(tmp_path / "run", operators=None, prime=None, train_fraction=None, val_fraction=None,
                      data_dir=str(tmp_path / "dd"), max_steps=40)
    stop = stop_after(monkeypatch, 7)
    with pytest.raises(GroklabError, match="interrupted"):
        train_runs([cfg], stop=stop, **QUIET)
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    respelled = cfg.replace(data_dir="./dd")  # the same folder by another name resumes
    shutil.rmtree(tmp_path / "dd")
    other = DatasetSpec("+", 7, fractions=(0.6, 0.2, 0.2), seed=1)
    write_dataset(other, make_splits(other), tmp_path / "dd")  # regenerated there with another split
    with pytest.raises(GroklabError, match="trained on other data") as err:
        train_runs([respelled], **QUIET)
    shutil.rmtree(tmp_path / "dd")
    write_dataset(spec, make_splits(spec), tmp_path / "dd")
    [done] = train_runs([respelled], **QUIET)
    assert done["status"] == "done" and done["steps"] == 40
    reliability("strict resume", "the run's --data_dir regenerated with another split, then the same command",
                f"refused: {hide(str(err.value), tmp_path)}; the same data spelled ./dd instead of its absolute "
                "path resumed")


def test_changing_the_step_budget_is_refused_and_says_how_to_train_longer(tmp_path, capsys):
    train_runs([tiny_config(tmp_path / "run", max_steps=12)], **QUIET)
    code, _, err = run_cli(capsys, ["train", "--operators", "+", "--prime", "7", *TINY, "--max_steps", "20",
                                    "--out_dir", str(tmp_path / "run"), "--seed", "42", "--lr", "0.003",
                                    "--weight_decay", "0.1"])
    line = assert_clean_error(code, err)
    assert "max_steps=12" in line and "max_steps=20" in line and "start a new run" in line


def test_a_finished_run_shows_its_result_and_resume_changes_nothing(tmp_path, capsys, reliability):
    argv = ["run", "--max_steps", "30", "--out_dir", str(tmp_path / "main"), "--no_progress", "--no_plot"]
    assert run_cli(capsys, argv)[0] == 0
    before = snapshot(tmp_path / "main")
    for again in (argv, [*argv, "--resume"]):
        code, out, err = run_cli(capsys, again)
        assert code == 0, err
        assert "already finished: nothing trained" in out and "30 steps" in out
    assert snapshot(tmp_path / "main") == before
    reliability("strict resume", "`groklab run` twice, then `groklab run --resume` on the finished run",
                f"exit 0 each time, the result shown ({hide(out.strip().splitlines()[-1], tmp_path)[:90]}…), "
                "not one byte of the folder changed")


# ---------------------------------------------------------------- checkpoints

def test_a_run_that_goes_non_finite_keeps_its_last_finite_checkpoint(tmp_path, monkeypatch, capsys, reliability):
    real = Engine.step

    def poisoned(self):
        out = real(self)
        if self.steps_taken == 11:  # after the evaluation at 10, before the checkpoint at 15
            self.model.flat.fill_(float("nan"))
        return out

    monkeypatch.setattr(Engine, "step", poisoned)
    [failed] = train_runs([tiny_config(tmp_path / "run", max_steps=40)], **QUIET)
    monkeypatch.undo()
    run = tmp_path / "run"
    assert failed["status"] == "failed" and "non-finite weights or optimizer state at step 15" in failed["reason"]
    assert rundir.saved_step(run) == 10
    weights = load_file(run / "model.safetensors")
    assert all(torch.isfinite(t).all() for t in weights.values())
    capsys.readouterr()
    code, out, _ = run_cli(capsys, ["evaluate", str(run), "--split", "val", "--json"])
    assert code == 0 and json.loads(out)["step"] == 10 and json.loads(out)["loss"] == json.loads(out)["loss"]
    code, out, _ = run_cli(capsys, ["sample", str(run), "--prompts", "1+2=", "--temperature", "0"])
    assert code == 0 and out.startswith("1+2=")
    [again] = train_runs([tiny_config(run, max_steps=40)], **QUIET)  # the same command: still failed
    assert again["status"] == "failed"
    [retried] = train_runs([tiny_config(run, max_steps=40)], retry_failed=True, **QUIET)
    assert retried["status"] == "done" and not (run / "failed.json").exists()
    assert json.loads((run / "meta.json").read_text())["resumes"][-1]["step"] == 10
    reliability("checkpoints", "weights turned NaN at step 11 (after the evaluation at 10, before the checkpoint at 15)",
                f"failed ({failed['reason']}); model.safetensors and state.safetensors kept step 10, finite; "
                "`evaluate` and `sample` work on it; a retry resumed from step 10 and finished")


def test_non_finite_weights_are_refused_when_loaded(tmp_path, capsys):
    from groklab.store import checkpoint as ckpt

    train_runs([tiny_config(tmp_path / "run", max_steps=3)], **QUIET)
    path = tmp_path / "run" / "model.safetensors"
    weights, meta = ckpt.load_weights(path)
    weights["wte"][0, 0] = float("inf")
    ckpt.save_weights(path, weights, meta)  # as a version without the finite check might have written
    code, _, err = run_cli(capsys, ["evaluate", str(tmp_path / "run")])
    assert "the weights are not finite" in assert_clean_error(code, err)


def test_weights_of_another_architecture_or_a_flipped_byte_are_refused(tmp_path, capsys, reliability):
    train_runs([tiny_config(tmp_path / "four", max_steps=3, n_head=4, norm_residual=True)], **QUIET)
    train_runs([tiny_config(tmp_path / "two", max_steps=3, n_head=2)], **QUIET)
    shutil.copy(tmp_path / "four" / "model.safetensors", tmp_path / "two" / "model.safetensors")  # same shapes
    code, _, err = run_cli(capsys, ["evaluate", str(tmp_path / "two")])
    arch = assert_clean_error(code, err)
    assert "n_head=4" in arch and "n_head=2" in arch
    raw = bytearray((tmp_path / "four" / "model.safetensors").read_bytes())
    raw[-5] ^= 0x01  # one bit inside the tensor data
    (tmp_path / "four" / "model.safetensors").write_bytes(bytes(raw))
    code, _, err = run_cli(capsys, ["sample", str(tmp_path / "four"), "--prompts", "1+2="])
    flipped = assert_clean_error(code, err)
    assert "does not match its checksum" in flipped
    raw = bytearray((tmp_path / "two" / "state.safetensors").read_bytes())
    raw[-5] ^= 0x01
    (tmp_path / "two" / "state.safetensors").write_bytes(bytes(raw))
    (tmp_path / "two" / "summary.json").unlink()
    with pytest.raises(CheckpointError, match="does not match its checksum"):
        train_runs([tiny_config(tmp_path / "two", max_steps=3, n_head=2)], **QUIET)
    reliability("checkpoints", "model.safetensors of an n_head 4 --norm_residual run copied into an n_head 2 run "
                "(same shapes)", f"exit 2: {hide(arch, tmp_path)}")
    reliability("checkpoints", "one bit flipped inside the tensor data of model.safetensors, and of state.safetensors",
                f"`sample` exit 2 ({hide(flipped, tmp_path)}); the resume refused the same way")


# ---------------------------------------------------------------- files read back, by shape

WRONG_SHAPES = {
    "config.json": ['[]', '{"config": 7}', '{"config": {"train": 3}}', '{"config": {}, "argv": "groklab"}'],
    "summary.json": ['[]', '{"final": 3}', '{"steps_to_grok": "soon", "final": {}}',
                     '{"final": {"val_acc": "high"}}'],
    "meta.json": ['[]', '{"resumes": 5}', '{"resumes": [3]}'],
    "metrics.jsonl": ['[]\n', '{"step": "one"}\n', '{"step": 3, "val_acc": "x"}\n', '{"step": 5}\n{"step": 2}\n'],
}


@pytest.mark.parametrize("name", list(WRONG_SHAPES))
def test_valid_json_of_the_wrong_shape_is_one_line_in_every_reader(tmp_path, capsys, name, reliability):
    train_runs([tiny_config(tmp_path / "good", max_steps=3, tokenizer="number", snapshots_per_decade=1)], **QUIET)
    seen = set()
    for k, text in enumerate(WRONG_SHAPES[name]):
        run = tmp_path / f"bad{k}"
        shutil.copytree(tmp_path / "good", run)
        (run / name).write_text(text)
        commands = [["report", str(run)], ["sample", str(run), "--prompts", "1+2="], ["evaluate", str(run)],
                    ["analyze", str(run)],
                    ["train", "--operators", "+", "--prime", "7", *TINY, "--max_steps", "3", "--tokenizer", "number",
                     "--snapshots_per_decade", "1", "--out_dir", str(run), "--resume"]]
        for argv in commands:
            code, _, err = run_cli(capsys, argv)
            if code != 0:  # a reader that does not read this file may succeed; none may crash
                seen.add(assert_clean_error(code, err).split(": ", 2)[-1][:60])
    assert seen
    reliability("files read back", f"{name} replaced by valid JSON of the wrong shape ({len(WRONG_SHAPES[name])} "
                "kinds) under report, sample, evaluate, analyze and train --resume",
                f"one line, exit 2, never a traceback: e.g. {sorted(seen)[0]}")


# ---------------------------------------------------------------- `--seeds` folders, paths, locale, modes, bounds

def test_a_seeds_folder_is_a_folder_groklab_knows(tmp_path, capsys):
    out = tmp_path / "seeds"
    code, _, err = run_cli(capsys, ["train", "--operators", "+", "--prime", "7", *TINY, "--seeds", "1,2",
                                    "--out_dir", str(out)])
    assert code == 0, err
    assert (out / "seed1" / "summary.json").exists() and (out / "sweep.json").exists()
    assert main_ok(capsys, ["report", str(out)])
    from groklab.store.sweepdir import collect

    rows, _ = collect(out)
    assert sorted(r["seed"] for r in rows) == [1, 2] and {r["status"] for r in rows} == {"done"}
    pytest.importorskip("pandas")
    from groklab.analysis import results

    assert sorted(results.load(out).runs["seed"]) == [1, 2]


def test_a_link_inside_a_spec_data_folder_that_leads_out_is_refused_unread(tmp_path, reliability):
    from groklab.experiments.spec import SpecError, load_spec

    secret = tmp_path / "secret.txt"
    secret.write_text("my password is hunter2\n")
    specs = tmp_path / "specs"
    (specs / "dd").mkdir(parents=True)
    (specs / "dd" / "train.txt").symlink_to(secret)
    (specs / "dd" / "val.txt").write_text("1+1=2\n")
    (specs / "s.toml").write_text('[base]\ndata_dir = "dd"\n[grid]\nseed = [1]\n')
    with pytest.raises(SpecError, match="is a link that points outside the spec's folder") as err:
        load_spec(specs / "s.toml")
    assert "hunter2" not in str(err.value)
    reliability("paths", "a spec's data folder whose train.txt is a symlink to a file outside the spec's folder",
                f"refused before reading it, the content never quoted: {hide(str(err.value), tmp_path)}")


def test_a_non_utf8_locale_completes_a_sweep_and_a_run(tmp_path, reliability):
    spec = tmp_path / "s.toml"
    spec.write_text('[base]\noperators = "+"\nprime = 7\nmax_steps = 12\nn_layer = 1\nn_head = 2\nn_embd = 16\n'
                    'train_fraction = 0.6\nval_fraction = 0.2\nearly_stop_evals = 1\ngrok_threshold = 0.01\n'
                    '[grid]\nseed = [1, 2]\n')
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
    env.pop("PYTHONIOENCODING", None)
    base = [sys.executable, "-m", "groklab"]
    sweep = subprocess.run([*base, "sweep", str(spec), "--out", str(tmp_path / "sw")], env=env, capture_output=True)
    run = subprocess.run([*base, "train", "--operators", "+", "--prime", "7", *TINY, "--out_dir",
                          str(tmp_path / "run")], env=env, capture_output=True)
    assert sweep.returncode == 0 and run.returncode == 0, (sweep.stderr, run.stderr)
    assert b"2 done, 0 failed" in sweep.stdout and not list((tmp_path / "sw").rglob("failed.json"))
    assert "· 3,600 parameters" in (tmp_path / "sw" / "sweep.log").read_text(encoding="utf-8")  # UTF-8 anyway
    assert b"\\u2265" in run.stdout  # the console degrades to an escape: "val acc never stayed \u2265 0.99"
    reliability("locale", "`groklab sweep` and `groklab train` under LC_ALL=C, PYTHONUTF8=0 (ASCII console)",
                "both completed (exit 0; 2 done, 0 failed); sweep.log is UTF-8; '≥' printed as \\u2265")


def test_files_honour_the_umask(tmp_path):
    script = ("import os, sys; os.umask(0o002); from groklab.files import atomic_write, write_json; "
              f"atomic_write({str(tmp_path / 'a')!r}, 'x'); write_json({str(tmp_path / 'b.json')!r}, {{}})")
    subprocess.run([sys.executable, "-c", script], check=True)
    for name in ("a", "b.json"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o664


@pytest.mark.parametrize("argv, message", [
    (["--max_group", "-1"], "--max_group/--max-group: must be at least 1, got -1"),
    (["--concurrent_groups", "0"], "--concurrent_groups/--concurrent-groups: must be at least 1, got 0"),
    (["--max_runs", "0"], "--max_runs/--max-runs: must be at least 1, got 0"),
])
def test_sweep_counts_below_one_are_refused(tmp_path, capsys, argv, message):
    spec = tmp_path / "s.toml"
    spec.write_text('[base]\noperators = "+"\nprime = 7\n[grid]\nseed = [1]\n')
    code, _, err = run_cli(capsys, ["sweep", str(spec), "--out", str(tmp_path / "o"), *argv])
    assert code == 2 and message in err and not (tmp_path / "o").exists()


def test_no_plot_prints_no_curves_path(tmp_path, capsys):
    code, out, _ = run_cli(capsys, ["train", "--operators", "+", "--prime", "7", *TINY, "--out_dir",
                                    str(tmp_path / "r")])
    assert code == 0 and "curves.png" not in out.strip().splitlines()[-1]


def test_bounds_come_from_what_the_engine_holds(tmp_path, monkeypatch, capsys, reliability):
    from groklab.training.loop import schedule

    t0 = time.time()
    first = list(zip(range(5), schedule(10**12, 16, 1)))
    assert [s for _, s in first] == [1, 2, 3, 4, 5] and time.time() - t0 < 1  # lazy: no set of 10^12 steps
    stop = stop_after(monkeypatch, 3)
    with pytest.raises(GroklabError, match="interrupted"):
        train_runs([tiny_config(tmp_path / "long", max_steps=10**12, eval_interval=1)], stop=stop, **QUIET)
    monkeypatch.undo()
    code, _, err = run_cli(capsys, ["train", "--operators", "+", "--prime", "7", *TINY, "--seed", str(2**63),
                                    "--out_dir", str(tmp_path / "s")])
    seed = assert_clean_error(code, err)
    assert "seed: must fit in 64 bits" in seed and not (tmp_path / "s").exists()
    assert run_cli(capsys, ["train", "--operators", "+", "--prime", "7", *TINY, "--seed", str(2**63 - 1),
                            "--out_dir", str(tmp_path / "s")])[0] == 0
    spec = tmp_path / "big.toml"
    spec.write_text("[base]\noperators = '+'\nprime = 7\n[grid]\nseed = " + str(list(range(1000)))
                    + "\nlearning_rate = " + str([0.001 * (k + 1) for k in range(10)])
                    + "\nweight_decay = " + str([0.01 * (k + 1) for k in range(100)]) + "\n")
    t0 = time.time()
    code, _, err = run_cli(capsys, ["sweep", str(spec), "--out", str(tmp_path / "big")])
    grid = assert_clean_error(code, err)
    assert "expands to 1,000,000 runs" in grid and "--max_runs" in grid and time.time() - t0 < 5
    reliability("bounds", "--eval_interval 1 --max_steps 10^12; --seed 2^63; a 1000×10×100 grid",
                f"the first trains (a lazy schedule; interrupted at step 3); {hide(seed, tmp_path)}; "
                f"{hide(grid, tmp_path)[:120]}")

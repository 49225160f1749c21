"""Faults injected for real: kill -9 at random moments, torn and foreign files, a run that diverges inside a
group. Each case adds its observed outcome to docs/reliability.md."""

import inspect
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from groklab.store import checkpoint as ckpt
from groklab.cli import main
from groklab.errors import GroklabError
from groklab.store.rundir import saved_step
from groklab.training.loop import train_runs
from helpers import same_tensors, tiny_config

TRAIN = ["train", "--operators", "+", "--prime", "7", "--n_layer", "1", "--n_head", "2", "--n_embd", "16",
         "--batch_size", "8", "--max_steps", "1500", "--checkpoint_interval", "50", "--eval_points_per_decade", "6",
         "--train_fraction", "0.6", "--val_fraction", "0.2", "--no_plot", "--no_progress"]


def groklab(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "groklab", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def strip(rows):
    return [{k: v for k, v in r.items() if k != "elapsed_s"} for r in rows]


def rows(run: Path):
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def assert_same_run(a: Path, b: Path) -> None:
    """Same evaluations, final weights and Adam state, bit for bit."""
    assert strip(rows(a)) == strip(rows(b))
    for name in ("model.safetensors", "state.safetensors"):
        assert same_tensors(a / name, b / name), name


def test_kill_9_at_random_moments_then_the_same_command_ends_bit_identical(tmp_path, reliability):
    t0 = time.time()
    ref = groklab(*TRAIN, "--out_dir", str(tmp_path / "ref"))
    assert ref.wait() == 0, ref.stderr.read()
    wall = time.time() - t0

    rng = random.Random(int(os.environ.get("GROKLAB_KILL_SEED", "7")))
    cmd = [*TRAIN, "--out_dir", str(tmp_path / "killed")]
    kills = []
    for _ in range(3):
        proc = groklab(*cmd)
        # the moment: some time after this attempt wrote a checkpoint of its own (a kill before it would only
        # repeat the last attempt), anywhere in training, checkpoint writes and evaluations included
        before = saved_step(tmp_path / "killed")
        deadline = time.time() + 4 * wall
        while proc.poll() is None and saved_step(tmp_path / "killed") == before and time.time() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.3) * wall)
        if proc.poll() is not None:  # finished before the kill: nothing was interrupted
            break
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        kills.append(saved_step(tmp_path / "killed"))
    if not (tmp_path / "killed" / "summary.json").exists():  # a kill can land after the run has finished
        last = groklab(*cmd)
        assert last.wait() == 0, last.stderr.read()
    assert kills and any(k for k in kills), f"no kill landed after a checkpoint: {kills}"

    a, b = tmp_path / "ref", tmp_path / "killed"
    assert_same_run(a, b)
    resumes = json.loads((b / "meta.json").read_text())["resumes"]
    reliability("training run", f"SIGKILL of `groklab train` at {len(kills)} random moments, then the same command",
                f"resumed from checkpoints at steps {[r['step'] for r in resumes]}; final weights, Adam state and "
                f"all {len(rows(b))} evaluations bit-identical to an uninterrupted run")


class Killed(Exception):
    """Stands for a SIGKILL at one chosen instant (the random kills above can miss it)."""


def test_a_kill_between_the_last_checkpoints_two_files_resumes_bit_identical(tmp_path, monkeypatch, reliability):
    # The last checkpoint writes two files, the weights and the state a resume starts from. A kill after the
    # first and before the second must leave something the same command finishes exactly: with the state
    # written first, the resume started at the last step, trained nothing and kept the older weights file.
    ref = tiny_config(tmp_path / "ref", max_steps=12, checkpoint_interval=5)
    train_runs([ref], log=lambda _: None)
    cfg = tiny_config(tmp_path / "killed", max_steps=12, checkpoint_interval=5)
    writes: list[str] = []

    def killing(name, real):
        def save(*args, **kwargs):
            if inspect.signature(real).bind(*args, **kwargs).arguments["meta"]["step"] == 12:
                writes.append(name)
                if len(writes) == 2:
                    raise Killed(name)
            return real(*args, **kwargs)
        return save

    monkeypatch.setattr(ckpt, "save_weights", killing("weights", ckpt.save_weights))
    monkeypatch.setattr(ckpt, "save_state", killing("state", ckpt.save_state))
    with pytest.raises(Killed):
        train_runs([cfg], log=lambda _: None)
    monkeypatch.undo()
    saved = saved_step(tmp_path / "killed")
    train_runs([cfg.replace(resume=True)], log=lambda _: None)

    assert_same_run(tmp_path / "ref", tmp_path / "killed")
    reliability("training run", f"killed between the last checkpoint's two files (after {writes[0]}, before "
                f"{writes[1]}), then the same command", f"resumed from step {saved}; final weights, Adam state "
                "and evaluations bit-identical to an uninterrupted run")


def test_a_diverging_run_fails_alone_and_its_group_goes_on(tmp_path, reliability):
    good = [tiny_config(tmp_path / f"g{s}", seed=s, max_steps=60) for s in (1, 2)]
    bad = tiny_config(tmp_path / "bad", seed=3, max_steps=60, learning_rate=1e4)
    out = train_runs([good[0], bad, good[1]], log=lambda _: None)
    assert [r["status"] for r in out] == ["done", "failed", "done"]
    failure = json.loads((tmp_path / "bad/failed.json").read_text())
    assert failure["step"] is not None and "non-finite" in failure["reason"]
    assert not (tmp_path / "bad/summary.json").exists()
    alone = train_runs([tiny_config(tmp_path / f"a{s}", seed=s, max_steps=60) for s in (1, 2)], log=lambda _: None)
    for s, together in zip((1, 2), (out[0], out[2])):
        assert strip(rows(tmp_path / f"g{s}")) == strip(rows(tmp_path / f"a{s}"))
        assert together["final"]["val_loss"] == alone[s - 1]["final"]["val_loss"]
    reliability("training run", "learning rate 1e4 planted in one run of a group of three",
                f"that run stopped and marked failed ({failure['reason']}); the other two ran all 60 steps with "
                "metrics identical to the same runs trained without it")


def test_torn_and_foreign_files_are_reported_not_loaded(tmp_path, capsys, reliability):
    cfg = tiny_config(tmp_path / "run", max_steps=20)
    train_runs([cfg], log=lambda _: None)
    run = tmp_path / "run"
    (run / "summary.json").unlink()  # as if killed: resumable again
    resume = ["train", "--operators", "+", "--prime", "7", "--out_dir", str(run), "--resume"]

    def attempt(fault: str, damage) -> str:
        saved = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
        damage()
        with pytest.raises(GroklabError) as err:
            train_runs([cfg.replace(resume=True)], log=lambda _: None)
        for name, data in saved.items():
            (run / name).write_bytes(data)
        reliability("run folder on start", fault, str(err.value).replace(str(tmp_path), "…"))
        return str(err.value)

    state = (run / "state.safetensors").read_bytes()
    assert "does not match its checksum" in attempt("state.safetensors cut in half (a torn write)",
                                             lambda: (run / "state.safetensors").write_bytes(state[: len(state) // 2]))
    assert "not a groklab checkpoint" in attempt(
        "state.safetensors replaced by the weights file (a foreign safetensors file)",
        lambda: (run / "state.safetensors").write_bytes((run / "model.safetensors").read_bytes()))
    assert "not a valid JSON file" in attempt("config.json torn mid-write",
                                              lambda: (run / "config.json").write_text('{"config": {"data": '))
    text = (run / "config.json").read_text()
    assert '"compile": null' in text
    assert "compile: expected bool, got 'banana'" in attempt(
        'config.json edited to say "compile": "banana"',
        lambda: (run / "config.json").write_text(text.replace('"compile": null', '"compile": "banana"')))
    assert "metrics.jsonl:2: not a metrics line" in attempt(
        "metrics.jsonl with a foreign line", lambda: (run / "metrics.jsonl").write_text(
            (run / "metrics.jsonl").read_text().replace("\n", "\nGARBAGE\n", 1)))
    # and through the command line: one line, exit 2, nothing loaded
    (run / "state.safetensors").write_bytes(b"\x80\x04\x95" + os.urandom(64))  # pickle protocol header
    assert main(resume) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("groklab: error:") and len(err.splitlines()) == 1
    reliability("run folder on start", "state.safetensors replaced by pickle bytes, `groklab train --resume`",
                err.replace(str(tmp_path), "…"))


def test_same_command_after_a_kill_before_the_first_checkpoint_starts_over(tmp_path, capsys):
    cfg = tiny_config(tmp_path / "run", max_steps=20)
    train_runs([cfg], log=lambda _: None)
    for name in ("summary.json", "state.safetensors", "model.safetensors"):  # killed before step 5's save
        (tmp_path / "run" / name).unlink()
    out = train_runs([cfg], log=lambda _: None)
    assert out[0]["status"] == "done" and out[0]["steps"] == 20


def test_no_code_path_can_unpickle(reliability):
    """Every loader reads safetensors, JSON or text: no module imports pickle or calls torch.load/np.load."""
    import ast

    src = Path(__file__).resolve().parent.parent / "src" / "groklab"
    found = []
    for path in sorted(src.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
                found += [f"{path.name}: import {n}" for n in names if n and n.split(".")[0] in ("pickle", "dill",
                                                                                                  "joblib", "cloudpickle")]
            if isinstance(node, ast.Attribute) and node.attr in ("load", "loads") and \
                    isinstance(node.value, ast.Name) and node.value.id in ("torch", "np", "numpy", "pickle"):
                found.append(f"{path.name}:{node.lineno}: {node.value.id}.{node.attr}")
    assert found == []
    reliability("safe loading", f"static scan of all {len(list(src.rglob('*.py')))} modules for pickle imports "
                "and torch.load / np.load calls", f"found {len(found)}")

"""Sweeps: specs are checked before anything runs, runs are grouped, failures are recorded, a killed sweep
resumes to the same result, and the results store holds every run and every evaluation."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from groklab.store import checkpoint as ckpt
from groklab.store.rundir import saved_step
from groklab.analysis import results
from groklab.cli import main
from groklab.experiments.sweep import run_sweep
from groklab.experiments.spec import SpecError, load_spec, parse_spec
from tests.helpers import same_tensors, signal_at_step

TINY_BASE = """
[base]
op = "+"
p = 7
n_layer = 1
n_head = 2
n_embd = 16
max_steps = 40
batch_size = 8
eval_points_per_decade = 3
checkpoint_interval = 10
train_fraction = 0.6
val_fraction = 0.2
plot = false
"""


def write_spec(folder: Path, body: str, base: str = TINY_BASE) -> Path:
    path = folder / "spec.toml"
    path.write_text('name = "tiny"\n' + base + body)
    return path


def metrics(run_dir: Path) -> list[dict]:
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "elapsed_s"} for r in rows]


def test_grid_and_zip_expand_in_order_with_aliases(tmp_path):
    spec = parse_spec(TINY_BASE + """
[grid]
seed = [1, 2]
wd = [0.1, 1.0]
[zip]
lr = [1e-3, 3e-3]
warmup_steps = [0, 10]
""", "s.toml", tmp_path)
    runs = spec.expand()
    assert len(runs) == 2 * 2 * 2
    assert runs[0].params == {"seed": 1, "weight_decay": 0.1, "learning_rate": 1e-3, "warmup_steps": 0}
    assert runs[1].params == {"seed": 1, "weight_decay": 0.1, "learning_rate": 3e-3, "warmup_steps": 10}
    assert runs[-1].config.optim.weight_decay == 1.0 and runs[-1].config.train.seed == 2
    assert runs[0].config.data.prime == 7 and runs[0].config.data.operators == "+"
    assert runs[0].run_id == "s/seed=1,weight_decay=0.1,learning_rate=0.001,warmup_steps=0"
    # a CLI override reaches every run, but may not silently flatten an axis
    assert {r.config.train.max_steps for r in spec.expand({"max_steps": 5})} == {5}
    with pytest.raises(SpecError, match="seed is an axis"):
        spec.expand({"seed": 3})


@pytest.mark.parametrize("body, message", [
    ("[grid]\nn_layr = [1, 2]\n", r"\[grid\] n_layr: no such config field \(did you mean 'n_layer'\?\)"),
    ("[base]\nweight_decy = 1.0\n", "weight_decy: no such config field"),
    ("[grid]\nn_layer = [1, '2']\n", "n_layer: expected int, got '2'"),
    ("[grid]\nseed = 3\n", "seed must be a list"),
    ("[grid]\nseed = []\n", "seed is an empty list"),
    ("[grid]\nseed = [1, 1]\n", "seed lists a value twice"),
    ("[zip]\nseed = [1, 2]\nlr = [1e-3]\n", "same length"),
    ("[grid]\nout_dir = ['a', 'b']\n", "out_dir is set by the sweep"),
    ("[grids]\nseed = [1]\n", "unknown top-level key 'grids'"),
    ("[grid]\ntokenizer = ['char', 'bpe']\n", "tokenizer: expected one of 'char', 'number', 'hybrid', got 'bpe'"),
    ("[grid]\nn_head = [3]\n", "n_embd: 16 is not divisible by n_head=3"),
    ("[grid\nseed = [1]\n", "not valid TOML"),
])
def test_bad_specs_are_refused_naming_file_and_field(tmp_path, body, message):
    # the base holds every field once; a body [base] table replaces it
    base = "" if body.startswith("[base]") else TINY_BASE
    path = write_spec(tmp_path, body, base)
    with pytest.raises(SpecError, match=message) as err:
        load_spec(path).expand()
    assert str(path) in str(err.value)


def test_a_spec_may_not_point_outside_its_folder(tmp_path):
    inner = tmp_path / "specs"
    inner.mkdir()
    (tmp_path / "secret").mkdir()
    for bad in ("../secret", "/etc"):
        (inner / "s.toml").write_text(f'[base]\ndata_dir = "{bad}"\n')
        with pytest.raises(SpecError, match="points outside the spec's folder"):
            load_spec(inner / "s.toml")
    (inner / "data").mkdir()
    (inner / "s.toml").write_text('[base]\ndata_dir = "data"\n')
    assert load_spec(inner / "s.toml").base["data_dir"] == str((inner / "data").resolve())


def test_cli_rejects_a_typo_before_anything_runs(tmp_path, capsys):
    path = write_spec(tmp_path, "[grid]\nsede = [1, 2]\n")
    assert main(["sweep", str(path), "--out", str(tmp_path / "out")]) == 2
    assert "sede: no such config field (did you mean 'seed'?)" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_sweep_stopped_after_a_run_failed_resumes_the_survivor_exactly(tmp_path, monkeypatch, reliability):
    """One group, one run that goes non-finite and one that trains; Ctrl-C after the failure, then the same
    sweep: the survivor resumes in a group of one. It ended 0.01 apart in weights from an uninterrupted sweep,
    since a lone run normalised with another LayerNorm kernel than a group; now a run does the same arithmetic
    in a group of any size (CPU)."""
    from groklab.experiments.sweep import Interrupted

    spec = load_spec(write_spec(tmp_path, "[grid]\nlr = [3e-3, 1e3]\n", TINY_BASE + 'device = "cpu"\n'))
    run_sweep(spec, tmp_path / "whole", echo=lambda _: None)
    signal_at_step(monkeypatch, 25)
    with pytest.raises(Interrupted):
        run_sweep(spec, tmp_path / "stopped", echo=lambda _: None)
    monkeypatch.undo()
    failed = tmp_path / "stopped/runs/tiny/learning_rate=1000"
    assert (failed / "failed.json").exists() and saved_step(tmp_path / "stopped/runs/tiny/learning_rate=0.003") == 25
    counts = run_sweep(spec, tmp_path / "stopped", echo=lambda _: None)
    assert counts == {"done": 1, "failed": 1, "partial": 0, "pending": 0}
    a, b = (tmp_path / d / "runs/tiny/learning_rate=0.003" for d in ("whole", "stopped"))
    assert metrics(a) == metrics(b) and same_tensors(a / "model.safetensors", b / "model.safetensors")
    assert same_tensors(a / "state.safetensors", b / "state.safetensors")
    reliability("interrupts", "Ctrl-C in a sweep after one run of a group failed, then the same command (the "
                "survivor resumes alone)", "the survivor's weights, Adam state and evaluations bit-identical to an "
                "uninterrupted sweep")


def test_sweep_records_failures_isolates_them_and_skips_finished_runs(tmp_path):
    # on the CPU: the runs alone must equal them in a group to the bit; on a GPU a group of another size runs its
    # GEMMs at other shapes, for which cuBLAS may choose other algorithms (other rounding)
    spec = load_spec(write_spec(tmp_path, "[grid]\nseed = [1, 2]\nlr = [3e-3, 1e3]\n", TINY_BASE + 'device = "cpu"\n'))
    counts = run_sweep(spec, tmp_path / "out", echo=lambda _: None)
    assert counts == {"done": 2, "failed": 2, "partial": 0, "pending": 0}
    r = results.load(tmp_path / "out")
    failed = r.runs[r.runs.status == "failed"]
    assert set(failed.learning_rate) == {1e3}
    assert all(f.startswith("non-finite") and f"step {int(s):,}" in f for f, s in zip(failed.failure, failed.failed_step))
    done = r.runs[r.runs.status == "done"]
    assert done.steps.tolist() == [40, 40] and done.final_val_acc.notna().all()
    assert set(r.evals.run_id) == set(r.runs.run_id) and {"step", "val_acc", "seed", "learning_rate"} <= set(r.evals)
    assert (tmp_path / "out/results/runs.parquet").exists() and (tmp_path / "out/results/evals.parquet").exists()

    # the healthy runs are untouched by their diverging neighbours: same metrics as a sweep without them
    alone = load_spec(write_spec(tmp_path, "[grid]\nseed = [1, 2]\nlr = [3e-3]\n", TINY_BASE + 'device = "cpu"\n'))
    run_sweep(alone, tmp_path / "alone", echo=lambda _: None)
    for seed in (1, 2):
        name = f"tiny/seed={seed},learning_rate=0.003"
        assert metrics(tmp_path / "out/runs" / name) == metrics(tmp_path / "alone/runs" / name)

    # the same command again trains nothing
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "out/runs").rglob("metrics.jsonl")}
    lines = []
    assert run_sweep(spec, tmp_path / "out", echo=lines.append)["done"] == 2
    # a failed run is not a finished one: the start line says which are which
    assert "2 already finished · 2 failed (kept: --retry_failed trains them again) · 0 to train" in lines[0]
    assert before == {p: p.stat().st_mtime_ns for p in (tmp_path / "out/runs").rglob("metrics.jsonl")}
    # a failed run is tried again only when asked
    assert run_sweep(spec, tmp_path / "out", retry_failed=True, echo=lambda _: None)["failed"] == 2


def test_a_changed_run_in_an_existing_sweep_folder_is_refused(tmp_path):
    spec = load_spec(write_spec(tmp_path, "[grid]\nseed = [1]\n"))
    run_sweep(spec, tmp_path / "out", echo=lambda _: None)
    with pytest.raises(SpecError, match="already exists there with max_steps=40"):
        run_sweep(spec, tmp_path / "out", {"max_steps": 50}, echo=lambda _: None)
    # compiling changes how a run is computed, not what: a sweep begun plainly may go on compiled
    lines = []
    run_sweep(spec, tmp_path / "out", {"compile": True}, echo=lines.append)
    assert "1 already finished · 0 to train" in lines[0]
    # adding runs to a sweep is fine: only the new one trains
    more = load_spec(write_spec(tmp_path, "[grid]\nseed = [1, 2]\n"))
    lines = []
    run_sweep(more, tmp_path / "out", echo=lines.append)
    assert "1 already finished · 1 to train" in lines[0]


def test_a_sweep_killed_mid_way_resumes_to_the_uninterrupted_result(tmp_path):
    body = "[grid]\nseed = [1, 2]\nlr = [3e-3, 1e-2]\n"
    # on the CPU, whatever the machine: bit-exact needs deterministic kernels, which torch promises there
    base = TINY_BASE.replace("max_steps = 40", "max_steps = 400").replace("checkpoint_interval = 10",
                                                                         "checkpoint_interval = 25")
    base += 'device = "cpu"\n'
    spec_path = write_spec(tmp_path, body, base)
    # the reference runs in a process of its own too: the same settings as the killed one (this test
    # process runs with torch's deterministic-algorithms switch on, a `groklab` process does not)
    clean = [sys.executable, "-m", "groklab", "sweep", str(spec_path), "--out", str(tmp_path / "clean")]
    assert subprocess.run(clean, capture_output=True).returncode == 0

    cmd = [sys.executable, "-m", "groklab", "sweep", str(spec_path), "--out", str(tmp_path / "killed")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    states = []
    while time.time() < deadline and proc.poll() is None:
        states = list((tmp_path / "killed").rglob("state.safetensors"))
        # kill once all four runs hold the same checkpoint step. A kill in the middle of a group's checkpoint
        # (one run saved at step N, another still at N - 25) is survived too, but those runs then resume in
        # separate groups, and a group of one takes the single-run kernels: equal to rounding, not to the bit
        try:
            if len(states) == 4 and len({saved_step(p.parent) for p in states}) == 1:
                break
        except ckpt.CheckpointError:  # caught mid-rename: look again
            pass
        time.sleep(0.002)
    assert states, "no checkpoint appeared before the sweep ended"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not list((tmp_path / "killed").rglob("summary.json"))

    again = subprocess.run(cmd, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    first = again.stdout.splitlines()[0]
    assert "resuming" in first and "(0 resuming)" not in first
    assert len(list((tmp_path / "killed").rglob("summary.json"))) == 4
    for run in (tmp_path / "clean/runs/tiny").iterdir():
        assert metrics(run) == metrics(tmp_path / "killed/runs/tiny" / run.name), run.name
        assert same_tensors(run / "model.safetensors", tmp_path / "killed/runs/tiny" / run.name / "model.safetensors")
    meta = json.loads(next((tmp_path / "killed/runs/tiny").iterdir()).joinpath("meta.json").read_text())
    assert meta["resumes"] and meta["resumes"][0]["step"] % 25 == 0


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU"))])
def test_groups_trained_concurrently_match_groups_trained_in_turn(tmp_path, device):
    # on a GPU: three groups captured one after another, then replayed at once in three threads and streams.
    # Bit for bit there too, since each engine captures on its own stream: captured on torch's one default
    # capture stream, the graphs shared a cuBLAS workspace and the runs ended 5 % apart in weights (H200)
    spec = load_spec(write_spec(tmp_path, "[grid]\nseed = [1, 2, 3]\n", TINY_BASE + f'device = "{device}"\n'))
    run_sweep(spec, tmp_path / "a", max_group=1, concurrent_groups=3, echo=lambda _: None)
    run_sweep(spec, tmp_path / "b", max_group=1, concurrent_groups=1, echo=lambda _: None)
    for run in (tmp_path / "a/runs/tiny").iterdir():
        other = tmp_path / "b/runs/tiny" / run.name
        assert metrics(run) == metrics(other), run.name
        assert same_tensors(run / "model.safetensors", other / "model.safetensors"), run.name
        meta = json.loads((run / "meta.json").read_text())
        assert meta["group_size"] == 1
        # compiled on a GPU by default, never on a CPU unless asked
        assert meta["engine"] == ("cuda-graph + torch.compile" if device == "cuda" else "eager: not a CUDA device")


def test_results_load_reads_a_single_run_folder_too(tmp_path):
    from groklab.training.loop import train_runs
    from helpers import tiny_config

    train_runs([tiny_config(tmp_path / "run")], log=lambda _: None)
    r = results.load(tmp_path / "run")
    assert r.runs.status.tolist() == ["done"] and r.runs.last_step.tolist() == [12]
    assert r.evals.step.tolist() == [1, 2, 5, 10, 12]  # 3 a decade, and the last step

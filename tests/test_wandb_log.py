"""--wandb in offline mode, no network: a sweep's runs each become one W&B run (in one process), with the run's
config, every evaluation and the grokking summary, the sweep's name as their group; a resumed run continues
its W&B run. The offline files are read back with W&B's own record definitions."""

import json
import time
from pathlib import Path

import pytest

from groklab.cli import main
from groklab.training.loop import train_runs
from groklab.training.interrupts import Interrupted
from helpers import stop_after, tiny_config, tiny_spec

wandb = pytest.importorskip("wandb")

SPEC = tiny_spec("wb-sweep", """eval_points_per_decade = 3
train_fraction = 0.6
val_fraction = 0.2
[grid]
seed = [1, 2, 3]
""")


def _offline_env(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))  # nothing written to $HOME
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "wandb-data"))


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    _offline_env(monkeypatch, tmp_path)


def records(path: Path) -> list:
    """The records of an offline .wandb file: a 7-byte header, then LevelDB-log chunks in 32 KiB blocks
    (4-byte checksum, 2-byte length, 1-byte type: 1 full, 2 first, 3 middle, 4 last) of protobuf Records."""
    from wandb.proto import wandb_internal_pb2 as pb

    raw = path.read_bytes()
    assert raw[:4] == b":W&B"
    out, pos, pending, block = [], 7, b"", 32768
    while pos + 7 <= len(raw):
        if block - pos % block < 7:  # a block's tail too short for a chunk header is padding
            pos += block - pos % block
            continue
        length, kind = int.from_bytes(raw[pos + 4:pos + 6], "little"), raw[pos + 6]
        if kind == 0:
            break
        pending += raw[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(pending)
            out.append(record)
            pending = b""
    return out


def finished_records(path: Path, timeout: float = 60.0) -> list:
    """records(path) once the run's exit record is on disk: W&B's service writes the file after run.finish()
    returns (it is complete when the process ends; `wandb sync` reads it then), so a reader in the same
    process waits for it."""
    deadline = time.monotonic() + timeout
    while True:
        found = records(path)
        if any(r.WhichOneof("record_type") == "exit" for r in found) or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def items(entries) -> dict:
    """A record's key/value items as a dict (W&B puts a key with "/" into nested_key, and lately every key)."""
    return {e.key or "/".join(e.nested_key): json.loads(e.value_json) for e in entries}


def wandb_run(run_dir: Path) -> dict:
    """What the one offline W&B run in run_dir/wandb holds: id, group, name, config, history rows, summary."""
    [path] = list((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
    run, config, history, summary = None, {}, [], {}
    for r in finished_records(path):
        kind = r.WhichOneof("record_type")
        if kind == "run":
            run = r.run
            config.update(items(r.run.config.update))
        elif kind == "config":
            config.update(items(r.config.update))
        elif kind == "history":
            history.append(items(r.history.item))
        elif kind == "summary":
            summary.update(items(r.summary.update))
    return {"id": run.run_id, "group": run.run_group, "name": run.display_name, "project": run.project,
            "config": config, "history": history, "summary": summary}


def test_a_sweep_is_one_wandb_group_with_one_run_per_groklab_run(tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC)
    out = tmp_path / "out"
    assert main(["sweep", str(spec), "--out", str(out), "--wandb", "--wandb_project", "grok-test"]) == 0
    run_dirs = sorted(p.parent for p in out.glob("runs/**/summary.json"))
    assert len(run_dirs) == 3
    runs = [wandb_run(d) for d in run_dirs]
    assert len({r["id"] for r in runs}) == 3  # three W&B runs, not one per process
    for d, r in zip(run_dirs, runs):
        saved = json.loads((d / "config.json").read_text())["config"]
        metrics = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]
        summary = json.loads((d / "summary.json").read_text())
        assert r["group"] == "wb-sweep" and r["project"] == "grok-test" and r["name"] == d.name
        assert r["config"]["train"]["seed"] == saved["train"]["seed"] and r["config"]["run_dir"] == str(d)
        assert r["config"]["optim"] == saved["optim"] and r["config"]["model"] == saved["model"]
        assert [h["step"] for h in r["history"]] == [m["step"] for m in metrics]  # every evaluation
        assert [h["accuracy/val"] for h in r["history"]] == [m["val_acc"] for m in metrics]
        assert {"loss/train", "accuracy/test", "weight_norm", "learning_rate"} <= set(r["history"][-1])
        assert r["summary"]["status"] == "done" and r["summary"]["steps"] == summary["steps"]
        assert r["summary"]["final/val_acc"] == summary["final"]["val_acc"]
        assert ("steps_to_memorise" in r["summary"]) == (summary["steps_to_memorise"] is not None)


def test_an_interrupted_run_is_finished_as_such_and_resumed_into_the_same_wandb_run(tmp_path, monkeypatch):
    from groklab.training.interrupts import Interrupted

    cfg = tiny_config(tmp_path / "run", wandb=True, wandb_group="g")
    with pytest.raises(Interrupted):
        train_runs([cfg], log=lambda _: None, stop=stop_after(monkeypatch, 4))
    monkeypatch.undo()
    _offline_env(monkeypatch, tmp_path)
    train_runs([cfg], log=lambda _: None)  # the same command resumes it
    files = sorted((tmp_path / "run" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 2 and len({p.stem for p in files}) == 1  # one W&B run id: `wandb sync` joins the parts
    parts = [finished_records(p) for p in files]
    steps = [[items(r.history.item)["step"] for r in part if r.WhichOneof("record_type") == "history"]
             for part in parts]
    assert steps == [[1, 2], [5, 10, 12]]  # the second part goes on from the checkpoint at step 4
    summaries = [{k: v for r in part if r.WhichOneof("record_type") == "summary"
                  for k, v in items(r.summary.update).items()} for part in parts]
    assert summaries[0]["status"] == "interrupted" and summaries[1]["status"] == "done"


def _no_login(monkeypatch, tmp_path):
    """Online mode with no W&B credentials anywhere (no key, no .netrc, no settings), and no console to ask on."""
    for name in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("NETRC", str(tmp_path / "home/.netrc"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setattr("sys.stdin.isatty", lambda: False, raising=False)


def test_wandb_without_a_login_is_refused_before_any_folder_is_touched(tmp_path, monkeypatch, capsys, reliability):
    """The refusal came from wandb.init, after the run folder had been made (config.json, data/, meta.json,
    wandb/groklab_run_id), and a stopped run's meta.json gained a resume that never trained."""
    cfg = tiny_config(tmp_path / "stopped", max_steps=12)
    with pytest.raises(Interrupted):
        train_runs([cfg], log=lambda _: None, stop=stop_after(monkeypatch, 4))
    monkeypatch.undo()
    before = {p: p.read_bytes() for p in (tmp_path / "stopped").rglob("*") if p.is_file()}
    _no_login(monkeypatch, tmp_path)
    flags = ["--operators", "+", "--prime", "7", "--n_layer", "1", "--n_head", "2", "--n_embd", "16", "--max_steps",
             "12", "--batch_size", "8", "--eval_points_per_decade", "3", "--train_fraction", "0.6", "--val_fraction",
             "0.2", "--learning_rate", "3e-3", "--weight_decay", "0.1", "--checkpoint_interval", "5", "--no_plot",
             "--device", "cpu", "-q", "--wandb"]
    for out in ("fresh", "stopped"):
        assert main(["train", *flags, "--out_dir", str(tmp_path / out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("groklab: error: --wandb: No API key configured") and err.count("\n") == 1, err
    spec = tmp_path / "s.toml"
    spec.write_text(SPEC.replace("[grid]", "wandb = true\n[grid]"))
    assert main(["sweep", str(spec), "--out", str(tmp_path / "sweep")]) == 2
    assert "No API key configured" in capsys.readouterr().err
    assert not (tmp_path / "fresh").exists() and not (tmp_path / "sweep").exists()
    assert {p: p.read_bytes() for p in (tmp_path / "stopped").rglob("*") if p.is_file()} == before
    reliability("W&B", "--wandb online with no API key (a new folder, a stopped run, a sweep)",
                "exit 2, one line, no folder touched")

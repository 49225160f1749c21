"""The sweep folder's contract: a sweep folder belongs to one spec; every run folder is checked before anything
trains; a sweep that cannot train all its runs never ends as a success; the results store never says what the
run folders contradict, and records what each run ran with; a folder being written by another sweep is "in
use", and one a sweep died in is still a sweep's."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pytest

from groklab.analysis import results
from groklab.errors import GroklabError
from groklab.experiments.spec import SpecError, load_spec, parse_spec
from groklab.experiments.sweep import Interrupted, run_sweep
from groklab.lock import FolderInUse, FolderLock
from groklab.store import rundir, sweepdir
from helpers import assert_clean_error, hide, run_cli, signal_at_step, tiny_spec

GRID = "[grid]\nseed = [1, 2]\n"
RUN1, RUN2 = "runs/tiny/seed=1", "runs/tiny/seed=2"


def spec_file(folder: Path, body: str = GRID, name: str = "tiny", base_extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.toml"
    path.write_text(tiny_spec(name, "checkpoint_interval = 5\n" + base_extra + body))
    return path


def quiet(_: str) -> None:
    pass


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished sweep of two tiny runs (seeds 1, 2) and its results store."""
    root = tmp_path_factory.mktemp("sweepfolder")
    assert run_sweep(load_spec(spec_file(root / "specs")), root / "sweep", echo=quiet)["done"] == 2
    return root / "sweep"


@pytest.fixture
def sweep(finished, tmp_path) -> Path:
    return Path(shutil.copytree(finished, tmp_path / "sweep"))


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file's bytes (the lock file aside: a writer records its pid there, it holds no content)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".groklab-lock"}


def test_a_foreign_file_in_a_run_folder_refuses_the_sweep_before_anything_is_written(sweep, tmp_path, capsys,
                                                                                     reliability):
    run = sweep / RUN2
    shutil.rmtree(run)
    run.mkdir()
    (run / "notes.txt").write_text("hi")
    (sweep / RUN1 / "summary.json").unlink()  # a run that would train first: it must not
    before = snapshot(sweep)
    code, out, err = run_cli(capsys, ["sweep", str(spec_file(tmp_path / "specs")), "--out", str(sweep)])
    message = assert_clean_error(code, err)
    assert str(run) in message and "notes.txt" in message and out == ""
    assert snapshot(sweep) == before
    reliability("sweeps", "a file groklab did not write (notes.txt) in one run folder of a sweep, then the sweep",
                f"exit {code} before anything trained or was written: {hide(message, tmp_path)}")


def test_a_run_folder_holding_another_run_refuses_the_sweep(sweep, tmp_path):
    config = sweep / RUN2 / "config.json"
    saved = json.loads(config.read_text())
    saved["config"]["optim"]["learning_rate"] = 0.5
    config.write_text(json.dumps(saved))
    before = snapshot(sweep)
    with pytest.raises(GroklabError, match=r"seed=2: holds a run with learning_rate=0.5"):
        run_sweep(load_spec(spec_file(tmp_path / "specs")), sweep, echo=quiet)
    assert snapshot(sweep) == before


def test_runs_left_unfinished_without_an_interrupt_end_the_sweep_in_an_error(tmp_path, monkeypatch):
    """What the checks up front cannot see (here: the run's own refusal, as for data changed since) still never
    ends in a success: the others train, then one error line says which run and why."""
    real = rundir.plan

    def refuse_seed_2(cfg, data, retry_failed=False):
        if cfg.train.seed == 2:
            raise GroklabError(f"{cfg.train.out_dir}: the run was trained on other data than this command gives")
        return real(cfg, data, retry_failed)

    monkeypatch.setattr(rundir, "plan", refuse_seed_2)
    with pytest.raises(GroklabError, match=r"1 run\(s\) not trained: tiny/seed=2: .*other data"):
        run_sweep(load_spec(spec_file(tmp_path / "specs")), tmp_path / "out", echo=quiet)
    assert rundir.status(tmp_path / "out" / RUN1) == "done" and rundir.status(tmp_path / "out" / RUN2) == "pending"


def test_results_load_never_says_done_for_a_run_whose_folder_or_summary_is_gone(sweep, reliability):
    sweepdir.write_store(sweep)  # as its writer would, naming the copy's run folders
    assert list(results.load(sweep).runs.status) == ["done", "done"]
    shutil.rmtree(sweep / RUN1)
    (sweep / RUN2 / "summary.json").unlink()
    runs = results.load(sweep).runs
    assert list(runs.status) == ["pending", "partial"] and runs.final_val_acc.isna().iloc[0]
    reliability("files read back", "a sweep's run folder deleted, and another run's summary.json, after the results "
                "store was written", f"results.load rebuilt the frames from the folders: statuses {list(runs.status)}")


def test_another_spec_on_a_sweep_folder_is_refused_and_changes_nothing(sweep, tmp_path, capsys, reliability):
    before = snapshot(sweep)
    other = spec_file(tmp_path / "specs", "[grid]\nseed = [7]\n", name="other")
    code, _, err = run_cli(capsys, ["sweep", str(other), "--out", str(sweep)])
    message = assert_clean_error(code, err)
    assert "'tiny'" in message and "'other'" in message
    # the same name with runs that are something else, or with other axes, is another sweep too
    with pytest.raises(GroklabError, match="have operators='[+]', and .* gives operators='-'"):
        run_sweep(load_spec(spec_file(tmp_path / "minus", "[grid]\nseed = [3]\n")), sweep, {"op": "-"}, echo=quiet)
    with pytest.raises(GroklabError, match="varies seed, and .* varies learning_rate"):
        run_sweep(load_spec(spec_file(tmp_path / "lr", "[grid]\nlr = [0.01]\n")), sweep, echo=quiet)
    assert snapshot(sweep) == before
    # more values on its axes: the same sweep, extended (README and prepare's docstring)
    lines: list[str] = []
    run_sweep(load_spec(spec_file(tmp_path / "more", "[grid]\nseed = [1, 2, 3]\n")), sweep, echo=lines.append)
    assert "2 already finished · 1 to train" in lines[0]
    reliability("sweeps", "a sweep folder given to another spec (another name, other runs, other axes)",
                f"exit {code}, nothing changed: {hide(message, tmp_path)}")


def test_a_sweep_spec_may_not_take_over_a_train_seeds_folder(tmp_path, capsys):
    flags = ["--op", "+", "--p", "7", "--n_layer", "1", "--n_head", "2", "--n_embd", "16", "--max_steps", "6",
             "--batch_size", "8", "--plot", "false", "--device", "cpu", "--quiet"]
    seeds = ["train", *flags, "--seeds", "1,2", "--out_dir", str(tmp_path / "seeds")]
    assert run_cli(capsys, seeds)[0] == 0
    before = snapshot(tmp_path / "seeds")
    code, _, err = run_cli(capsys, ["sweep", str(spec_file(tmp_path / "specs")), "--out", str(tmp_path / "seeds")])
    assert "train --seeds" in assert_clean_error(code, err)
    assert snapshot(tmp_path / "seeds") == before
    assert run_cli(capsys, seeds)[0] == 0  # the folder is still the --seeds command's


def test_new_seeds_with_other_settings_are_refused_in_a_train_seeds_folder(tmp_path, capsys, reliability):
    """A --seeds folder is one experiment whose only axis is the seed (its report and tables say so): a later
    --seeds command may add seeds of the same run, not seeds of another."""
    flags = ["--op", "+", "--p", "7", "--n_layer", "1", "--n_head", "2", "--n_embd", "16", "--max_steps", "6",
             "--batch_size", "8", "--plot", "false", "--device", "cpu", "--quiet"]
    out = str(tmp_path / "seeds")
    assert run_cli(capsys, ["train", *flags, "--seeds", "1,2", "--out_dir", out])[0] == 0
    before = snapshot(tmp_path / "seeds")
    code, _, err = run_cli(capsys, ["train", *flags, "--lr", "0.01", "--seeds", "3", "--out_dir", out])
    message = assert_clean_error(code, err)
    assert "learning_rate=0.001" in message and "learning_rate=0.01" in message
    assert snapshot(tmp_path / "seeds") == before
    assert run_cli(capsys, ["train", *flags, "--seeds", "3", "--out_dir", out])[0] == 0  # the same run: one more seed
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    code, _, err = run_cli(capsys, ["train", *flags, "--seeds", "1", "--out_dir", str(tmp_path / "mine")])
    assert "choose another --out_dir or an empty folder" in assert_clean_error(code, err)  # the flag it was given
    assert os.listdir(tmp_path / "mine") == ["notes.txt"]
    assert sorted(p.name for p in (tmp_path / "seeds").glob("seed*")) == ["seed1", "seed2", "seed3"]
    reliability("sweeps", "`train --seeds 3` with another --lr into a --seeds folder of seeds 1 and 2",
                f"exit {code}, nothing changed: {hide(message, tmp_path)}")


def test_a_seeds_folder_from_before_sweep_json_keeps_its_seeds_and_is_checked_as_well(tmp_path, capsys):
    """Seed folders alone (no sweep.json, as before it existed): new seeds with another setting are refused, and
    new seeds of the same run are added beside the old ones, which the folder's record keeps."""
    flags = ["--op", "+", "--p", "7", "--n_layer", "1", "--n_head", "2", "--n_embd", "16", "--max_steps", "6",
             "--batch_size", "8", "--plot", "false", "--device", "cpu", "--quiet"]
    out = tmp_path / "seeds"
    assert run_cli(capsys, ["train", *flags, "--seeds", "1,2", "--out_dir", str(out)])[0] == 0
    (out / "sweep.json").unlink()
    for name in os.listdir(out):
        if name not in ("seed1", "seed2"):
            shutil.rmtree(out / name) if (out / name).is_dir() else (out / name).unlink()
    before = snapshot(out)
    code, _, err = run_cli(capsys, ["train", *flags, "--lr", "0.01", "--seeds", "3", "--out_dir", str(out)])
    assert "learning_rate=0.01" in assert_clean_error(code, err)
    assert snapshot(out) == before
    assert run_cli(capsys, ["train", *flags, "--seeds", "3", "--out_dir", str(out)])[0] == 0
    assert sorted(results.load(out).runs.run_id) == ["seed1", "seed2", "seed3"]


def test_a_seeds_folder_from_before_sweep_json_is_checked_against_every_seed_and_each_folder_first(tmp_path, capsys):
    """Seeds trained apart may already disagree (seed1 at one rate, seed2 at another): a --seeds command is
    refused naming the one that differs, not averaged with them in one report; and a seed folder that holds
    another seed refuses the command before sweep.json is written (it recorded the folder as the new seed)."""
    flags = ["--op", "+", "--p", "7", "--n_layer", "1", "--n_head", "2", "--n_embd", "16", "--max_steps", "6",
             "--batch_size", "8", "--plot", "false", "--device", "cpu", "--quiet"]
    out = tmp_path / "mixed"
    assert run_cli(capsys, ["train", *flags, "--seed", "1", "--out_dir", str(out / "seed1")])[0] == 0
    assert run_cli(capsys, ["train", *flags, "--seed", "2", "--lr", "0.01", "--out_dir", str(out / "seed2")])[0] == 0
    before = snapshot(out)
    code, _, err = run_cli(capsys, ["train", *flags, "--seeds", "3", "--out_dir", str(out)])
    assert "learning_rate=0.01 (seed2)" in assert_clean_error(code, err)
    assert snapshot(out) == before and not (out / "sweep.json").exists()
    shutil.rmtree(out / "seed2")
    (out / "seed1").rename(out / "seed9")  # seed 1's run, in the folder where seed 9 would go
    before = snapshot(out)
    code, _, err = run_cli(capsys, ["train", *flags, "--seeds", "9", "--out_dir", str(out)])
    assert "holds a run with seed=1, and this command's run seed9 has seed=9" in assert_clean_error(code, err)
    assert snapshot(out) == before and not (out / "sweep.json").exists()


def test_a_sweep_json_with_a_value_of_the_wrong_type_is_named_not_called_foreign(sweep, tmp_path, capsys):
    path = sweep / "sweep.json"
    path.write_text(path.read_text().replace('"compile": null', '"compile": "banana"', 1))
    before = snapshot(sweep)
    code, _, err = run_cli(capsys, ["sweep", str(spec_file(tmp_path / "specs")), "--out", str(sweep)])
    message = assert_clean_error(code, err)
    assert "sweep.json" in message and "compile: expected bool, got 'banana'" in message, message
    assert snapshot(sweep) == before


def test_a_seeds_folder_compares_its_data_by_content_not_by_the_spelling_of_its_path(tmp_path, capsys, monkeypatch):
    flags = ["--n_layer", "1", "--n_head", "2", "--n_embd", "16", "--max_steps", "6", "--batch_size", "8",
             "--plot", "false", "--device", "cpu", "--quiet"]
    for name, op in (("d", "+"), ("other", "-")):
        assert run_cli(capsys, ["data", "--out", str(tmp_path / name), "--op", op, "--p", "7"])[0] == 0
    out = str(tmp_path / "seeds")
    assert run_cli(capsys, ["train", *flags, "--data_dir", str(tmp_path / "d"), "--seeds", "1", "--out_dir", out])[0] == 0
    monkeypatch.chdir(tmp_path)
    assert run_cli(capsys, ["train", *flags, "--data_dir", "d", "--seeds", "2", "--out_dir", out])[0] == 0
    shutil.rmtree(tmp_path / "d")
    shutil.copytree(tmp_path / "other", tmp_path / "d")  # the same spelling, other data
    code, _, err = run_cli(capsys, ["train", *flags, "--data_dir", "d", "--seeds", "3", "--out_dir", out])
    assert "other data" in assert_clean_error(code, err)
    assert not (tmp_path / "seeds" / "seed3").exists()


@pytest.mark.parametrize("text", ["", 'name = "x"\n[grid]\nseed = [1, 2]\n'])
def test_a_spec_that_no_run_can_train_from_is_refused_before_a_folder_is_made(tmp_path, capsys, text):
    path = tmp_path / "spec.toml"
    path.write_text(text)
    code, _, err = run_cli(capsys, ["sweep", str(path), "--out", str(tmp_path / "out")])
    assert ("empty spec" if not text else "no data") in assert_clean_error(code, err)
    assert not (tmp_path / "out").exists()


def test_the_store_and_sweep_json_record_what_each_run_ran_with(tmp_path, monkeypatch):
    """Not the latest command's execution settings: a finished run keeps its config.json's, a run resumed with
    another setting gets its resume's (meta.json), however often the sweep is run again."""

    out = tmp_path / "out"
    run_sweep(load_spec(spec_file(tmp_path / "one", "[grid]\nseed = [1]\n")), out, echo=quiet)
    two = load_spec(spec_file(tmp_path / "two"))
    signal_at_step(monkeypatch, 7)
    with pytest.raises(Interrupted):
        run_sweep(two, out, echo=quiet)  # seed 2 stops at step 7, saved
    monkeypatch.undo()
    run_sweep(two, out, {"checkpoint_interval": 4}, echo=quiet)  # seed 2 resumes with another interval
    run_sweep(two, out, {"checkpoint_interval": 3}, echo=quiet)  # trains nothing
    assert [r["changed"] for r in rundir.read_meta(out / RUN2)["resumes"]] == [{"checkpoint_interval": [5, 4]}]
    store = results.load(out).runs.set_index("seed").checkpoint_interval.to_dict()
    assert store == {1: 5, 2: 4}
    recorded = {r.config.train.seed: r.config.train.checkpoint_interval for r in sweepdir.read_sweep(out)[1]}
    assert recorded == {1: 5, 2: 4}


def test_a_folder_another_sweep_is_writing_is_in_use_and_one_a_sweep_died_in_is_ours(tmp_path):
    """The other writer holds the lock and has written spec.toml, not yet sweep.json: "in use", not "foreign"."""
    out = tmp_path / "out"
    out.mkdir()
    spec_path = spec_file(tmp_path / "specs")
    shutil.copy(spec_path, out / "spec.toml")
    other = FolderLock(out).acquire()
    with pytest.raises(FolderInUse, match="in use by pid"):
        run_sweep(load_spec(spec_path), out, echo=quiet)
    other.release()  # ... and it dies there: the same command takes the folder up
    assert run_sweep(load_spec(spec_path), out, echo=quiet)["done"] == 2
    # a folder with a spec.toml that no sweep began to write is not one
    (tmp_path / "user").mkdir()
    shutil.copy(spec_path, tmp_path / "user/spec.toml")
    with pytest.raises(GroklabError, match="did not write as a sweep"):
        run_sweep(load_spec(spec_path), tmp_path / "user", echo=quiet)
    assert sorted(p.name for p in (tmp_path / "user").iterdir()) == ["spec.toml"]


def test_a_run_folder_in_use_stops_the_sweep_before_its_command_is_recorded(sweep, tmp_path):
    (sweep / RUN2 / "summary.json").unlink()
    before = (sweep / "sweep.json").read_bytes()
    with FolderLock(sweep / RUN2):
        with pytest.raises(FolderInUse, match="seed=2 is in use"):
            run_sweep(load_spec(spec_file(tmp_path / "specs")), sweep, echo=quiet)
    assert (sweep / "sweep.json").read_bytes() == before


def test_an_interrupt_before_any_run_trained_says_nothing_was_saved(tmp_path, monkeypatch):
    from groklab.training import groups

    real = groups.load_run_data

    def ctrl_c_while_loading(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        return real(*args, **kwargs)

    monkeypatch.setattr(groups, "load_run_data", ctrl_c_while_loading)
    with pytest.raises(Interrupted) as stopped:
        run_sweep(load_spec(spec_file(tmp_path / "specs")), tmp_path / "out", echo=quiet)
    assert "saved at a step boundary" not in str(stopped.value) and "2 run(s) unfinished" in str(stopped.value)
    assert not list((tmp_path / "out").rglob("state.safetensors"))


def test_an_empty_spec_is_a_spec_error():
    with pytest.raises(SpecError, match="an empty spec"):
        parse_spec("", "empty.toml")

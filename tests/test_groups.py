import json
from pathlib import Path

import pytest
import torch

from groklab.errors import GroklabError
from groklab.store import rundir
from groklab.training.groups import ManyRuns, bytes_per_run, chunk_size, plan_groups, train_many
from tests.helpers import tiny_config


def test_runs_group_by_shape_and_schedule(tmp_path):
    cfgs = [tiny_config(tmp_path / "a", seed=1), tiny_config(tmp_path / "b", seed=2, learning_rate=1e-2),
            tiny_config(tmp_path / "c", n_layer=2), tiny_config(tmp_path / "d", batch_size=3),
            tiny_config(tmp_path / "e", max_steps=20), tiny_config(tmp_path / "f", prime=11)]
    # seeds and learning rates share a group; depth, step budget, a longer context (p = 11 has two-digit
    # numbers: 8 tokens instead of 6) and a batch size (padding would make small batches cost as large) do not
    assert plan_groups(cfgs) == [[0, 1], [2], [3], [4], [5]]


def test_chunks_train_like_one_group(tmp_path):
    together = [tiny_config(tmp_path / f"g{s}", seed=s) for s in (1, 2, 3)]
    apart = [tiny_config(tmp_path / f"c{s}", seed=s) for s in (1, 2, 3)]
    train_many(together, log=lambda _: None)
    train_many(apart, log=lambda _: None, max_group=2)
    for s in (1, 2, 3):
        a = [json.loads(x)["val_loss"] for x in (tmp_path / f"g{s}/metrics.jsonl").read_text().splitlines()]
        b = [json.loads(x)["val_loss"] for x in (tmp_path / f"c{s}/metrics.jsonl").read_text().splitlines()]
        assert a == __import__("pytest").approx(b, rel=1e-5)
        assert json.loads((tmp_path / f"c{s}/meta.json").read_text())["group_size"] == (2 if s < 3 else 1)


def test_memory_estimate_grows_with_batch_and_cpu_takes_all(tmp_path):
    cfg = tiny_config(tmp_path / "x")
    small = bytes_per_run(cfg, 8, 13, 100)
    big = bytes_per_run(cfg.replace(batch_size=512), 8, 13, 100)
    assert big > small > 0
    assert chunk_size([cfg] * 7, [None] * 7, torch.device("cpu")) == 7


def test_train_runs_refuses_a_group_with_mixed_loop_settings(tmp_path):
    import pytest

    from groklab.errors import GroklabError
    from groklab.training.loop import train_runs

    mixed = [tiny_config(tmp_path / "a"), tiny_config(tmp_path / "b", early_stop_evals=3)]
    with pytest.raises(GroklabError, match="must share"):
        train_runs(mixed, log=lambda _: None)
    assert not (tmp_path / "a").exists()


# ---------------------------------------------------------------- the out-of-memory split, with a fake trainer

class FakeTrainer:
    """A `train_part` for ManyRuns that trains nothing: out of GPU memory whenever it is given more than `fits`
    runs at once (as a device too small for the group), else one result a run. `tried`: the parts it was given,
    by run folder name."""

    def __init__(self, fits: int):
        self.fits, self.tried = fits, []

    def __call__(self, configs, stop=None, datas=None, **_):
        self.tried.append([Path(c.train.out_dir).name for c in configs])
        assert datas is not None and len(datas) == len(configs)  # the data ManyRuns loaded travels with the part
        if len(configs) > self.fits:
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory (fake): {len(configs)} runs")
        return [{"status": "done", "run_dir": c.train.out_dir, "trained_with": len(configs)} for c in configs]


class Watcher:
    """A Progress that checks every part it is told started also finishes, and keeps the results reported."""

    def __init__(self):
        self.running, self.results = 0, []

    def started(self, runs):
        self.running += len(runs)

    def run_steps(self, n):
        pass

    def finished(self, runs, results):
        self.running -= len(runs)
        self.results += results


def cpu_runs(tmp_path, n):
    return [tiny_config(tmp_path / f"r{i}", seed=i, device="cpu") for i in range(n)]


def never(*args, **kwargs):
    raise AssertionError("a GPU path (open_part, a wave) was taken for runs on the CPU")


def many_runs(configs, fake, lines, **options):
    many = ManyRuns(configs, log=lines.append, train_part=fake, open_part=never, **options)
    many.train_wave = never  # the split under test is the sequential one, train_chunk: no CUDA device needed
    return many


def test_out_of_memory_splits_a_part_in_two_until_each_half_fits(tmp_path):
    cuda_before = torch.cuda.is_initialized()  # on a GPU machine an earlier test in this process may have
    fake, lines, watcher = FakeTrainer(fits=2), [], Watcher()
    results = many_runs(cpu_runs(tmp_path, 5), fake, lines, progress=watcher).run()
    assert fake.tried == [["r0", "r1", "r2", "r3", "r4"], ["r0", "r1"], ["r2", "r3", "r4"], ["r2"], ["r3", "r4"]]
    assert [r["run_dir"] for r in results] == [str(tmp_path / f"r{i}") for i in range(5)]  # input order
    assert [r["status"] for r in results] == ["done"] * 5 and [r["trained_with"] for r in results] == [2, 2, 1, 2, 2]
    assert [line for line in lines if "out of GPU memory" in line] == [
        "out of GPU memory with 5 runs at once: splitting into 2 + 3",
        "out of GPU memory with 3 runs at once: splitting into 1 + 2"]
    assert watcher.running == 0  # every part it was told started (the split ones too) also finished
    assert sorted(r["run_dir"] for r in watcher.results) == sorted(r["run_dir"] for r in results)
    assert cuda_before or not torch.cuda.is_initialized()  # splitting CPU runs never starts CUDA


def test_a_single_run_that_does_not_fit_is_recorded_failed_when_isolated(tmp_path):
    fake, lines = FakeTrainer(fits=0), []
    results = many_runs(cpu_runs(tmp_path, 3), fake, lines, isolate=True).run()
    assert fake.tried == [["r0", "r1", "r2"], ["r0"], ["r1", "r2"], ["r1"], ["r2"]]
    assert [r["status"] for r in results] == ["failed"] * 3
    for i, r in enumerate(results):
        assert r["run_dir"] == str(tmp_path / f"r{i}") and rundir.status(tmp_path / f"r{i}") == "failed"
        assert r["reason"].startswith("out of GPU memory with a group of 1 run(s); run the command again with fewer")
        assert rundir.read_failure(tmp_path / f"r{i}")["reason"] == r["reason"]


def test_a_single_run_that_does_not_fit_raises_when_not_isolated(tmp_path):
    fake, lines = FakeTrainer(fits=0), []
    with pytest.raises(GroklabError, match=r"out of GPU memory with a group of 1 run\(s\)"):
        many_runs(cpu_runs(tmp_path, 2), fake, lines).run()
    assert fake.tried == [["r0", "r1"], ["r0"]]  # the first run that cannot fit stops it: r1 is not tried alone
    assert not any((tmp_path / f"r{i}" / rundir.FAILED_FILE).exists() for i in range(2))


def test_concurrent_cpu_chunks_split_on_their_own(tmp_path):
    fake, lines = FakeTrainer(fits=1), []
    results = many_runs(cpu_runs(tmp_path, 4), fake, lines, max_group=2, concurrent=2).run()
    # two chunks, each in a thread of its own, each split into its two runs
    assert sorted(map(tuple, fake.tried)) == [("r0",), ("r0", "r1"), ("r1",), ("r2",), ("r2", "r3"), ("r3",)]
    assert [r["status"] for r in results] == ["done"] * 4 and {r["trained_with"] for r in results} == {1}


class RecordingPrecompile:
    """Stands in for precompile.Precompile: what a wave asks of it, in order."""

    calls: list = []

    def __init__(self, groups, room=True):
        self.calls.append(("start", [[c.train.out_dir[-2:] for c in g] for g in groups], room))

    def wait(self, k, stop):
        self.calls.append(("wait", k, stop()))

    def opened(self, configs):
        self.calls.append(("opened", [c.train.out_dir[-2:] for c in configs]))

    def close(self):
        self.calls.append(("close",))


@pytest.mark.parametrize("fail_at", [None, 1])
def test_a_wave_waits_for_each_groups_worker_before_opening_it_and_ends_them_all(tmp_path, monkeypatch, fail_at):
    """open_wave (a GPU wave's opening; its CUDA parts are not needed): the compile workers are started for the
    wave, group k is opened only after worker k was waited for, a group opened compiled is marked, one that
    fell back to eager is not, and the workers are ended whatever happens, an error while opening included
    (the groups opened so far are then closed)."""
    from types import SimpleNamespace

    from groklab.training import groups as groups_module
    from groklab.training.loop import OpenGroup

    RecordingPrecompile.calls = []
    monkeypatch.setattr(groups_module, "Precompile", RecordingPrecompile)
    monkeypatch.setattr(ManyRuns, "_room_for_workers", lambda self, runs, device: True)
    closed = []

    def open_part(cfgs, **kwargs):
        names = [c.train.out_dir[-2:] for c in cfgs]
        RecordingPrecompile.calls.append(("open", names))
        if fail_at is not None and names == [f"r{fail_at}"]:
            raise KeyboardInterrupt
        group = OpenGroup([], None, SimpleNamespace(compiled=names != ["r2"]), {}, 0, "", None, None)
        group.close = lambda names=names: closed.append(names)
        return group

    configs = cpu_runs(tmp_path, 3)
    many = ManyRuns(configs, open_part=open_part)
    many.prepare()
    wave = [([0], None), ([1], None), ([2], None)]
    if fail_at is None:
        opened = many.open_wave(wave, torch.device("cpu"))
        assert [part for part, _ in opened] == [[0], [1], [2]] and not closed
        assert RecordingPrecompile.calls == [
            ("start", [["r0"], ["r1"], ["r2"]], True),
            ("wait", 0, False), ("open", ["r0"]), ("opened", ["r0"]),
            ("wait", 1, False), ("open", ["r1"]), ("opened", ["r1"]),
            ("wait", 2, False), ("open", ["r2"]),  # fell back to eager: not marked
            ("close",)]
    else:
        with pytest.raises(KeyboardInterrupt):
            many.open_wave(wave, torch.device("cpu"))
        assert closed == [["r0"]]
        assert RecordingPrecompile.calls[-2:] == [("open", ["r1"]), ("close",)]

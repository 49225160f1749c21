"""Workers that fill torch.compile's cache for a wave's groups (training/precompile.py): what a worker leaves
is the cache and nothing else, this process then compiles from it, and a worker that fails, hangs or is
still running at a stop never changes what a group does."""

import os
import subprocess
import sys
import time

import torch

from groklab.data.dataset import load_run_data
from groklab.training import precompile
from groklab.training.loop import build_engine
from tests.helpers import tiny_config


def _worker(configs, env):
    """A worker run to its end, as Precompile starts one."""
    payload = __import__("json").dumps([c.to_dict() for c in configs])
    return subprocess.run(list(precompile.WORKER), input=payload.encode(), env={**os.environ, **env},
                          capture_output=True, timeout=600)


def test_a_worker_fills_the_cache_that_this_process_then_compiles_from(tmp_path, monkeypatch):
    from torch._dynamo.utils import counters

    # a shape no other test compiles, so that nothing in this process's memory answers instead of the disk
    configs = [tiny_config(tmp_path / f"r{s}", seed=s, n_embd=24, prime=11, compile=True) for s in (1, 2)]
    cache = tmp_path / "inductor"
    done = _worker(configs, {"TORCHINDUCTOR_CACHE_DIR": str(cache)})
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert any(cache.rglob("*")) and not any((tmp_path / f"r{s}").exists() for s in (1, 2))  # the cache only
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(cache))
    torch.use_deterministic_algorithms(False)  # as in groklab's own processes (the suite's fixture sets it, and
    counters.clear()                           # the cache keys on it)
    _, engine = build_engine(configs, [load_run_data(c.data, c.model) for c in configs])
    assert engine.compiled and not engine.compile_failed
    assert counters["inductor"]["fxgraph_cache_hit"] >= 1 and not counters["inductor"]["fxgraph_cache_miss"]


def test_workers_start_only_for_a_wave_of_compiled_groups_on_a_gpu(tmp_path, monkeypatch):
    cfg = tiny_config(tmp_path / "a", device="cuda", compile=True)
    monkeypatch.setattr(precompile, "resolve_device", lambda name: torch.device(name))
    assert precompile.wanted([[cfg], [cfg]])
    assert not precompile.wanted([[cfg]])  # one group: nothing to do meanwhile
    assert not precompile.wanted([[cfg.replace(compile=False)]] * 2)
    assert not precompile.wanted([[cfg.replace(device="cpu")]] * 2)
    monkeypatch.setenv(precompile.DISABLE, "0")
    assert not precompile.wanted([[cfg], [cfg]])


def test_a_worker_that_hangs_is_waited_for_a_bounded_time_then_killed_at_close(tmp_path, monkeypatch):
    monkeypatch.setattr(precompile, "wanted", lambda groups: True)
    monkeypatch.setattr(precompile, "WORKER", (sys.executable, "-c", "import time; time.sleep(60)"))
    monkeypatch.setattr(precompile, "WAIT_S", 0.3)
    cfg = tiny_config(tmp_path / "a")
    pre = precompile.Precompile([[cfg], [cfg], [cfg]])
    assert sorted(pre.workers) == [1, 2]  # none for the first group: this process compiles it meanwhile
    t0 = time.monotonic()
    pre.wait(1, lambda: False)
    assert 0.3 <= time.monotonic() - t0 < 5
    t0 = time.monotonic()
    pre.wait(2, lambda: True)  # a stop request: no waiting at all
    assert time.monotonic() - t0 < 1
    workers = list(pre.workers.values())
    pre.close()
    assert all(w.returncode is not None and w.returncode < 0 for w in workers) and not pre.workers
    pre.wait(1, lambda: False)  # after close: nothing to wait for


def test_a_failing_worker_is_only_a_worker_that_did_not_help(tmp_path, monkeypatch):
    monkeypatch.setattr(precompile, "wanted", lambda groups: True)
    monkeypatch.setattr(precompile, "WORKER", (sys.executable, "-c", "raise SystemExit(3)"))
    cfg = tiny_config(tmp_path / "a")
    bad = precompile.Precompile([[cfg], [cfg]])
    bad.wait(1, lambda: False)
    assert bad.workers[1].returncode == 3
    bad.close()
    assert not (tmp_path / "a").exists()


def test_workers_that_cannot_start_leave_none_behind(tmp_path, monkeypatch):
    monkeypatch.setattr(precompile, "wanted", lambda groups: True)
    monkeypatch.setattr(precompile, "WORKER", (str(tmp_path / "no-such-python"),))
    pre = precompile.Precompile([[tiny_config(tmp_path / "a")]] * 3)
    assert not pre.workers
    pre.wait(1, lambda: False)
    pre.close()


def test_a_group_opened_compiled_starts_no_worker_the_next_time(tmp_path, monkeypatch):
    """From a warm cache a worker costs more than it saves: a group that opened compiled leaves a marker in the
    cache's folder, and the next command starts workers only for groups without one (other settings, another
    seed, an emptied cache)."""
    monkeypatch.setattr(precompile, "wanted", lambda groups: True)
    monkeypatch.setattr(precompile, "WORKER", (sys.executable, "-c", "pass"))
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    groups = [[tiny_config(tmp_path / f"g{k}r{s}", seed=s, prime=p) for s in (1, 2)] for k, p in enumerate((5, 7, 11))]
    first = precompile.Precompile(groups)
    assert sorted(first.workers) == [1, 2]
    for configs in groups:
        first.opened(configs)
    first.close()
    moved = [[c.replace(out_dir=str(tmp_path / "elsewhere" / c.train.out_dir[-4:])) for c in g] for g in groups]
    again = precompile.Precompile(moved)  # the same runs in other folders: the same compiled steps
    assert not again.workers
    changed = precompile.Precompile([groups[0], groups[1], [c.replace(seed=9) for c in groups[2]]])
    assert sorted(changed.workers) == [2]
    changed.close()
    for path in (tmp_path / "inductor").rglob("*"):  # an emptied cache empties the markers with it
        if path.is_file():
            path.unlink()
    emptied = precompile.Precompile(groups)
    assert sorted(emptied.workers) == [1, 2]
    emptied.close()

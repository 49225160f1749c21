"""Workers that fill torch.compile's cache for a wave's groups (training/precompile.py): what a worker leaves
is the cache and nothing else, a process then compiles from it, and a worker that fails, hangs, outlives its
command or is still running at a stop never changes what a group does. The wave itself runs only on a GPU
(tests/test_sweep.py's concurrent groups there); here `wanted` is patched to start workers on the CPU."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import groklab.engine
from groklab.training import precompile
from tests.helpers import tiny_config


def _run(command, configs, env, tmp_path):
    """`command` (a worker, as Precompile starts one) on a file of these configs, to its end."""
    path = tmp_path / f"configs-{time.monotonic_ns()}.json"
    path.write_text(json.dumps([c.to_dict() for c in configs]))
    return subprocess.run([*command, str(path), str(os.getpid())], env={**os.environ, **env}, capture_output=True,
                          timeout=600)


# a fresh process that builds the group's engine as opening it does, and says how its compile met the cache (a
# fresh one, because a process's inductor keeps the cache folder it first used)
_OPEN = """
import json, sys
from torch._dynamo.utils import counters
from groklab.config import RunConfig
from groklab.data.dataset import load_run_data
from groklab.training.loop import build_engine
configs = [RunConfig.from_dict(d) for d in json.load(open(sys.argv[1]))]
_, engine = build_engine(configs, [load_run_data(c.data, c.model) for c in configs])
print(json.dumps([engine.compiled, engine.compile_failed, dict(counters["inductor"])]))
"""


@pytest.fixture
def workers_on_cpu(monkeypatch, tmp_path):
    monkeypatch.setattr(precompile, "wanted", lambda groups: True)
    monkeypatch.setattr(precompile, "usable_cores", lambda: 16)  # the device machine's count (CI has 2: no workers)
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))


def test_a_worker_fills_the_cache_that_a_process_then_compiles_from(tmp_path):
    # a shape no other test compiles
    configs = [tiny_config(tmp_path / f"r{s}", seed=s, n_embd=24, prime=11, compile=True) for s in (1, 2)]
    env = {"TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor")}
    done = _run(precompile.WORKER, configs, env, tmp_path)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert any((tmp_path / "inductor").rglob("*")) and not any((tmp_path / f"r{s}").exists() for s in (1, 2))
    opened = _run((sys.executable, "-c", _OPEN), configs, env, tmp_path)
    assert opened.returncode == 0, opened.stderr.decode()[-2000:]
    compiled, failed, counts = json.loads(opened.stdout.decode().splitlines()[-1])
    assert compiled and not failed
    assert counts.get("fxgraph_cache_hit", 0) >= 1 and not counts.get("fxgraph_cache_miss"), counts


def test_the_code_hash_reads_only_regular_source_files_and_never_raises(tmp_path, monkeypatch):
    """Markers are keyed on a hash of the imported data, engine and model packages' source: a changed or added
    file changes it; a pipe (which would block a read), a directory, an editor's dangling lock link are
    skipped, and a file name that is not UTF-8 is hashed as its bytes."""
    folder = tmp_path / "engine"
    folder.mkdir()
    (folder / "step.py").write_text("x = 1\n")
    monkeypatch.setattr(groklab.engine, "__path__", [str(folder)])
    first = precompile.step_code()
    os.mkfifo(folder / "pipe.py")
    (folder / "dir.py").mkdir()
    os.symlink(folder / "gone", folder / ".#step.py")
    assert precompile.step_code() == first
    with open(os.fsencode(folder) + b"/\xff.py", "wb") as f:
        f.write(b"y = 2\n")
    second = precompile.step_code()
    assert second != first
    (folder / "step.py").write_text("x = 2\n")
    assert precompile.step_code() not in (first, second)


def test_workers_start_only_for_a_wave_of_compiled_groups_on_a_gpu(tmp_path, monkeypatch):
    cfg = tiny_config(tmp_path / "a", device="cuda", compile=True)
    monkeypatch.setattr(precompile, "resolve_device", lambda name: torch.device(name))
    assert precompile.wanted([[cfg], [cfg]])
    assert not precompile.wanted([[cfg]])  # one group: nothing to do meanwhile
    assert not precompile.wanted([[cfg], [cfg.replace(compile=False)]])
    assert not precompile.wanted([[cfg], [cfg.replace(device="cpu")]])
    monkeypatch.setattr(sys, "frozen", True, raising=False)  # an application that cannot start Python again
    assert not precompile.wanted([[cfg], [cfg]])
    monkeypatch.delattr(sys, "frozen")
    monkeypatch.setenv(precompile.DISABLE, "0")
    assert not precompile.wanted([[cfg], [cfg]])
    assert not precompile.Precompile([[cfg], [cfg]]).workers


def test_one_worker_a_compiled_step_none_for_the_first_groups_own(tmp_path, workers_on_cpu, monkeypatch):
    """Groups that differ only in what lives in tensors (seeds, rates, weight decay) compile one graph: the
    first group compiles it here, so they start no worker; another shape or switch does."""
    monkeypatch.setattr(precompile, "WORKER", (sys.executable, "-c", "pass"))
    base = [tiny_config(tmp_path / f"r{s}", seed=s) for s in (1, 2)]
    same = [c.replace(seed=c.train.seed + 10, learning_rate=1e-2, weight_decay=0.3) for c in base]
    groups = [base, same, [c.replace(prime=11) for c in base], [c.replace(orthograd=True) for c in base],
              [c.replace(prime=11) for c in same]]
    pre = precompile.Precompile(groups)
    assert sorted(pre.workers) == [2, 3]
    files = list(pre.files)
    assert len(files) == 2 and all(os.path.exists(f) for f in files)
    pre.close()
    assert not pre.workers and not any(os.path.exists(f) for f in files)  # the config files gone with them


def test_a_group_opened_compiled_starts_no_worker_the_next_time(tmp_path, workers_on_cpu, monkeypatch):
    """From a warm cache a worker costs more than it saves: a group that opened compiled leaves a marker in the
    cache's folder, and the next command starts workers only for groups without one (another shape, an emptied
    cache)."""
    monkeypatch.setattr(precompile, "WORKER", (sys.executable, "-c", "pass"))
    groups = [[tiny_config(tmp_path / f"g{k}r{s}", seed=s, prime=p) for s in (1, 2)] for k, p in enumerate((5, 7, 11))]
    first = precompile.Precompile(groups)
    assert sorted(first.workers) == [1, 2]
    for configs in groups:
        first.opened(configs)
    first.close()
    moved = [[c.replace(out_dir=str(tmp_path / "elsewhere" / c.train.out_dir[-4:]), seed=c.train.seed + 5) for c in g]
             for g in groups]
    assert not precompile.Precompile(moved).workers  # the same steps for other runs: nothing to compile
    changed = precompile.Precompile([groups[0], groups[1], [c.replace(prime=13) for c in groups[2]]])
    assert sorted(changed.workers) == [2]
    changed.close()
    with monkeypatch.context() as patched:  # other code (a new groklab) traces another step from the same shapes
        patched.setattr(precompile, "step_code", lambda: "other code")
        upgraded = precompile.Precompile(groups)
        assert sorted(upgraded.workers) == [1, 2]
        upgraded.close()
    for path in (tmp_path / "inductor").rglob("*"):  # an emptied cache empties the markers with it
        if path.is_file():
            path.unlink()
    emptied = precompile.Precompile(groups)
    assert sorted(emptied.workers) == [1, 2]
    emptied.close()


def test_hung_workers_are_waited_for_a_bounded_time_in_all_then_killed_at_close(tmp_path, workers_on_cpu,
                                                                                 monkeypatch):
    monkeypatch.setattr(precompile, "WORKER", (sys.executable, "-c", "import time; time.sleep(60)"))
    monkeypatch.setattr(precompile, "WAIT_S", 1.0)
    groups = [[tiny_config(tmp_path / "a", prime=p)] for p in (5, 7, 11, 13)]
    pre = precompile.Precompile(groups)
    assert sorted(pre.workers) == [1, 2, 3]  # none for the first group: this process compiles it meanwhile
    t0 = time.monotonic()
    for k in (1, 2, 3):
        pre.wait(k, lambda: False)
    assert 1.0 <= time.monotonic() - t0 < 2.5  # each worker's time runs from its start, not from each wait
    pre2 = precompile.Precompile(groups)
    t0 = time.monotonic()
    pre2.wait(1, lambda: True)  # a stop request: no waiting at all
    assert time.monotonic() - t0 < 1
    workers = [*pre.workers.values(), *pre2.workers.values()]
    pre.close()
    pre2.close()
    assert all(w.returncode is not None and w.returncode < 0 for w in workers)
    pre.wait(1, lambda: False)  # after close: nothing to wait for


def test_a_failing_worker_or_one_that_cannot_start_only_did_not_help(tmp_path, workers_on_cpu, monkeypatch):
    groups = [[tiny_config(tmp_path / "a", prime=p)] for p in (5, 7)]
    monkeypatch.setattr(precompile, "WORKER", (sys.executable, "-c", "raise SystemExit(3)"))
    bad = precompile.Precompile(groups)
    bad.wait(1, lambda: False)
    assert bad.workers[1].returncode == 3
    bad.close()
    monkeypatch.setattr(precompile, "WORKER", (str(tmp_path / "no-such-python"),))
    none = precompile.Precompile(groups)  # the start fails: no worker, nothing raised, no file left
    assert not none.workers and not none.files
    none.wait(1, lambda: False)
    none.close()


@pytest.mark.parametrize("error", [PermissionError(13, "Permission denied"), ValueError("a name not in UTF-8")])
def test_an_unsearchable_cache_folder_turns_markers_off_not_the_command(tmp_path, workers_on_cpu, monkeypatch,
                                                                        error):
    monkeypatch.setattr(precompile, "WORKER", (sys.executable, "-c", "pass"))

    def unreadable(configs, code):
        raise error

    monkeypatch.setattr(precompile, "marker", unreadable)
    groups = [[tiny_config(tmp_path / "a", prime=p)] for p in (5, 7)]
    pre = precompile.Precompile(groups)
    assert sorted(pre.workers) == [1]  # unmarked, as far as anyone can tell
    pre.opened(groups[1])  # no marker written, nothing raised
    pre.close()


def test_a_stop_while_workers_start_leaves_none_behind(tmp_path, workers_on_cpu, monkeypatch):
    monkeypatch.setattr(precompile, "WORKER", (sys.executable, "-c", "import time; time.sleep(60)"))
    started = []
    real = subprocess.Popen

    def popen(*args, **kwargs):
        if started:
            raise KeyboardInterrupt  # a second Ctrl-C while the second worker starts
        started.append(real(*args, **kwargs))
        return started[-1]

    monkeypatch.setattr(precompile.subprocess, "Popen", popen)
    monkeypatch.setattr(precompile.tempfile, "tempdir", str(tmp_path))  # where the workers' config files go
    with pytest.raises(KeyboardInterrupt):
        precompile.Precompile([[tiny_config(tmp_path / "a", prime=p)] for p in (5, 7, 11)])
    assert started[0].poll() is not None  # killed and reaped
    assert not list(tmp_path.glob("groklab-precompile-*"))  # both config files (the second's worker never ran)


def _alive(pid: int) -> bool:
    """A process that has not ended (a zombie waiting for its reaper has)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="reads /proc")
def test_a_worker_ends_when_the_command_that_started_it_is_killed(tmp_path):
    """A worker compiles for no one once its command is gone (SIGKILL, a crash): it exits soon after."""
    configs = tmp_path / "configs.json"
    os.mkfifo(configs)  # reading it blocks until a writer comes (none will): only the worker's watch can end it
    script = f"""
import os, subprocess, sys, time
from groklab.training import precompile
w = subprocess.Popen([*precompile.WORKER, {str(configs)!r}, str(os.getpid())], start_new_session=True)
print(w.pid, flush=True)
time.sleep(60)
"""
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        pid = int(parent.stdout.readline())
        time.sleep(1.0)
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 60
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
        raise AssertionError("the worker outlived the command that started it")


@pytest.mark.parametrize("cores,workers", [(2, []), (3, []), (4, [1]), (6, [1, 2]), (16, [1, 2, 3])])
def test_two_cores_a_compiling_process_or_no_worker(tmp_path, workers_on_cpu, monkeypatch, cores, workers):
    """Compiling is CPU work: on 2 cores three groups opened slower with workers than without (docs), so a
    worker needs two cores of its own, beside this process's two; the groups past that compile here."""
    monkeypatch.setattr(precompile, "WORKER", (sys.executable, "-c", "pass"))
    monkeypatch.setattr(precompile, "usable_cores", lambda: cores)
    pre = precompile.Precompile([[tiny_config(tmp_path / "a", prime=p)] for p in (5, 7, 11, 13)])
    assert sorted(pre.workers) == workers
    pre.close()

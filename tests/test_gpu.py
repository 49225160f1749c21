"""The GPU fast path agrees with the plain one. Skipped where there is no CUDA device (as in CI); run on the
lent H100 for docs/benchmarks.md."""

import json

import pytest
import torch

from groklab.config import ModelConfig, OptimConfig
from groklab.engine.step import Engine
from groklab.engine.hyper import Hyper
from groklab.data.examples import Examples, stack
from groklab.model.gpt import GPT
from groklab.training.loop import train_runs
from groklab.training.interrupts import Interrupted
from tests.helpers import same_tensors, stop_after, tiny_config

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
CFG = ModelConfig(n_layer=2, n_head=2, n_embd=32, block_size=6)
V = 9


def _engine(device, optimizer, compile=False, grokfast="none", precision="fp32"):
    g = torch.Generator().manual_seed(0)
    data = []
    for n in (40, 25, 33):
        x = torch.randint(0, V, (n, 6), generator=g)
        y = torch.randint(0, V, (n, 6), generator=g)
        y[:, :3] = -1
        data.append(Examples(x, y))
    optims = [OptimConfig(learning_rate=1e-3, weight_decay=1.0, beta2=0.98, grad_clip=0.5),
              OptimConfig(learning_rate=3e-3, weight_decay=0.0),
              OptimConfig(learning_rate=2e-3, weight_decay=0.1, warmup_steps=3, decay_on="all")]
    optims = [o.__class__(**{**o.__dict__, "grokfast": grokfast, "grokfast_window": 4}) for o in optims]
    model = GPT(CFG, V, 3, device)
    model.init_from_seeds([1, 2, 3])
    dev = torch.device(device)
    return Engine(model, Hyper.build(optims, [1, 2, 3], [8, 16, 4], dev), stack(data), optimizer=optimizer,
                  compile=compile, precision=precision)


@cuda
def test_cuda_graph_step_equals_eager_step():
    eager, graphed = _engine("cuda", "tensor"), _engine("cuda", "tensor")
    assert graphed.capture_cuda_graph() == "cuda-graph"
    for _ in range(10):
        a = eager.step().clone()
        b = graphed.step().clone()
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(eager.model.flat, graphed.model.flat, rtol=1e-5, atol=1e-6)
    assert int(graphed.step_count) == 10 and graphed.steps_taken == 10


@cuda
@pytest.mark.parametrize("grokfast", ["ema", "ma"])
def test_grokfast_inside_the_cuda_graph_equals_eager(grokfast):
    eager, graphed = _engine("cuda", "tensor", grokfast=grokfast), _engine("cuda", "tensor", grokfast=grokfast)
    assert graphed.capture_cuda_graph() == "cuda-graph"  # its warm-up is rolled back, filter state included
    for _ in range(9):
        eager.step()
        graphed.step()
    torch.testing.assert_close(eager.model.flat, graphed.model.flat, rtol=1e-5, atol=1e-6)
    for a, b in zip(eager.grad_filter.buffers(), graphed.grad_filter.buffers()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@cuda
def test_gpu_step_matches_cpu_step():
    cpu, gpu = _engine("cpu", "tensor"), _engine("cuda", "tensor")
    gpu.capture_cuda_graph()
    for _ in range(5):
        cpu.step()
        gpu.step()
    torch.testing.assert_close(gpu.model.flat.cpu(), cpu.model.flat, rtol=1e-4, atol=1e-5)


@cuda
def test_training_on_gpu_records_the_step_path_and_resumes(tmp_path, monkeypatch):
    """The default on a GPU is the compiled step inside a CUDA graph, `compile=False` the graph alone, and
    meta.json says which ran. 12 steps straight, and 4 steps, a stop, then the same command (a resume may
    change nothing that defines the run: issue 15): the same weights to float rounding."""
    train_runs([tiny_config(tmp_path / "plain", device="cuda", max_steps=3, compile=False)], log=lambda _: None)
    assert json.loads((tmp_path / "plain/meta.json").read_text())["engine"] == "cuda-graph"
    train_runs([tiny_config(tmp_path / "a", device="cuda", max_steps=12)], log=lambda _: None)
    assert json.loads((tmp_path / "a/meta.json").read_text())["engine"] == "cuda-graph + torch.compile"
    stop = stop_after(monkeypatch, 4)
    with pytest.raises(Interrupted, match="at step 4"):
        train_runs([tiny_config(tmp_path / "b", device="cuda", max_steps=12)], log=lambda _: None, stop=stop)
    monkeypatch.undo()
    train_runs([tiny_config(tmp_path / "b", device="cuda", max_steps=12)], log=lambda _: None)
    from safetensors.torch import load_file

    a, b = load_file(tmp_path / "a/model.safetensors"), load_file(tmp_path / "b/model.safetensors")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)


@cuda
def test_compiled_graph_step_matches_eager_step():
    """Fused kernels sum in another order: the losses agree to float rounding at every step; a few weights
    whose gradient is near zero drift further (Adam divides by sqrt(v)), measured on an H100 at ~1e-5 max
    and ~1e-8 mean after 10 steps, hence the bounds."""
    eager, fused = _engine("cuda", "tensor"), _engine("cuda", "tensor", compile=True)
    assert fused.capture_cuda_graph() == "cuda-graph"
    for _ in range(10):
        a = eager.step().clone()
        b = fused.step().clone()
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    diff = (eager.model.flat - fused.model.flat).abs()
    assert float(diff.max()) < 5e-5 and float(diff.mean()) < 1e-7


@cuda
@pytest.mark.parametrize("compile", [False, True])
@pytest.mark.parametrize("precision", ["tf32", "bf16"])
def test_tf32_and_bf16_inside_the_cuda_graph(precision, compile):
    """The captured graph runs the asked precision (close to fp32, not equal to it), keeps float32 master
    weights and Adam moments, and leaves the process-wide TF32 switch as it found it."""
    ambient = torch.backends.cuda.matmul.allow_tf32
    fp32, fast = _engine("cuda", "tensor"), _engine("cuda", "tensor", compile=compile, precision=precision)
    assert fp32.capture_cuda_graph() == "cuda-graph" and fast.capture_cuda_graph() == "cuda-graph"
    assert fast.precision.ran == precision and torch.backends.cuda.matmul.allow_tf32 == ambient
    for _ in range(10):
        a, b = fp32.step().clone(), fast.step().clone()
        torch.testing.assert_close(b, a, rtol=5e-2, atol=0)
    assert not torch.equal(fp32.model.flat, fast.model.flat)
    # weights apart by rounding, not by a different trajectory (Adam can still flip near-zero coordinates)
    assert (fp32.model.flat - fast.model.flat).norm() < 1e-2 * fp32.model.flat.norm()
    assert fast.model.flat.dtype == torch.float32
    assert all(t.dtype == torch.float32 for t in fast.member_state(0).values())


@cuda
def test_tf32_runs_fp32_without_the_graph_and_says_so():
    eager = _engine("cuda", "tensor", precision="tf32")
    eager.step()
    assert eager.precision.ran == "fp32" and "not captured" in eager.precision.why


@cuda
def test_groups_of_different_precision_trained_at_once_match_each_alone(tmp_path):
    """fp32, tf32 and bf16 groups captured one after another and trained at once (one thread and stream
    each) end bit for bit where each group ends trained alone (the same group: GEMMs over another number
    of runs may round differently): no group's precision leaks into another's."""
    from groklab.training.groups import train_many

    def configs(folder):
        return [tiny_config(tmp_path / folder / f"{p}-{s}", device="cuda", precision=p, seed=s, max_steps=30)
                for p in ("fp32", "tf32", "bf16") for s in (1, 2)]

    train_many(configs("together"), log=lambda _: None, concurrent=3)
    alone = configs("alone")
    for k in range(0, len(alone), 2):  # the same groups (one precision, two seeds), one after another
        train_many(alone[k:k + 2], log=lambda _: None)
    for p in ("fp32", "tf32", "bf16"):
        for s in (1, 2):
            a, b = tmp_path / "together" / f"{p}-{s}", tmp_path / "alone" / f"{p}-{s}"
            assert json.loads((a / "meta.json").read_text())["precision"]["ran"] == p
            assert same_tensors(a / "model.safetensors", b / "model.safetensors"), (p, s)
    assert not same_tensors(tmp_path / "together/fp32-1/model.safetensors", tmp_path / "together/tf32-1/model.safetensors")

"""--precision: the config field, its groups, what runs on a CPU (tf32 is fp32 there; bf16 autocasts the
matrix products and keeps float32 master weights and optimizer state), resume and meta.json. The GPU side
(tf32 and bf16 inside the captured graph) is in tests/test_gpu.py."""

import json

import pytest
import torch

from groklab.config import ConfigError, ModelConfig, OptimConfig, RunConfig
from groklab.engine.step import Engine
from groklab.engine.hyper import Hyper
from groklab.errors import GroklabError
from groklab.data.examples import Examples, stack
from groklab.training.groups import plan_groups
from groklab.model.gpt import GPT
from groklab.engine.precision import StepPrecision, check_device, cpu_has_bf16
from groklab.experiments.spec import SpecError, parse_spec
from groklab.training.loop import train_runs
from groklab.training.interrupts import Interrupted
from tests.helpers import same_tensors, stop_after, tiny_config

CFG = ModelConfig(n_layer=2, n_head=2, n_embd=16, block_size=6)
V = 9
CPU = torch.device("cpu")
needs_cpu_bf16 = pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has no bf16 instructions")


def _quiet(_):
    pass


def _engine(precision, optimizer="tensor"):
    g = torch.Generator().manual_seed(0)
    data = []
    for n in (40, 25):
        x = torch.randint(0, V, (n, 6), generator=g)
        y = torch.randint(0, V, (n, 6), generator=g)
        y[:, :3] = -1
        data.append(Examples(x, y))
    optims = [OptimConfig(learning_rate=3e-3, weight_decay=1.0, beta2=0.98, grad_clip=0.5),
              OptimConfig(learning_rate=2e-3, weight_decay=0.1)]
    model = GPT(CFG, V, 2)
    model.init_from_seeds([1, 2])
    return Engine(model, Hyper.build(optims, [1, 2], [8, 16], CPU), stack(data), optimizer=optimizer,
                  precision=precision)


def test_precision_is_a_validated_config_field_and_a_sweep_axis():
    assert RunConfig().train.precision == "fp32"
    assert RunConfig().replace(precision="bf16").train.precision == "bf16"
    with pytest.raises(ConfigError, match="precision"):
        RunConfig().replace(precision="fp16")
    spec = parse_spec('name = "p"\n[base]\noperators = "+"\nprime = 7\n[grid]\nprecision = ["fp32", "tf32"]\n')
    assert [r.config.train.precision for r in spec.expand()] == ["fp32", "tf32"]
    with pytest.raises(SpecError, match="precision"):
        parse_spec('name = "p"\n[base]\noperators = "+"\nprime = 7\n[grid]\nprecision = ["fp16"]\n').expand()


def test_runs_of_different_precision_never_share_a_group(tmp_path):
    cfgs = [tiny_config(tmp_path / "a"), tiny_config(tmp_path / "b", seed=2),
            tiny_config(tmp_path / "c", precision="tf32"), tiny_config(tmp_path / "d", precision="bf16")]
    assert plan_groups(cfgs) == [[0, 1], [2], [3]]


def test_tf32_on_a_cpu_is_fp32_bit_for_bit_and_meta_says_so(tmp_path):
    train_runs([tiny_config(tmp_path / "fp32", device="cpu")], log=_quiet)
    train_runs([tiny_config(tmp_path / "tf32", device="cpu", precision="tf32")], log=_quiet)
    assert same_tensors(tmp_path / "fp32/model.safetensors", tmp_path / "tf32/model.safetensors")
    assert json.loads((tmp_path / "fp32/meta.json").read_text())["precision"] == {"asked": "fp32", "ran": "fp32"}
    meta = json.loads((tmp_path / "tf32/meta.json").read_text())["precision"]
    assert meta["asked"] == "tf32" and meta["ran"] == "fp32" and "CPU" in meta["why"]


@needs_cpu_bf16
@pytest.mark.parametrize("optimizer", ["tensor", "fused"])
def test_bf16_autocast_is_close_to_fp32_not_equal_and_keeps_float32_state(optimizer):
    fp32, bf16 = _engine("fp32", optimizer), _engine("bf16", optimizer)
    assert bf16.precision.ran == "bf16"
    first32, first16 = fp32.step().clone(), bf16.step().clone()
    # the same weights and batch: the loss differs only by bf16 rounding of the matrix products (~0.4 %)
    assert not torch.equal(first32, first16)
    torch.testing.assert_close(first16, first32, rtol=2e-2, atol=0)
    for _ in range(5):
        a, b = fp32.step(), bf16.step()
    torch.testing.assert_close(b, a, rtol=5e-2, atol=0)
    assert not torch.equal(fp32.model.flat, bf16.model.flat)
    assert bf16.model.flat.dtype == bf16.model.grad.dtype == torch.float32  # master weights and gradients
    for e in range(2):
        assert all(t.dtype == torch.float32 for t in bf16.member_state(e).values())  # Adam moments


def test_fp32_engine_is_unchanged_by_the_precision_argument():
    """precision="fp32" is the engine as it was: same losses and weights as an engine built without it."""
    a = _engine("fp32")
    model = GPT(CFG, V, 2)
    model.init_from_seeds([1, 2])
    b = Engine(model, a.hyper, a.train, optimizer="tensor")
    for _ in range(3):
        assert torch.equal(a.step(), b.step())
    assert torch.equal(a.model.flat, b.model.flat)


def test_bf16_refusal_on_a_cpu_without_bf16_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setattr("groklab.engine.precision.cpu_has_bf16", lambda: False)
    with pytest.raises(GroklabError, match="^precision: bf16 on a CPU needs bf16 instructions"):
        check_device("bf16", CPU)
    with pytest.raises(GroklabError, match="precision"):
        train_runs([tiny_config(tmp_path / "x", device="cpu", precision="bf16")], log=_quiet)
    assert not (tmp_path / "x").exists()  # refused before anything was written
    check_device("bf16", torch.device("cuda"))  # the GPU is not this CPU's business
    check_device("tf32", CPU)


@needs_cpu_bf16
def test_bf16_run_on_a_cpu_resumes_exactly_and_refuses_another_precision(tmp_path, monkeypatch):
    """An interrupted bf16 run, continued by the same command, ends bit for bit as the run straight through
    (on the CPU, where exact resume is promised); continuing it in another precision is refused."""
    def cfg(name, **changes):
        return tiny_config(tmp_path / name, **({"device": "cpu", "precision": "bf16"} | changes))

    train_runs([cfg("a")], log=_quiet)
    stop = stop_after(monkeypatch, 4)
    with pytest.raises(Interrupted):
        train_runs([cfg("b")], log=_quiet, stop=stop)
    monkeypatch.undo()
    with pytest.raises(GroklabError, match="precision"):
        train_runs([cfg("b", precision="fp32")], log=_quiet)
    train_runs([cfg("b")], log=_quiet)
    assert same_tensors(tmp_path / "a/model.safetensors", tmp_path / "b/model.safetensors")
    meta = json.loads((tmp_path / "b/meta.json").read_text())
    assert meta["precision"] == {"asked": "bf16", "ran": "bf16"} == meta["resumes"][-1]["precision"]


def test_tf32_switch_is_set_only_while_capturing_and_put_back():
    """The process-wide TF32 flag holds the asked value inside `capturing` only (forced off for fp32 and
    bf16, whatever the process had), and comes back afterwards, also when the capture fails."""
    matmul = torch.backends.cuda.matmul
    cuda = torch.device("cuda")  # a device object only: nothing runs on it
    before = matmul.allow_tf32
    try:
        for ambient in (False, True):
            matmul.allow_tf32 = ambient
            for asked in ("fp32", "tf32", "bf16"):
                with StepPrecision.plan(asked, cuda).capturing(cuda):
                    assert matmul.allow_tf32 is (asked == "tf32")
                assert matmul.allow_tf32 is ambient
            with pytest.raises(RuntimeError):
                with StepPrecision.plan("tf32", cuda).capturing(cuda):
                    raise RuntimeError("capture failed")
            assert matmul.allow_tf32 is ambient
            with StepPrecision.plan("tf32", CPU).capturing(CPU):
                assert matmul.allow_tf32 is ambient  # nothing to switch on a CPU
    finally:
        matmul.allow_tf32 = before


def test_tf32_runs_tf32_only_inside_a_captured_graph():
    cuda = torch.device("cuda")
    eager = StepPrecision.plan("tf32", cuda)
    assert eager.ran == "fp32" and "process-wide" in eager.why
    assert eager.captured(cuda).record() == {"asked": "tf32", "ran": "tf32"}
    assert StepPrecision.plan("bf16", cuda).record() == {"asked": "bf16", "ran": "bf16"}

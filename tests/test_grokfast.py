"""Grokfast filters change the gradient exactly as the paper's equations say, per run inside a group, and
their state survives a resume."""

import json

import pytest
import torch
from safetensors.torch import load_file

from groklab.config import ConfigError, OptimConfig
from groklab.engine.grokfast import EMAFilter, MAFilter
from groklab.training.loop import train_runs
from groklab.training.interrupts import Interrupted
from helpers import stop_after, tiny_config
from test_engine import _data, _engine


def hand_ema(grads, alpha, lamb):
    """h_0 = g_0; h_t = alpha h_{t-1} + (1 - alpha) g_t; out_t = g_t + lamb h_t, elementwise by hand."""
    out, h = [], None
    for g in grads:
        h = g.clone() if h is None else alpha * h + (1 - alpha) * g
        out.append(g + lamb * h)
    return out


def hand_ma(grads, window, lamb):
    """out_t = g_t + lamb * mean(g_{t-w+1..t}) once w gradients have been seen, else g_t."""
    return [g + lamb * torch.stack(grads[t - window + 1 : t + 1]).mean(0) if t + 1 >= window else g.clone()
            for t, g in enumerate(grads)]


def run_filter(f, grads):
    out = []
    for t, g in enumerate(grads):
        g = g.clone()
        f.apply(g, torch.tensor(t))
        out.append(g)
    return out


def test_ema_filter_is_the_papers_equation_per_run():
    torch.manual_seed(0)
    grads = [torch.randn(2, 7) for _ in range(6)]
    alpha, lamb = torch.tensor([[0.98], [0.5]]), torch.tensor([[2.0], [0.7]])
    got = run_filter(EMAFilter(alpha, lamb, (2, 7), torch.device("cpu")), grads)
    for e in range(2):  # each run with its own alpha and lamb, as if alone
        want = hand_ema([g[e] for g in grads], alpha[e].item(), lamb[e].item())
        for t in range(6):
            assert torch.allclose(got[t][e], want[t], rtol=1e-6, atol=1e-7), (e, t)
    assert torch.allclose(got[0], grads[0] * (1 + lamb), rtol=1e-6)  # h_0 = g_0: the first step is amplified by (1 + lamb)


def test_ma_filter_waits_for_a_full_window_then_adds_the_mean():
    torch.manual_seed(1)
    grads = [torch.randn(2, 5) for _ in range(9)]
    lamb = torch.tensor([[5.0], [1.5]])
    got = run_filter(MAFilter(3, lamb, (2, 5), torch.device("cpu")), grads)
    for e in range(2):
        want = hand_ma([g[e] for g in grads], 3, lamb[e].item())
        for t in range(9):
            assert torch.allclose(got[t][e], want[t], rtol=1e-5, atol=1e-6), (e, t)
    assert torch.equal(got[0], grads[0]) and torch.equal(got[1], grads[1])  # warm-up: unchanged


class HandEMA:
    """The paper's EMA in plain per-step Python, standing in for the engine's filter."""

    def __init__(self, alpha, lamb):
        self.alpha, self.lamb, self.h = alpha, lamb, None

    def apply(self, grad, step):
        self.h = grad.clone() if self.h is None else self.alpha * self.h + (1 - self.alpha) * grad
        grad.add_(self.lamb * self.h)


def test_engine_update_equals_adamw_on_the_hand_filtered_gradient():
    opt = OptimConfig(learning_rate=3e-3, weight_decay=0.5, grad_clip=0.0, grokfast="ema", grokfast_alpha=0.9,
                      grokfast_lamb=3.0)
    x, y = _data()
    ours = _engine([opt], [5], [8], [(x, y)])
    hand = _engine([OptimConfig(learning_rate=3e-3, weight_decay=0.5, grad_clip=0.0)], [5], [8], [(x, y)])
    hand.grad_filter = HandEMA(0.9, 3.0)
    plain = _engine([OptimConfig(learning_rate=3e-3, weight_decay=0.5, grad_clip=0.0)], [5], [8], [(x, y)])
    for _ in range(6):
        ours.step(), hand.step(), plain.step()
    # equal to rounding: (1 - alpha) is a float32 tensor in the engine, a double here, and Adam's
    # normalisation magnifies last-bit differences on near-zero gradients to ~1e-5 after six steps
    assert torch.allclose(ours.model.flat, hand.model.flat, rtol=0, atol=2e-5)
    assert not torch.allclose(ours.model.flat, plain.model.flat, atol=1e-4)  # the filter did change the update


def test_runs_with_different_filter_values_share_a_group():
    x, y = _data()
    opts = [OptimConfig(learning_rate=3e-3, grokfast="ma", grokfast_window=4, grokfast_lamb=lamb) for lamb in (5.0, 0.0)]
    group = _engine(opts, [1, 2], [8, 8], [(x, y), (x, y)], optimizer="tensor")
    alone = [_engine([o], [s], [8], [(x, y)], optimizer="tensor") for o, s in zip(opts, (1, 2))]
    for _ in range(7):
        group.step()
        for a in alone:
            a.step()
    for e in range(2):
        assert torch.allclose(group.model.flat[e], alone[e].model.flat[0], rtol=0, atol=2e-5)  # as test_engine
    with pytest.raises(ValueError, match="share grokfast"):
        _engine([opts[0], OptimConfig(grokfast="ema")], [1, 2], [8, 8], [(x, y), (x, y)])


@pytest.mark.parametrize("kind", ["ema", "ma"])
def test_resume_with_a_filter_is_exact(tmp_path, kind, monkeypatch):
    changes = dict(grokfast=kind, grokfast_window=3, grokfast_lamb=2.0)
    train_runs([tiny_config(tmp_path / "a", **changes)], log=lambda _: None)
    stop = stop_after(monkeypatch, 5)
    with pytest.raises(Interrupted):
        train_runs([tiny_config(tmp_path / "b", **changes)], log=lambda _: None, stop=stop)
    monkeypatch.undo()
    train_runs([tiny_config(tmp_path / "b", resume=True, **changes)], log=lambda _: None)
    a, b = load_file(tmp_path / "a/state.safetensors"), load_file(tmp_path / "b/state.safetensors")
    assert any(k.startswith("optim.grokfast") for k in a)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rows = [json.loads(r) for r in (tmp_path / "b/metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 12


def test_filter_settings_are_validated():
    with pytest.raises(ConfigError, match="grokfast: 'none', 'ema' or 'ma'"):
        OptimConfig(grokfast="fast")
    with pytest.raises(ConfigError, match="grokfast_alpha"):
        OptimConfig(grokfast_alpha=1.0)


def test_orthograd_removes_the_component_along_each_weight_tensor():
    from groklab.engine.orthograd import project_out_weights

    x, y = _data()
    eng = _engine([OptimConfig(orthograd=True), OptimConfig()], [1, 2], [8, 8], [(x, y), (x, y)], optimizer="tensor")
    m = eng.model
    torch.manual_seed(3)
    m.grad.copy_(torch.randn_like(m.grad))
    before = m.grad.clone()
    project_out_weights(m.grad, m.flat, m.specs, eng.hyper.orthograd)
    assert torch.equal(m.grad[1], before[1])  # the run without ⊥Grad is untouched
    for s in m.specs:
        sl = slice(s.offset, s.offset + s.numel)
        g, w, g0 = m.grad[0, sl].double(), m.flat[0, sl].double(), before[0, sl].double()
        if w.norm() == 0:
            continue
        assert abs(float(g @ w)) <= 1e-5 * float(g0.norm() * w.norm())  # orthogonal to the weights
        want = g0 - (g0 @ w) / (w @ w) * w  # the paper's equation, in float64
        assert torch.allclose(g, want, atol=1e-6), s.name


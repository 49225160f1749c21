"""Nanda et al. 2023's model and training as options: ReLU, no LayerNorm, no attention biases, an untied head,
their init, and full-batch training; each held equal to the plain reference model, for one run and a group."""

import dataclasses
import math

import pytest
import torch

from groklab.config import ConfigError, ModelConfig, OptimConfig, TrainConfig
from groklab.engine.step import Engine
from groklab.engine.hyper import Hyper
from groklab.data.examples import Examples, stack
from groklab.model.gpt import GPT, param_layout
from groklab.model.reference import ReferenceGPT, make_optimizer, reference_step
from tests.helpers import without_key_bias

CFG = ModelConfig(n_layer=2, n_head=2, n_embd=16, block_size=6)
V = 9
NANDA = dict(activation="relu", layer_norm=False, attention_bias=False, tie_embeddings=False, init="nanda",
             embedding_init_std=16 ** -0.5)
OPTIONS = [dict(activation="relu"), dict(layer_norm=False), dict(attention_bias=False), dict(tie_embeddings=False),
           NANDA]


def _reference_for(model: GPT, e: int) -> ReferenceGPT:
    ref = ReferenceGPT(model.cfg, model.vocab_size)
    ref.load_group_weights(model.member_state(e))
    return ref


@pytest.mark.parametrize("opts", OPTIONS, ids=lambda o: ",".join(o))
@pytest.mark.parametrize("E", [1, 3])
def test_options_match_the_reference_forward_and_backward(opts, E):
    """Each option (and Nanda's whole model) gives the reference model's logits and gradients, for every run
    of a group."""
    cfg = dataclasses.replace(CFG, **opts)
    model = GPT(cfg, V, E)
    model.init_from_seeds(list(range(3, 3 + E)))
    idx = torch.randint(0, V, (E, 4, 6))
    logits = model(idx)
    probe = torch.randn(logits.shape, generator=torch.Generator().manual_seed(0))  # a loss of every logit
    (logits * probe).sum().backward()
    for e in range(E):
        ref = _reference_for(model, e)
        ref_logits = ref(idx[e])
        torch.testing.assert_close(logits[e], ref_logits, rtol=1e-5, atol=1e-5)
        (ref_logits * probe[e]).sum().backward()
        grads = ref.group_grads()
        assert set(grads) == set(model.params)
        for name, p in model.params.items():  # float32 sums in another order: tolerance relative to the largest
            scale = float(grads[name].abs().max())
            torch.testing.assert_close(p.grad[e], grads[name], rtol=1e-4, atol=1e-5 * max(scale, 1.0), msg=name)


def test_layer_norm_off_has_no_layer_norm_weights_and_attention_bias_off_keeps_mlp_biases():
    plain = {s.name for s in param_layout(CFG, V)}
    no_ln = {s.name for s in param_layout(dataclasses.replace(CFG, layer_norm=False), V)}
    assert {n for n in plain if ".ln_" in n or n.startswith("ln_f")} == plain - no_ln  # every LayerNorm tensor goes
    assert not any(".ln_" in n or n.startswith("ln_f") for n in no_ln)
    no_attn = {s.name for s in param_layout(dataclasses.replace(CFG, attention_bias=False), V)}
    assert plain - no_attn == {f"h.{i}.attn.{w}.bias" for i in range(2) for w in ("c_attn", "c_proj")}
    assert "h.0.mlp.c_fc.bias" in no_attn and "h.0.mlp.c_proj.bias" in no_attn


def test_the_options_change_the_function():
    """ReLU and no LayerNorm are other functions of the same weights, not no-ops."""
    base = GPT(CFG, V, 1)
    base.init_from_seeds([1])
    idx = torch.randint(0, V, (1, 3, 6))
    relu = GPT(dataclasses.replace(CFG, activation="relu"), V, 1)
    relu.flat.copy_(base.flat)
    assert not torch.allclose(relu(idx), base(idx), atol=1e-4)
    no_ln = GPT(dataclasses.replace(CFG, layer_norm=False), V, 1)
    no_ln.init_from_seeds([1])
    assert no_ln.numel < base.numel and not torch.allclose(no_ln(idx), base(idx), atol=1e-4)


def test_nanda_init_spreads():
    """init 'nanda': every weight matrix N(0, 1/sqrt(C)) (the MLP's output projection too), the untied head
    N(0, 1/sqrt(V)), biases zero (their code's Transformer)."""
    C, big_v = 128, 116
    cfg = dataclasses.replace(CFG, n_embd=C, n_head=4, n_layer=1, **{**NANDA, "embedding_init_std": C ** -0.5})
    m = GPT(cfg, big_v, 1)
    m.init_from_seeds([0])
    for name in ("h.0.attn.c_attn.weight", "h.0.attn.c_proj.weight", "h.0.mlp.c_fc.weight", "h.0.mlp.c_proj.weight",
                 "wte", "wpe"):
        assert math.isclose(float(m.params[name].detach().std()), C ** -0.5, rel_tol=0.06), name
    assert math.isclose(float(m.params["lm_head"].detach().std()), big_v ** -0.5, rel_tol=0.06)
    assert float(m.params["h.0.mlp.c_fc.bias"].detach().abs().max()) == 0
    assert "h.0.attn.c_attn.bias" not in m.params


def test_norm_residual_needs_layer_norm():
    with pytest.raises(ConfigError, match="norm_residual: needs layer_norm"):
        ModelConfig(layer_norm=False, norm_residual=True)
    with pytest.raises(ConfigError, match="activation"):
        ModelConfig(activation="tanh")  # type: ignore[arg-type]


def test_batch_size_zero_is_full_batch_and_negative_is_refused():
    assert TrainConfig(batch_size=0).batch_size == 0
    with pytest.raises(ConfigError, match="batch_size: must be at least 1, or 0 for full batch"):
        TrainConfig(batch_size=-1)


def _split(n, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, V, (n, 6), generator=g)
    y = torch.randint(0, V, (n, 6), generator=g)
    y[:, :3] = -1
    return x, y


@pytest.mark.parametrize("path", ["fused", "tensor"])
def test_full_batch_equals_reference_steps_on_the_whole_split(path):
    """batch_size 0: every step is the reference step on the run's whole train split, in order. Two runs with
    train splits of 40 and 25 rows share a group: the second's 15 padding rows count for nothing."""
    cfg = dataclasses.replace(CFG, **NANDA)
    opt_cfg = OptimConfig(learning_rate=3e-3, weight_decay=1.0, beta2=0.98, grad_clip=0.0, decay_on="all")
    splits = [_split(40, 1), _split(25, 2)]
    model = GPT(cfg, V, 2)
    model.init_from_seeds([5, 6])
    refs = [_reference_for(model, e) for e in range(2)]
    opts = [make_optimizer(r, opt_cfg, fused=False) for r in refs]
    eng = Engine(model, Hyper.build([opt_cfg] * 2, [5, 6], [0, 0], torch.device("cpu")),
                 stack([Examples(x, y) for x, y in splits]), optimizer=path)
    for _ in range(4):
        x, _, ans = eng.batch()
        assert torch.equal(x[0], splits[0][0]) and torch.equal(x[1, :25], splits[1][0])  # the split, in order
        assert bool((ans[1, 25:] == -1).all()) and bool((ans[1, :25] >= 0).any())  # padding rows masked out
        loss = eng.step()
        for e, (sx, sy) in enumerate(splits):
            torch.testing.assert_close(loss[e], reference_step(refs[e], opts[e], sx, sy), rtol=1e-5, atol=1e-6)
    for e in range(2):
        ours = without_key_bias(eng.model.member_state(e))
        theirs = without_key_bias({refs[e]._their_name(n): p.detach().T if refs[e]._transposed(n, p) else p.detach()
                                   for n, p in refs[e].named_parameters()})
        for name in ours:
            torch.testing.assert_close(ours[name], theirs[name], rtol=1e-4, atol=2e-6, msg=name)


def test_full_batch_and_sampled_runs_share_a_group():
    """A full-batch run beside a batch-8 run: each gets what it would get alone."""
    opt_cfg = OptimConfig(learning_rate=2e-3, weight_decay=0.5, grad_clip=0.0)
    splits = [_split(30, 3), _split(20, 4)]
    group = Engine(GPT(CFG, V, 2), Hyper.build([opt_cfg] * 2, [1, 2], [0, 8], torch.device("cpu")),
                   stack([Examples(*s) for s in splits]))
    group.model.init_from_seeds([1, 2])
    for _ in range(3):
        group.step()
    for e, size in enumerate([0, 8]):
        alone = Engine(GPT(CFG, V, 1), Hyper.build([opt_cfg], [e + 1], [size], torch.device("cpu")),
                       stack([Examples(*splits[e])]))
        alone.model.init_from_seeds([e + 1])
        for _ in range(3):
            alone.step()
        torch.testing.assert_close(group.model.flat[e], alone.model.flat[0], rtol=1e-5, atol=1e-5)

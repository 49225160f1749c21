import dataclasses

import pytest
import torch

from groklab.config import ModelConfig
from groklab.model.gpt import GPT, param_layout
from groklab.model.reference import ReferenceGPT

CFG = ModelConfig(n_layer=2, n_head=2, n_embd=16, block_size=8)
V = 11


def test_layout_covers_flat_buffer_without_overlap():
    specs = param_layout(CFG, V)
    covered = sorted((s.offset, s.offset + s.numel) for s in specs)
    assert covered[0][0] == 0
    assert all(a[1] == b[0] for a, b in zip(covered, covered[1:]))
    decayed = {s.name for s in specs if s.decay}
    assert "wte" in decayed and "h.0.attn.c_attn.weight" in decayed
    assert not any(n.endswith("bias") or ".ln_" in n or n.startswith("ln_f") for n in decayed)


@pytest.mark.parametrize("norm_residual", [False, True])
def test_matches_reference_forward_and_backward(norm_residual):
    cfg = dataclasses.replace(CFG, norm_residual=norm_residual)
    model = GPT(cfg, V, 1)
    model.init_from_seeds([3])
    ref = ReferenceGPT(cfg, V)
    ref.load_group_weights(model.member_state(0))
    idx = torch.randint(0, V, (1, 4, 8))
    logits = model(idx)
    ref_logits = ref(idx[0])
    torch.testing.assert_close(logits[0], ref_logits, rtol=1e-5, atol=1e-5)
    logits.square().sum().backward()
    ref_logits.square().sum().backward()
    grads = ref.group_grads()
    for name, p in model.params.items():
        torch.testing.assert_close(p.grad[0], grads[name], rtol=1e-4, atol=1e-5, msg=name)
    # the two block kinds are different functions of the same weights
    other = GPT(dataclasses.replace(cfg, norm_residual=not norm_residual), V, 1)
    other.flat.copy_(model.flat)
    assert not torch.allclose(other(idx), logits, atol=1e-3)


def test_gradients_land_in_flat_buffer_for_every_member():
    E = 3
    model = GPT(CFG, V, E)
    model.init_from_seeds([1, 2, 3])
    idx = torch.randint(0, V, (E, 2, 8))
    model.zero_grad()
    out = model(idx)
    (out * torch.arange(1, E + 1)[:, None, None, None]).sum().backward()
    assert model.grad.abs().sum() > 0
    for s in model.specs:
        view = model.grad[:, s.offset : s.offset + s.numel].view(E, *s.shape)
        assert model.params[s.name].grad.data_ptr() == view.data_ptr(), s.name


def test_members_are_independent():
    """Changing one run's weights or inputs never changes another run's output."""
    model = GPT(CFG, V, 2)
    model.init_from_seeds([1, 2])
    idx = torch.randint(0, V, (2, 3, 8))
    before = model(idx).detach()
    with torch.no_grad():
        model.flat[1].mul_(1.5)
    idx2 = idx.clone()
    idx2[1] = (idx2[1] + 1) % V
    after = model(idx2).detach()
    torch.testing.assert_close(before[0], after[0], rtol=0, atol=0)
    assert not torch.allclose(before[1], after[1])


def test_causal_through_gradients():
    """The logits at position t get no gradient from the position embeddings (hence inputs) after t."""
    model = GPT(CFG, V, 1)
    model.init_from_seeds([0])
    idx = torch.randint(0, V, (1, 2, 8))
    t = 3
    model.zero_grad()
    model(idx)[0, :, t].square().sum().backward()
    wpe_grad = model.params["wpe"].grad[0]
    assert wpe_grad[: t + 1].abs().sum() > 0
    assert torch.all(wpe_grad[t + 1 :] == 0)


def test_init_depends_only_on_seed():
    a = GPT(CFG, V, 1)
    a.init_from_seeds([7])
    b = GPT(CFG, V, 3)
    b.init_from_seeds([5, 7, 9])
    torch.testing.assert_close(a.flat[0], b.flat[1], rtol=0, atol=0)
    assert not torch.equal(b.flat[0], b.flat[1])


def test_untied_head_is_its_own_weight_and_embeddings_take_their_init_std():
    """tie_embeddings=False: the logits are the final features times lm_head (C, V), and the token embedding
    no longer appears in them; embedding_init_std sets the embeddings' init (the Grokfast paper's model)."""
    import dataclasses

    cfg = dataclasses.replace(CFG, tie_embeddings=False, embedding_init_std=1.0)
    names = [s.name for s in param_layout(cfg, V)]
    assert "lm_head" in names and "lm_head" not in [s.name for s in param_layout(CFG, V)]
    m = GPT(cfg, V, 1)
    m.init_from_seeds([3])
    assert 0.8 < float(m.params["wte"].std()) < 1.2 and float(m.params["lm_head"].std()) < 0.05
    idx = torch.randint(0, V, (1, 4, 8))
    before = m(idx).detach().clone()
    with torch.no_grad():
        m.params["lm_head"].mul_(2.0)
    torch.testing.assert_close(m(idx).detach(), 2 * before)  # the head alone scales the logits
    logits = m(idx)
    logits.sum().backward()
    head_rows = [s for s in m.specs if s.name == "lm_head"][0]
    assert m.grad[0, head_rows.offset:head_rows.offset + head_rows.numel].abs().sum() > 0


def test_torch_init_matches_torch_nn_defaults():
    """init='torch' draws each tensor as torch.nn would (the Grokfast paper's code): every linear weight and
    bias has the spread of the torch module's own init (nn.MultiheadAttention for the attention, nn.Linear for
    the MLP and head), attention biases start at 0; 'nanogpt' keeps N(0, 0.02) and zero biases."""
    import math

    import torch.nn as nn

    C, H, V_big = 128, 4, 99
    cfg = dataclasses.replace(CFG, n_embd=C, n_head=H, n_layer=2, tie_embeddings=False, init="torch")
    m = GPT(cfg, V_big, 1)
    m.init_from_seeds([11])
    torch.manual_seed(0)
    mha, fc, proj, head = nn.MultiheadAttention(C, H), nn.Linear(C, 4 * C), nn.Linear(4 * C, C), nn.Linear(C, V_big)
    theirs = {"attn.c_attn.weight": mha.in_proj_weight, "attn.c_attn.bias": mha.in_proj_bias,
              "attn.c_proj.weight": mha.out_proj.weight, "attn.c_proj.bias": mha.out_proj.bias,
              "mlp.c_fc.weight": fc.weight, "mlp.c_fc.bias": fc.bias, "mlp.c_proj.weight": proj.weight,
              "mlp.c_proj.bias": proj.bias, "lm_head": head.weight}
    for i in range(2):
        for name, t in theirs.items():
            key = name if name == "lm_head" else f"h.{i}.{name}"
            ours, ref = m.params[key][0].detach(), t.detach()
            assert ours.shape.numel() == ref.shape.numel(), key
            if float(ref.abs().max()) == 0:
                assert float(ours.abs().max()) == 0, key
                continue
            assert float(ours.abs().max()) <= float(ref.abs().max()) * 1.05, key  # same uniform bound
            assert math.isclose(float(ours.std()), float(ref.std()), rel_tol=0.12), key  # same spread
    g = GPT(dataclasses.replace(cfg, init="nanogpt"), V_big, 1)
    g.init_from_seeds([11])
    assert math.isclose(float(g.params["h.0.mlp.c_fc.weight"].std()), 0.02, rel_tol=0.05)
    assert float(g.params["h.0.mlp.c_fc.bias"].abs().max()) == 0


@pytest.mark.parametrize("select", [False, True])
def test_attention_as_reductions_equals_the_matmul_attention(select):
    """The compiled GPU path's attention (sums over broadcast axes) is the same function as the matmuls and
    masked softmax, values and gradients, for the causal mask and for queries at chosen positions."""
    from groklab.model.gpt import _attention, _attention_as_reductions

    g = torch.Generator().manual_seed(0)
    EB, H, T, D = 6, 2, 7, 8
    q, k, v = (torch.randn(EB, H, T, D, generator=g, requires_grad=True) for _ in range(3))
    if select:  # two query positions a sequence, as the last block of an answer-only loss has
        positions = torch.randint(0, T, (EB, 1, 2, 1), generator=g)
        qq = torch.gather(q, 2, positions.expand(-1, H, -1, D))
    else:
        positions, qq = torch.arange(T).view(1, 1, T, 1), q
    allowed = torch.arange(T) <= positions
    outs = [fn(qq, k, v, allowed, 0.0) for fn in (_attention, _attention_as_reductions)]
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-5, atol=1e-6)
    grads = [torch.autograd.grad(o.square().sum(), (q, k, v), retain_graph=True) for o in outs]
    for a, b in zip(*grads):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(outs[0], _attention(qq, k, v, torch.ones_like(allowed), 0.0))  # the mask matters


@pytest.mark.parametrize("autocast", [False, True])
def test_the_compiled_paths_product_then_bias_is_baddbmm(autocast):
    """The compiled GPU path's linear layer (a plain product, then each run's own bias added) is baddbmm:
    values and the gradients of input, weight and bias, to bf16's precision under autocast, where its sum with
    the bias stays float32."""
    from groklab.model.gpt import _product_then_bias

    g = torch.Generator().manual_seed(0)
    E, rows, C_in, C_out = 3, 10, 8, 6
    x = torch.randn(E, rows, C_in, generator=g, requires_grad=True)
    w = torch.randn(E, C_in, C_out, generator=g, requires_grad=True)
    b = torch.randn(E, C_out, generator=g, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        ours, theirs = _product_then_bias(x, w, b), torch.baddbmm(b[:, None, :], x, w)
    assert ours.dtype == torch.float32 and theirs.dtype == (torch.bfloat16 if autocast else torch.float32)
    tol = {"rtol": 2e-2, "atol": 2e-2} if autocast else {"rtol": 1e-5, "atol": 1e-5}
    torch.testing.assert_close(ours, theirs.float(), **tol)
    weights = torch.randn(E, rows, C_out, generator=g)  # a loss that tells every output apart
    grads = [torch.autograd.grad((y.float() * weights).sum(), (x, w, b)) for y in (ours, theirs)]
    for a, c in zip(*grads):
        torch.testing.assert_close(a, c, **tol)
    assert not torch.allclose(ours, (torch.bmm(x, w) + b[:1, None, :]).float(), **tol)  # each run's own bias


@pytest.mark.parametrize("B, T", [(8, 5), (64, 9), (48, 7)])
def test_the_compiled_paths_embedding_gradient_is_the_embeddings_own(B, T):
    """The table gradient as one-hot products over parts of the batch (compiled code) equals the embedding's
    own backward, for a batch too small to split and for batches split into 4 and 2 parts; the same ids
    give the same bits twice (a fixed order)."""
    from groklab.model.gpt import _EmbeddingSummedByProduct, _lookup, _table_parts

    assert [_table_parts(*shape) for shape in [(8, 5), (64, 9), (48, 7), (512, 9)]] == [1, 4, 2, 32]
    g = torch.Generator().manual_seed(0)
    E, V, C = 3, 11, 16
    idx = torch.randint(0, V, (E, B, T), generator=g)
    wte = torch.randn(E, V, C, generator=g, requires_grad=True)
    up = torch.randn(E, B, T, C, generator=g)
    want, = torch.autograd.grad((_lookup(idx, wte) * up).sum(), wte)
    got = [torch.autograd.grad((_EmbeddingSummedByProduct.apply(idx, wte) * up).sum(), wte)[0] for _ in range(2)]
    torch.testing.assert_close(got[0], want, rtol=1e-5, atol=1e-5)
    assert torch.equal(got[0], got[1])

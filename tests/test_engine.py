import pytest
import torch

from groklab.config import ConfigError, ModelConfig, OptimConfig
from groklab.engine.compile_cache import compiles
from groklab.engine.step import Engine
from groklab.engine.hyper import Hyper
from groklab.engine.batch import batch_indices
from groklab.engine.evaluate import evaluate, member_losses
from groklab.data.examples import Examples, stack
from groklab.model.gpt import GPT
from groklab.model.reference import ReferenceGPT, make_optimizer, reference_step
from tests.helpers import without_key_bias

CFG = ModelConfig(n_layer=1, n_head=2, n_embd=16, block_size=6)
V = 9
CPU = torch.device("cpu")


def _data(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, V, (n, 6), generator=g)
    y = torch.randint(0, V, (n, 6), generator=g)
    y[:, :3] = -1  # loss only on the last three positions, like an answer after '='
    return x, y


def _engine(optims, seeds, batch_sizes, datasets, optimizer="auto"):
    model = GPT(CFG, V, len(seeds))
    model.init_from_seeds(seeds)
    train = stack([Examples(x, y) for x, y in datasets])
    return Engine(model, Hyper.build(optims, seeds, batch_sizes, CPU), train, optimizer=optimizer)


@pytest.mark.parametrize("mode,path,decay_on", [("decoupled", "auto", "weights"), ("l2", "fused", "weights"),
                                                ("l2", "tensor", "weights"), ("decoupled", "fused", "all"),
                                                ("decoupled", "tensor", "all"), ("l2", "tensor", "all")])
def test_step_matches_eager_adamw_reference(mode, path, decay_on):
    """Our flat-buffer AdamW with clipping equals torch.optim.AdamW (nanoGPT grouping) step for step; with
    L2 decay, torch.optim.Adam(weight_decay=...), on both optimizer paths; with decay_on 'all', torch.optim
    given every parameter in one group (biases and LayerNorm decay too)."""
    opt_cfg = OptimConfig(learning_rate=3e-3, weight_decay=0.5, beta1=0.9, beta2=0.98, grad_clip=0.05,
                          weight_decay_mode=mode, decay_on=decay_on)
    x, y = _data()
    eng = _engine([opt_cfg], [5], [8], [(x, y)], optimizer=path)
    ref = ReferenceGPT(CFG, V)
    ref.load_group_weights(eng.model.member_state(0))
    opt = make_optimizer(ref, opt_cfg, fused=False)
    for _ in range(5):
        bx, pos, ans = eng.batch()
        by = torch.full_like(bx, -1).scatter_(2, pos, ans.clamp(min=0)).masked_fill_(  # back to (B, T) targets
            torch.zeros_like(bx, dtype=torch.bool).scatter_(2, pos, ans < 0) & (bx >= 0), -1)
        loss = eng.step()
        ref_loss = reference_step(ref, opt, bx[0], by[0], grad_clip=opt_cfg.grad_clip)
        torch.testing.assert_close(loss[0], ref_loss, rtol=1e-5, atol=1e-6)
    ours = without_key_bias(eng.model.member_state(0))  # see there: a direction with no gradient
    theirs = without_key_bias({ref._their_name(name): p.detach().T if p.dim() == 2 and name.startswith("h.")
                               else p.detach() for name, p in ref.named_parameters()})
    assert ours.keys() == theirs.keys()
    for name in ours:
        torch.testing.assert_close(ours[name], theirs[name], rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("path", ["fused", "tensor"])
def test_cosine_decay_follows_nanogpt_schedule(path):
    """With lr_decay_steps, each update uses nanoGPT's cosine rate (after our linear warm-up), written out
    here independently and handed to torch.optim.AdamW step by step; past the decay the rate stays at min_lr."""
    import math

    lr, min_lr, warmup, decay = 3e-3, 4e-4, 2, 6
    opt_cfg = OptimConfig(learning_rate=lr, weight_decay=0.5, beta2=0.98, grad_clip=0.0, warmup_steps=warmup,
                          lr_decay_steps=decay, min_lr=min_lr)

    def expected(t: int) -> float:
        ratio = min(max((t - warmup) / (decay - warmup), 0.0), 1.0)
        return min(t / warmup, 1.0) * (min_lr + 0.5 * (1 + math.cos(math.pi * ratio)) * (lr - min_lr))

    x, y = _data()
    eng = _engine([opt_cfg], [5], [8], [(x, y)], optimizer=path)
    ref = ReferenceGPT(CFG, V)
    ref.load_group_weights(eng.model.member_state(0))
    opt = make_optimizer(ref, opt_cfg, fused=False)
    rates = []
    for t in range(1, 10):
        bx, pos, ans = eng.batch()
        by = torch.full_like(bx, -1).scatter_(2, pos, ans.clamp(min=0))
        for g in opt.param_groups:
            g["lr"] = expected(t)
        rates.append(expected(t))
        eng.step()
        reference_step(ref, opt, bx[0], by[0], grad_clip=0.0)
    assert rates[1] == lr and rates[-1] == pytest.approx(min_lr) and rates[3] < rates[2]  # warm, decay, floor
    ours = eng.model.member_state(0)
    for name, p in ref.named_parameters():
        theirs = p.detach().T if p.dim() == 2 and name.startswith("h.") else p.detach()
        # nine Adam steps amplify float32 rounding on near-zero biases to ~1e-5: a constant rate, below, is off
        # by far more
        torch.testing.assert_close(ours[ref._their_name(name)], theirs, rtol=1e-4, atol=5e-5, msg=name)
    # and the decay is what made the difference: a constant rate ends elsewhere
    flat = _engine([OptimConfig(learning_rate=lr, weight_decay=0.5, beta2=0.98, grad_clip=0.0,
                                warmup_steps=warmup)], [5], [8], [(x, y)], optimizer=path)
    for _ in range(9):
        flat.step()
    assert float((flat.model.flat - eng.model.flat).abs().max()) > 1e-3


def test_lr_decay_settings_are_checked():
    with pytest.raises(ConfigError, match="lr_decay_steps: must be 0 .* more than warmup_steps"):
        OptimConfig(warmup_steps=100, lr_decay_steps=100)
    with pytest.raises(ConfigError, match="min_lr: must be in"):
        OptimConfig(learning_rate=1e-3, lr_decay_steps=10, min_lr=2e-3)
    assert OptimConfig(learning_rate=1e-3, lr_decay_steps=10).final_lr == pytest.approx(1e-4)


def test_masked_positions_get_no_gradient():
    """Changing the targets at masked positions (or the logits there) changes nothing in the gradient."""
    model = GPT(CFG, V, 1)
    model.init_from_seeds([0])
    x, y = _data(8)
    logits = model(x[None])
    logits.retain_grad()
    total, count = member_losses(logits, y[None])
    (total / count).sum().backward()
    masked = (y[None] < 0)
    assert torch.all(logits.grad[masked] == 0)
    assert logits.grad[~masked].abs().sum() > 0
    assert int(count) == int((~masked).sum())


def test_batches_depend_only_on_seed_and_step():
    seeds = torch.tensor([1, 2, 1])
    counts = torch.tensor([100, 100, 100])
    a = batch_indices(seeds, torch.tensor(7), 16, counts)
    b = batch_indices(seeds, torch.tensor(7), 16, counts)
    c = batch_indices(seeds, torch.tensor(8), 16, counts)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(a[0], a[2]) and not torch.equal(a[0], a[1])
    assert int(a.min()) >= 0 and int(a.max()) < 100
    many = batch_indices(torch.tensor([3]), torch.tensor(0), 20000, torch.tensor([10]))
    freq = torch.bincount(many[0], minlength=10).float() / 20000
    assert torch.all((freq - 0.1).abs() < 0.02)  # close to uniform


def test_run_in_group_equals_run_alone():
    """Different seeds, data, learning rates, weight decays and batch sizes in one group: each run's
    trajectory equals the same run trained alone.

    Not bit for bit: the group pads every run's batch to the largest (16), and a loss summed over padded slots
    rounds differently (~1e-7 relative). Adam divides each update by sqrt(v), which can amplify that rounding
    in weights whose gradient is near zero, hence atol 1e-5 (lr is 1e-3..3e-3). Runs of one batch size are
    bit-identical alone and in any group on the CPU (test_seeds_share_nothing)."""
    optims = [OptimConfig(learning_rate=1e-3, weight_decay=1.0, beta2=0.98),
              OptimConfig(learning_rate=3e-3, weight_decay=0.0, grad_clip=0.0),
              OptimConfig(learning_rate=2e-3, weight_decay=0.1, warmup_steps=3)]
    seeds, sizes = [11, 22, 33], [8, 16, 4]
    datasets = [_data(40, 1), _data(25, 2), _data(33, 3)]
    group = _engine(optims, seeds, sizes, datasets)
    for _ in range(6):
        group.step()
    for e in range(3):
        alone = _engine([optims[e]], [seeds[e]], [sizes[e]], [datasets[e]])
        for _ in range(6):
            alone.step()
        torch.testing.assert_close(group.model.flat[e], alone.model.flat[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("norm_residual", [False, True])
def test_position_selected_logits_equal_full_forward(norm_residual):
    """Computing only the answer positions in the last block gives the same logits there, and the same
    gradients, as the full forward (for either block kind)."""
    model = GPT(ModelConfig(n_layer=2, n_head=2, n_embd=16, block_size=6, norm_residual=norm_residual), V, 2)
    model.init_from_seeds([1, 2])
    x, y = _data(12)
    y[3, 4] = -1  # an example with fewer answer tokens: a padding slot
    st = stack([Examples(x, y), Examples(x.flip(0), y.flip(0))])
    assert st.positions is not None and st.positions.shape[-1] == 3
    full = model(st.inputs)
    sel = model(st.inputs, st.positions)
    expect = torch.gather(full, 2, st.positions[..., None].expand(-1, -1, -1, V))
    torch.testing.assert_close(sel, expect, rtol=1e-5, atol=1e-6)
    model.zero_grad()
    member_losses(full.new_zeros(0).sum() + sel, st.answers)[0].sum().backward()
    g_sel = model.grad.clone()
    model.zero_grad()
    ans_full = torch.full_like(st.inputs, -1).scatter_(2, st.positions, st.answers)
    member_losses(model(st.inputs), ans_full)[0].sum().backward()
    torch.testing.assert_close(g_sel, model.grad, rtol=1e-4, atol=1e-6)


def test_evaluate_counts_only_real_rows_and_whole_answers():
    model = GPT(CFG, V, 2)
    model.init_from_seeds([0, 1])
    x, y = _data(10)
    with torch.no_grad():
        pred = model(torch.stack([x, x])).argmax(-1)
    right = [torch.where(y >= 0, pred[e], -1) for e in range(2)]  # targets = each run's own argmax
    wrong = right[0].clone()
    wrong[0, 5] = (wrong[0, 5] + 1) % V  # one wrong answer token in run 0, example 0
    st = stack([Examples(x, wrong), Examples(x[:4], right[1][:4])])
    loss, acc, token_acc = evaluate(model, st)
    assert abs(float(acc[0]) - 0.9) < 1e-6
    assert float(acc[1]) == 1.0
    assert float(token_acc[0]) == pytest.approx(29 / 30) and float(token_acc[1]) == 1.0  # 1 of 10 x 3 tokens wrong
    assert torch.all(loss > 0)


def test_fused_and_tensor_adamw_paths_agree():
    """The per-run fused torch AdamW and the whole-buffer tensor AdamW give the same trajectory."""
    optims = [OptimConfig(learning_rate=2e-3, weight_decay=1.0, beta2=0.98, grad_clip=0.5, warmup_steps=2),
              OptimConfig(learning_rate=1e-3, weight_decay=0.0, beta1=0.8, lr_decay_steps=4, min_lr=2e-4),
              OptimConfig(learning_rate=3e-3, weight_decay=0.3, weight_decay_mode="l2", warmup_steps=3)]
    datasets = [_data(30, 4), _data(30, 5), _data(30, 6)]
    runs = {}
    for path in ("fused", "tensor"):
        eng = _engine(optims, [1, 2, 3], [8, 8, 8], datasets, optimizer=path)
        for _ in range(5):
            eng.step()
        runs[path] = eng
    for e in range(3):
        a, b = (without_key_bias(runs[p].model.member_state(e)) for p in ("fused", "tensor"))
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)
        a, b = runs["fused"].member_state(e), runs["tensor"].member_state(e)
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-7)  # float32 moments, different op order


def test_the_step_is_compiled_by_default_on_a_cuda_device_only():
    cpu, cuda = torch.device("cpu"), torch.device("cuda:0")
    assert (compiles(None, cuda), compiles(None, cpu)) == (True, False)  # the default, unset
    assert (compiles(False, cuda), compiles(True, cpu)) == (False, True)  # what was asked, where it was asked


def test_compiled_step_matches_eager_on_cpu():
    """The opt-in torch.compile path computes the same update (here through inductor's CPU backend)."""
    datasets = [_data(30, 6), _data(30, 7)]
    optims = [OptimConfig(learning_rate=2e-3, weight_decay=1.0, grad_clip=0.5), OptimConfig(learning_rate=1e-3)]
    plain = _engine(optims, [1, 2], [8, 8], datasets, optimizer="tensor")
    model = GPT(CFG, V, 2)
    model.init_from_seeds([1, 2])
    compiled = Engine(model, plain.hyper, plain.train, optimizer="tensor", compile=True)
    for _ in range(3):
        plain.step()
        compiled.step()
    torch.testing.assert_close(plain.model.flat, compiled.model.flat, rtol=1e-5, atol=5e-6)  # fused rounding


def test_the_compiled_step_is_one_graph_without_breaks():
    """torch.compile traces the whole loss (forward and backward, the embedding's split table gradient
    included) and the batch without a graph break: a break leaves pieces of the step uncompiled between
    kernels, slower and different from what the GPU tests check. (A max() with a default in the embedding's
    backward broke it three times a step.)"""
    from torch._dynamo.utils import counters

    counters.clear()
    datasets = [_data(300, 6), _data(300, 7)]
    model = GPT(CFG, V, 2)
    model.init_from_seeds([1, 2])
    train = stack([Examples(x, y) for x, y in datasets])
    engine = Engine(model, Hyper.build([OptimConfig()] * 2, [1, 2], [64, 64], CPU), train, optimizer="tensor",
                    compile=True)  # 64 x 6 tokens: the table gradient in parts (test_model checks the parts)
    assert engine.compiled and not engine.compile_failed
    engine.step()
    assert not counters["graph_break"], dict(counters["graph_break"])


@pytest.mark.parametrize("optimizer", ["fused", "tensor"])
def test_building_a_compiled_engine_leaves_no_trace_of_its_trial_step(optimizer):
    """A compiled engine compiles in one rolled-back step when it is built: its weights, Adam moments and step
    counts are those of an engine that never stepped, on both optimizer paths. (The fused path kept the trial's
    moments, and so trained every `--compile` run on a CPU one Adam step ahead.)"""
    datasets = [_data(30, 6), _data(30, 7)]
    optims = [OptimConfig(learning_rate=2e-3, weight_decay=1.0, grad_clip=0.5), OptimConfig(learning_rate=1e-3)]
    plain = _engine(optims, [1, 2], [8, 8], datasets, optimizer=optimizer)
    model = GPT(CFG, V, 2)
    model.init_from_seeds([1, 2])
    compiled = Engine(model, plain.hyper, plain.train, optimizer=optimizer, compile=True)
    assert compiled.compiled and not compiled.compile_failed
    assert torch.equal(compiled.model.flat, plain.model.flat)
    assert compiled.steps_taken == 0 and int(compiled.step_count) == 0
    for e in range(2):
        fresh, built = plain.member_state(e), compiled.member_state(e)
        assert fresh.keys() == built.keys() and all(torch.equal(built[k], fresh[k]) for k in fresh)
        assert all(not v.any() for v in built.values())  # zero moments: no step was kept

import torch

from groklab.config import ModelConfig, OptimConfig
from groklab.engine import Engine, Hyper, batch_indices, evaluate, member_losses
from groklab.model import GPT
from groklab.reference import ReferenceGPT, make_optimizer, reference_step

CFG = ModelConfig(n_layer=1, n_head=2, n_embd=16, block_size=6)
V = 9
CPU = torch.device("cpu")


def _data(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, V, (n, 6), generator=g)
    y = torch.randint(0, V, (n, 6), generator=g)
    y[:, :3] = -1  # loss only on the last three positions, like an answer after '='
    return x, y


def _engine(optims, seeds, batch_sizes, datasets):
    E = len(seeds)
    model = GPT(CFG, V, E)
    model.init_from_seeds(seeds)
    n_max = max(len(d[0]) for d in datasets)
    X = torch.zeros(E, n_max, 6, dtype=torch.long)
    Y = torch.full((E, n_max, 6), -1)
    for e, (x, y) in enumerate(datasets):
        X[e, : len(x)], Y[e, : len(y)] = x, y
    counts = torch.tensor([len(d[0]) for d in datasets])
    return Engine(model, Hyper.build(optims, seeds, batch_sizes, CPU), X, Y, counts)


def test_step_matches_eager_adamw_reference():
    """Our flat-buffer AdamW with clipping equals torch.optim.AdamW (nanoGPT grouping) step for step."""
    opt_cfg = OptimConfig(learning_rate=3e-3, weight_decay=0.5, beta1=0.9, beta2=0.98, grad_clip=0.05)
    x, y = _data()
    eng = _engine([opt_cfg], [5], [8], [(x, y)])
    ref = ReferenceGPT(CFG, V)
    ref.load_group_weights(eng.model.member_state(0))
    opt = make_optimizer(ref, opt_cfg, fused=False)
    for _ in range(5):
        bx, by = eng.batch()
        loss = eng.step()
        ref_loss = reference_step(ref, opt, bx[0], by[0], grad_clip=opt_cfg.grad_clip)
        torch.testing.assert_close(loss[0], ref_loss, rtol=1e-5, atol=1e-6)
    ours = eng.model.member_state(0)
    for name, p in ref.named_parameters():
        theirs = p.detach().T if p.dim() == 2 and name.startswith("h.") else p.detach()
        torch.testing.assert_close(ours[ref._their_name(name)], theirs, rtol=1e-4, atol=1e-6, msg=name)


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
    trajectory equals the same run trained alone (float32 rounding of batched kernels only)."""
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
        torch.testing.assert_close(group.model.flat[e], alone.model.flat[0], rtol=1e-5, atol=1e-6)


def test_evaluate_counts_only_real_rows_and_whole_answers():
    model = GPT(CFG, V, 2)
    model.init_from_seeds([0, 1])
    x, y = _data(10)
    X = torch.stack([x, x])
    with torch.no_grad():
        pred = model(X).argmax(-1)
    Y = torch.where(y[None] >= 0, pred, -1)  # targets = the model's own argmax: all right
    Y[0, 0, 5] = (Y[0, 0, 5] + 1) % V  # one wrong answer token in run 0, example 0
    loss, acc = evaluate(model, X, Y, torch.tensor([10, 4]))
    assert abs(float(acc[0]) - 0.9) < 1e-6
    assert float(acc[1]) == 1.0
    assert torch.all(loss > 0)

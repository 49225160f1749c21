"""A control for issue 6's step counts: the Grokfast paper's algorithmic setting as its public code trains it,
re-written here in plain eager PyTorch from a reading of that code (torch.nn modules, one run at a time),
independent of groklab's engine. Each `--ablate` switch moves one of the code's choices to groklab's, so the
factor between groklab's steps to 95 % and the paper's can be pinned on the choice that causes it.

    python benchmarks/grokfast_reference.py --recipe ema --seeds 1 2 3 4 5 [--ablate replacement] [--device cuda]

The setting as read: x·y mod 97 for x in 0..96 and y in 1..96 (9,312 equations; y = 0 is left out), the
input the four tokens [x, op, y, =] and the answer read at the last position; a random half for training
(split by one fixed seed); a 2-layer decoder, d 128, 4 heads, whose blocks are
    x = LN1(x);  x = x + MHA(x);  x = x + MLP(LN2(x))
with torch.nn's default initialisation (nn.Embedding N(0, 1); nn.Linear uniform ±1/sqrt(fan_in), biases
included; nn.MultiheadAttention's Xavier in-projection), an untied head; Adam or AdamW over *all*
parameters (torch.optim's weight_decay: an L2 term for Adam, decoupled for AdamW), lr 1e-3, betas
0.9/0.98, a linear warm-up whose first step has rate 0 (LambdaLR min(t/10, 1)); batches of 512 drawn as
epochs without replacement (9 full batches and one of 48, ten steps an epoch); validation accuracy on the
whole validation half after each epoch.

Ablations (each one switch toward groklab's choice):
    replacement   batches of 512 drawn with replacement, 10 steps between evaluations
    b0            y ranges over 0..96 too (9,409 equations)
    init          nanoGPT's init: N(0, 0.02) weights, residual projections 0.02/sqrt(2L), zero biases
    decay2d       weight decay only on 2-D weights (matrices and embeddings)
    prenorm       GPT-2 blocks: x = x + MHA(LN1(x)) (the residual stream is not normalised)
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from common import summary

RECIPES = {
    "adam": dict(optimizer="Adam", weight_decay=0.0, filter="none"),
    "adamw": dict(optimizer="AdamW", weight_decay=1.0, filter="none"),
    "ema": dict(optimizer="Adam", weight_decay=0.005, filter="ema", alpha=0.98, lamb=2.0),
    "ma": dict(optimizer="Adam", weight_decay=0.01, filter="ma", window=100, lamb=5.0),
}
ABLATIONS = ("replacement", "b0", "init", "decay2d", "prenorm")


def equations(p: int, b0: bool) -> torch.Tensor:
    x, y = torch.cartesian_prod(torch.arange(p), torch.arange(0 if b0 else 1, p)).T
    op, eq = torch.full_like(x, p), torch.full_like(x, p + 1)
    return torch.stack([x, op, y, eq, x * y % p])  # (5, N): tokens down, equations across


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, prenorm: bool):
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.prenorm = prenorm

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (T, B, C)
        T = x.shape[0]
        causal = torch.full((T, T), float("-inf"), device=x.device).triu(1)
        if self.prenorm:
            h = self.ln_1(x)
            x = x + self.attn(h, h, h, attn_mask=causal, need_weights=False)[0]
        else:
            x = self.ln_1(x)
            x = x + self.attn(x, x, x, attn_mask=causal, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class Decoder(nn.Module):
    def __init__(self, vocab: int, dim: int = 128, layers: int = 2, heads: int = 4, seq: int = 5,
                 prenorm: bool = False):
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, dim), nn.Embedding(seq, dim)
        self.blocks = nn.ModuleList(Block(dim, heads, prenorm) for _ in range(layers))
        self.ln_f = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (T, B) -> logits (T, B, V)
        h = self.tok(x) + self.pos(torch.arange(x.shape[0], device=x.device))[:, None, :]
        for b in self.blocks:
            h = b(h)
        return self.head(self.ln_f(h))


def nanogpt_init(model: Decoder, layers: int) -> None:
    """GPT-2's init in place of torch.nn's defaults (the `init` ablation)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "ln" in name:
                continue
            if p.dim() == 1:
                p.zero_()
            elif name.endswith(("out_proj.weight", "mlp.2.weight")):
                p.normal_(0, 0.02 / math.sqrt(2 * layers))
            else:
                p.normal_(0, 0.02)


def train(recipe: str, seed: int, ablate: set[str], max_steps: int, device: str, data_seed: int = 0,
          p: int = 97, batch: int = 512) -> dict:
    r = RECIPES[recipe]
    data = equations(p, "b0" in ablate)
    split = torch.randperm(data.shape[1], generator=torch.Generator().manual_seed(data_seed))
    n_train = data.shape[1] // 2
    train_data, val_data = data[:, split[:n_train]].to(device), data[:, split[n_train:]].to(device)

    torch.manual_seed(seed)
    model = Decoder(p + 2, prenorm="prenorm" in ablate).to(device)
    if "init" in ablate:
        nanogpt_init(model, 2)
    params = list(model.parameters())
    if "decay2d" in ablate:
        groups = [{"params": [q for q in params if q.dim() >= 2]},
                  {"params": [q for q in params if q.dim() < 2], "weight_decay": 0.0}]
    else:
        groups = [{"params": params}]
    opt = getattr(torch.optim, r["optimizer"])(groups, lr=1e-3, betas=(0.9, 0.98), weight_decay=r["weight_decay"])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: min(t / 10, 1.0))
    ema: list[torch.Tensor] | None = None
    window: list[list[torch.Tensor]] = []  # MA: the raw gradients in the window, and their running sum
    total: list[torch.Tensor] | None = None
    gen = torch.Generator(device=device).manual_seed(seed)

    def batches():
        while True:
            if "replacement" in ablate:
                for _ in range(10):
                    yield train_data[:, torch.randint(n_train, (batch,), device=device, generator=gen)]
            else:
                order = torch.randperm(n_train, device=device, generator=gen)
                yield from torch.split(train_data[:, order], batch, dim=1)
            yield None  # end of an epoch: evaluate

    curve, step = [], 0
    for b in batches():
        if b is None:
            model.eval()
            with torch.no_grad():
                acc = (model(val_data[:-1])[-1].argmax(-1) == val_data[-1]).float().mean().item()
            model.train()
            curve.append((step, acc))
            if step >= max_steps or (len(curve) > 8 and min(a for _, a in curve[-8:]) >= 0.99):
                break
            continue
        loss = F.cross_entropy(model(b[:-1])[-1], b[-1])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grads = [q.grad for q in params]
        if r["filter"] == "ema":  # h_0 = g_0, h_t = a h_{t-1} + (1 - a) g_t;  g <- g + lamb h
            ema = [g.clone() for g in grads] if ema is None else [h * r["alpha"] + g * (1 - r["alpha"])
                                                                    for h, g in zip(ema, grads)]
            for g, h in zip(grads, ema):
                g.add_(h, alpha=r["lamb"])
        elif r["filter"] == "ma":  # once the window is full: g <- g + lamb * mean of the last w raw gradients
            window.append([g.clone() for g in grads])
            total = [g.clone() for g in grads] if total is None else [t + g for t, g in zip(total, grads)]
            if len(window) > r["window"]:
                total = [t - old for t, old in zip(total, window.pop(0))]
            if len(window) == r["window"]:
                for g, t in zip(grads, total):
                    g.add_(t, alpha=r["lamb"] / r["window"])
        opt.step()
        sched.step()
        step += 1

    def first(th: float) -> int | None:
        return next((s for s, a in curve if a >= th), None)

    return {"recipe": recipe, "seed": seed, "ablate": sorted(ablate), "reach_95": first(0.95),
            "reach_99": first(0.99), "steps": step, "final_val": curve[-1][1]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipe", nargs="+", choices=sorted(RECIPES), default=["adamw", "ema", "ma"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3, 4, 5])
    ap.add_argument("--ablate", nargs="*", choices=ABLATIONS, default=[])
    ap.add_argument("--max_steps", type=int, default=5000)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", help="append each run's result to this JSON-lines file")
    args = ap.parse_args()
    torch.set_float32_matmul_precision("highest")
    for recipe in args.recipe:
        results = []
        for seed in args.seeds:
            t0 = time.perf_counter()
            res = train(recipe, seed, set(args.ablate), args.max_steps, args.device)
            res["seconds"] = round(time.perf_counter() - t0, 1)
            results.append(res)
            print(json.dumps(res), flush=True)
            if args.json:
                with open(args.json, "a") as f:
                    f.write(json.dumps(res) + "\n")
        print(f"## {recipe} ablate={args.ablate or '-'}: 95 % {summary([r['reach_95'] for r in results])}; "
              f"99 % {summary([r['reach_99'] for r in results])}", flush=True)


if __name__ == "__main__":
    main()

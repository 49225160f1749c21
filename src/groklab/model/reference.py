"""The plain baseline: a one-run nanoGPT-style GPT (nn.Linear, nn.LayerNorm, tied embedding; or, as the
config says, ReLU, no LayerNorm, no attention biases, a head of its own) and its eager training step (`loss.backward()`, torch.optim.AdamW). Tests check the engine against it; benchmarks time it.

Shape legend: B batch, T time, C channels, V vocabulary.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from groklab.config import ModelConfig, OptimConfig


def _norm(cfg: ModelConfig) -> nn.Module:
    return nn.LayerNorm(cfg.n_embd, bias=cfg.bias) if cfg.layer_norm else nn.Identity()


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        C = cfg.n_embd
        self.n_head = cfg.n_head
        self.norm_residual = cfg.norm_residual
        self.act = F.relu if cfg.activation == "relu" else F.gelu
        attn_bias = cfg.bias and cfg.attention_bias
        self.ln_1 = _norm(cfg)
        self.c_attn = nn.Linear(C, 3 * C, bias=attn_bias)
        self.attn_proj = nn.Linear(C, C, bias=attn_bias)
        self.ln_2 = _norm(cfg)
        self.c_fc = nn.Linear(C, 4 * C, bias=cfg.bias)
        self.mlp_proj = nn.Linear(4 * C, C, bias=cfg.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        normed = self.ln_1(x)
        x = normed if self.norm_residual else x
        q, k, v = self.c_attn(normed).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, C)
        x = x + self.attn_proj(y)
        return x + self.mlp_proj(self.act(self.c_fc(self.ln_2(x))))


class ReferenceGPT(nn.Module):
    def __init__(self, cfg: ModelConfig, vocab_size: int):
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd)
        self.h = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = _norm(cfg)
        self.lm_head = None if cfg.tie_embeddings else nn.Linear(cfg.n_embd, vocab_size, bias=False)
        for name, p in self.named_parameters():
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * cfg.n_layer) if name.endswith("proj.weight") else 0.02
                nn.init.normal_(p, std=std)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        T = idx.shape[1]
        x = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))
        for block in self.h:
            x = block(x)
        head = self.wte.weight if self.lm_head is None else self.lm_head.weight  # (V, C): tied, or its own
        return self.ln_f(x) @ head.T

    # names as the group model stores them: linear weights there are (in, out)
    _RENAME = {"attn_proj": "attn.c_proj", "c_attn": "attn.c_attn", "c_fc": "mlp.c_fc", "mlp_proj": "mlp.c_proj"}

    def _their_name(self, name: str) -> str:
        for ours, theirs in self._RENAME.items():
            name = name.replace(f".{ours}.", f".{theirs}.")
        return name.removesuffix(".weight") if name in ("wte.weight", "wpe.weight", "lm_head.weight") else name

    @staticmethod
    def _transposed(name: str, p: torch.Tensor) -> bool:
        """Linear weights are (out, in) here and (in, out) in the group model."""
        return p.dim() == 2 and (name.startswith("h.") or name.startswith("lm_head."))

    @torch.no_grad()
    def load_group_weights(self, state: dict[str, torch.Tensor]) -> None:
        """Copy one run's weights from GPT.member_state(e)."""
        for name, p in self.named_parameters():
            t = state[self._their_name(name)]
            p.copy_(t.T if self._transposed(name, p) else t)

    def group_grads(self) -> dict[str, torch.Tensor]:
        """This model's gradients, named and laid out as the group model's parameters."""
        out = {}
        for name, p in self.named_parameters():
            g = p.grad
            out[self._their_name(name)] = g.T if self._transposed(name, p) else g
        return out


def make_optimizer(model: nn.Module, cfg: OptimConfig, fused: bool | None = None) -> torch.optim.Optimizer:
    """nanoGPT's grouping: weight decay on 2-D parameters, none on biases and LayerNorm (decay_on 'all': on
    every parameter). AdamW, or Adam with the decay as L2 in the gradient for weight_decay_mode 'l2'."""
    everything = cfg.decay_on == "all"
    decay = [p for p in model.parameters() if everything or p.dim() >= 2]
    no_decay = [p for p in model.parameters() if not everything and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    kind = torch.optim.Adam if cfg.weight_decay_mode == "l2" else torch.optim.AdamW
    return kind(groups, lr=cfg.learning_rate, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, fused=fused)


def reference_step(model: ReferenceGPT, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                   grad_clip: float = 0.0) -> torch.Tensor:
    """One eager nanoGPT-style step on a batch (B, T) with targets -1 where no loss is taken."""
    logits = model(x)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), ignore_index=-1)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    opt.step()
    return loss.detach()

"""Progress measures for every operation (Nanda et al. 2023, "Progress measures for grokking via mechanistic
interpretability", generalised beyond addition), computed in chunks so memory stays bounded for any p.

Where the Fourier measures live, by operation:
- `+` and `-`: the additive group Z_p. A model that groks uses a few key frequencies k (w_k = 2πk/p): its
  logits are close to Σ_k α_k cos(w_k (a ± b − c)).
- `*` and `/` (p prime): the multiplicative group Z_p* is cyclic of order p − 1, so with a generator g every
  nonzero number is g^i and a·b = c ⇔ log a + log b ≡ log c (mod p − 1). The same measures apply on the
  discrete logarithms: the embedding's spectrum with the numbers 1..p−1 in the order g^0, g^1, ..., and the
  directions cos/sin(w_k (log a ± log b)), w_k = 2πk/(p − 1). The number 0 has no logarithm: it is left out
  of the spectrum, and pairs with a zero operand (whose answer is always 0) are left out of the losses.
- other operations (`#`, `@`, `&`, `$`, `!`, and the permutation tasks `o % :`, whose group S_n is not even
  abelian): no Fourier measure is defined; only the weight norm applies.

Restricted and excluded loss (on the train split), as in the paper's code: over the whole grid of inputs
(a, b), each output's logits are projected onto the directions cos(w_k s) and sin(w_k s), s = a ± b (or
log a ± log b), for the key frequencies. Restricted: the logits kept to that projection plus each output's
mean over the grid; excluded: the logits minus it. A memorising lookup table has little of that smooth
structure (restricted loss stays high), the generalising circuit is made of it (excluded loss rises).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F

from groklab.data.ops import OPERATIONS, is_prime, smallest_factor

MAX_ELEMENTS = 1 << 22  # the largest tensor a chunk may make: (pairs in a chunk) x (p or 2K), ~32 MB in float64
MAX_CHUNK = 4096  # pairs a chunk at most (the model's activations grow with it too)
# operation symbol -> (basis, sign of b): s = a + sign * b, or log a + sign * log b
FOURIER_OPS = {"+": ("additive", 1), "-": ("additive", -1), "*": ("discrete_log", 1), "/": ("discrete_log", -1)}


@dataclass(frozen=True)
class Basis:
    """A cyclic group Z_m that the numbers 0..p-1 map into: `index[x]` is x's place in it (-1: none)."""

    name: str  # "additive" or "discrete_log"
    p: int
    order: int  # m
    index: tuple[int, ...]  # (p,)
    generator: int | None = None

    @property
    def elements(self) -> list[int]:
        """The numbers in the group's order: elements[i] has index i."""
        out = [0] * self.order
        for x, i in enumerate(self.index):
            if i >= 0:
                out[i] = x
        return out

    def describe(self) -> str:
        if self.name == "additive":
            return f"Z_{self.p} (w = 2πk/{self.p})"
        return f"discrete logarithms base {self.generator} on Z_{self.p}* (w = 2πk/{self.order}; 0 left out)"


def primitive_root(p: int) -> int:
    """The smallest generator of Z_p* for a prime p."""
    factors, n = set(), p - 1
    while n > 1:
        f = smallest_factor(n)
        factors.add(f)
        n //= f
    return next(g for g in range(1, p) if all(pow(g, (p - 1) // f, p) != 1 for f in factors))


def make_basis(name: str, p: int) -> Basis | None:
    """The basis an operation's measures live in; None where it does not exist (discrete logs need p prime)."""
    if name == "additive":
        return Basis(name, p, p, tuple(range(p)))
    if not is_prime(p) or p < 3:
        return None
    g = primitive_root(p)
    index = [-1] * p
    x = 1
    for i in range(p - 1):
        index[x] = i
        x = x * g % p
    return Basis(name, p, p - 1, tuple(index), g)


def measures_for(symbol: str, p: int) -> tuple[Basis | None, str]:
    """(basis or None, a line saying which measures apply to this operation and why)."""
    op = OPERATIONS[symbol]
    if symbol not in FOURIER_OPS:
        why = ("S_n is not abelian; its representation-theoretic measures (Chughtai et al. 2023) are not "
               "implemented" if op.domain == "perm" else "no Fourier solution is known for it")
        return None, f"{op.label()}: weight norm only ({why})"
    basis = make_basis(FOURIER_OPS[symbol][0], p)
    if basis is None:
        return None, f"{op.label()}: weight norm only (discrete logarithms need a prime p; {p} is not prime)"
    sign = "+" if FOURIER_OPS[symbol][1] > 0 else "−"
    s = f"a {sign} b" if basis.name == "additive" else f"log a {sign} log b"
    return basis, (f"{op.label()}: weight norm; embedding spectrum and key frequencies over {basis.describe()}; "
                   f"restricted/excluded loss along cos/sin(w_k ({s}))")


def fourier_norms(emb: torch.Tensor) -> torch.Tensor:
    """Embeddings (m, d) of the group's elements in order -> the norm of each frequency k = 0..m//2 of the
    discrete Fourier transform along the element axis (cosine and sine parts together)."""
    return torch.fft.rfft(emb.double(), dim=0).abs().pow(2).sum(1).sqrt().float()


def spectrum(number_embeddings: torch.Tensor, basis: Basis) -> torch.Tensor:
    """The Fourier norms of the number embeddings (p, d), the numbers taken in the basis' order."""
    return fourier_norms(number_embeddings[torch.tensor(basis.elements)])


def key_frequencies(norms: torch.Tensor, max_keys: int = 8) -> list[int]:
    """The frequencies (k >= 1) that stand out, strongest first: at least a quarter of the strongest one's
    norm and three times the median (the noise floor of the unused frequencies); at most `max_keys`."""
    rest = norms[1:]
    cut = max(0.25 * float(rest.max()), 3 * float(rest.median()))
    order = torch.argsort(rest, descending=True)
    keys = [int(i) + 1 for i in order if rest[i] >= cut][:max_keys]
    return keys or [int(order[0]) + 1]


def key_share(norms: torch.Tensor, keys: Sequence[int]) -> float:
    """The share of the embedding's non-constant power in the key frequencies."""
    return float(norms[list(keys)].pow(2).sum() / norms[1:].pow(2).sum().clamp(min=1e-30))


def directions(pairs: torch.Tensor, basis: Basis, sign: int, keys: Sequence[int]) -> torch.Tensor:
    """(n, 2K) float64: cos and sin of w_k s for each pair (s = index a + sign · index b), each a unit vector
    over the basis' grid of m x m pairs; 0 for a pair outside it (a zero operand under the discrete log).
    The sine of k = m/2 is 0 everywhere (m even) and stays 0 rather than being divided by a zero norm."""
    index = torch.tensor(basis.index)
    ia, ib = index[pairs[:, 0]], index[pairs[:, 1]]
    inside = (ia >= 0) & (ib >= 0)
    m = basis.order
    w = torch.tensor([2 * math.pi * k / m for k in keys], dtype=torch.float64)
    phase = (ia + sign * ib).double()[:, None] * w[None, :]  # (n, K)
    # sum over the grid of cos^2(w s) is m^2 / 2, unless 2k ≡ 0 (mod m): then m^2 (and sin is 0)
    half = torch.tensor([(2 * k) % m == 0 for k in keys])
    full = torch.full((len(keys),), m / math.sqrt(2), dtype=torch.float64)
    cos_norm = torch.where(half, float(m), full)
    sin_norm = torch.where(half, math.inf, full)
    d = torch.cat([torch.cos(phase) / cos_norm, torch.sin(phase) / sin_norm], dim=1)
    return torch.where(inside[:, None], d, 0.0)


def grid_chunks(basis: Basis, chunk: int) -> Iterator[torch.Tensor]:
    """The pairs (a, b) of the basis' grid (every pair; under the discrete log the nonzero ones, on which `*`
    and `/` are both defined), `chunk` pairs at a time: (chunk, 2), never the whole m x m grid at once."""
    numbers = torch.tensor(basis.elements)
    m = basis.order
    for start in range(0, m * m, chunk):
        flat = torch.arange(start, min(start + chunk, m * m))
        yield torch.stack([numbers[flat // m], numbers[flat % m]], dim=1)


def _answers(symbol: str, pairs: torch.Tensor, p: int) -> torch.Tensor:
    """c = a op b (mod p) for the pairs (n, 2) of one of the Fourier operations, vectorised."""
    a, b = pairs[:, 0], pairs[:, 1]
    if symbol == "/":  # a / b = a * b^-1; b is never 0 on the discrete-log grid
        inverse = torch.tensor([pow(x, -1, p) if x else 0 for x in range(p)])
        return a * inverse[b] % p
    return {"+": a + b, "-": a - b, "*": a * b}[symbol] % p


def restricted_excluded_loss(logits_of: Callable[[torch.Tensor], torch.Tensor], symbol: str, p: int,
                             keys: Sequence[int], train_pairs: torch.Tensor,
                             max_elements: int = MAX_ELEMENTS) -> dict[str, float]:
    """Full, restricted and excluded loss on the train pairs of one operation. `logits_of(pairs (n, 2))` gives
    the logits over the numbers c, (n, p); it is called on chunks of the grid (twice: once for the projection,
    once for the losses), so nothing of size p^3 is ever held."""
    basis_name, sign = FOURIER_OPS[symbol]
    basis = make_basis(basis_name, p)
    assert basis is not None
    chunk = max(1, min(MAX_CHUNK, max_elements // max(p, 2 * len(keys))))  # pairs: (chunk, p) logits at most
    coef = torch.zeros(2 * len(keys), p, dtype=torch.float64)
    mean_logits = torch.zeros(p, dtype=torch.float64)
    mean_dirs = torch.zeros(2 * len(keys), dtype=torch.float64)
    n_grid = basis.order**2
    for part in grid_chunks(basis, chunk):  # each output's logits projected onto the directions, over the grid
        x = logits_of(part).double()
        d = directions(part, basis, sign, keys)
        coef += d.T @ x
        mean_logits += x.sum(0) / n_grid
        mean_dirs += d.sum(0) / n_grid
    bias = mean_logits - mean_dirs @ coef  # restricted logits keep each output's mean over the grid
    index = torch.tensor(basis.index)
    sums = {"loss": 0.0, "restricted_loss": 0.0, "excluded_loss": 0.0}
    n = 0
    for part in train_pairs.split(chunk):
        part = part[(index[part[:, 0]] >= 0) & (index[part[:, 1]] >= 0)]  # a zero operand: no logarithm
        x = logits_of(part).double()
        trig = directions(part, basis, sign, keys) @ coef
        target = _answers(symbol, part, p)
        for key, z in (("loss", x), ("restricted_loss", trig + bias), ("excluded_loss", x - trig)):
            sums[key] += float(F.cross_entropy(z, target, reduction="sum"))
        n += len(part)
    return {k: v / max(n, 1) for k, v in sums.items()} | {"pairs": n}

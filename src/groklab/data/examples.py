"""Lines of text -> token tensors with loss targets, for one run or stacked for a group of runs.

Targets are the inputs shifted by one, with -1 wherever no loss is taken (nanoGPT's ignore_index). A
target position j predicts token j + 1 of the line; the loss covers token i of a line when i >= start,
where start is one past the '=' (loss on the answer and the end-of-line token), 1 (every token that can be
predicted) or N for `--mask_first_n N` (the first N tokens are never predicted); with loss_on "answer_only"
the end-of-line token is left out as well.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from groklab.errors import DataError
from groklab.data.tokenizer import Tokenizer

EOL = "\n"  # every equation ends with a newline token: the model must also learn where the answer stops


@dataclass(frozen=True)
class Examples:
    """One split of one run: inputs (N, T) and targets (N, T), int64, targets -1 where there is no loss."""

    inputs: torch.Tensor
    targets: torch.Tensor

    def __len__(self) -> int:
        return self.inputs.shape[0]

    @property
    def seq_len(self) -> int:
        return self.inputs.shape[1]


def _loss_positions(targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """targets (N, T) -> (positions (N, K), answers (N, K)): each example's loss positions in order (K = the
    most any example has) and the targets there, -1 in padding slots, so the model computes logits only
    where they count."""
    scored = targets >= 0
    K = max(int(scored.sum(1).max()) if len(targets) else 1, 1)
    order = torch.argsort((~scored).to(torch.int8), dim=1, stable=True)[:, :K]
    answers = torch.where(scored.gather(1, order), targets.gather(1, order), -1)
    return order, answers


def _loss_start(ids: list[int], eq_id: int | None, loss_on: str, mask_first_n: int | None) -> int:
    if mask_first_n is not None:
        return mask_first_n
    if loss_on == "all" or eq_id is None:
        return 1
    return ids.index(eq_id) + 1


def _pack(rows: list[tuple[list[int], int]], seq_len: int, where: str, skip_last: bool = False) -> Examples:
    """Rows of (token ids, first scored token) -> Examples; `skip_last`: the last token is not scored either."""
    n = len(rows)
    inputs = torch.zeros(n, seq_len, dtype=torch.long)
    targets = torch.full((n, seq_len), -1, dtype=torch.long)
    for r, (ids, start) in enumerate(rows):
        L = len(ids) - 1
        inputs[r, :L] = torch.tensor(ids[:-1])
        tgt = torch.tensor(ids[1:])
        tgt[: max(start - 1, 0)] = -1
        if skip_last:
            tgt[-1] = -1
        targets[r, :L] = tgt
        if bool((targets[r] < 0).all()):
            raise DataError(f"{where}: example {r + 1} has no token left to learn (is --mask_first_n too large?)")
    return Examples(inputs, targets)


def encode_equations(
    lines: Sequence[str],
    tokenizer: Tokenizer,
    *,
    loss_on: str = "answer",
    mask_first_n: int | None = None,
    seq_len: int | None = None,
    where: str = "data",
) -> Examples:
    """Equations (without newline) -> Examples padded to `seq_len` (default: the longest line)."""
    if not lines:
        return Examples(torch.zeros(0, seq_len or 1, dtype=torch.long), torch.full((0, seq_len or 1), -1))
    eq_id = tokenizer.encode("=")[0]
    rows = []
    for line in lines:
        ids = tokenizer.encode(line + EOL)
        if loss_on != "all" and mask_first_n is None and eq_id not in ids:
            raise DataError(f"{where}: line {line!r} has no '=' to take the loss after")
        rows.append((ids, _loss_start(ids, eq_id, loss_on, mask_first_n)))
    longest = max(len(ids) for ids, _ in rows) - 1
    if seq_len is None:
        seq_len = longest
    elif longest > seq_len:
        raise DataError(f"{where}: an equation needs {longest + 1} tokens but block_size is {seq_len}")
    return _pack(rows, seq_len, where, skip_last=loss_on == "answer_only" and mask_first_n is None)


def encode_text(
    text: str, tokenizer: Tokenizer, block_size: int, *, mask_first_n: int | None = None, where: str = "text"
) -> Examples:
    """A text stream -> every window of block_size + 1 tokens (stride 1), loss on all tokens (or after
    the first N of each window). A text shorter than a window is one example."""
    ids = tokenizer.encode(text)
    if len(ids) < 2:
        raise DataError(f"{where}: needs at least two characters to learn from")
    window = min(block_size + 1, len(ids))
    rows = [(ids[i : i + window], mask_first_n if mask_first_n is not None else 1) for i in range(len(ids) - window + 1)]
    return _pack(rows, window - 1, where)


@dataclass(frozen=True)
class Stacked:
    """Splits of E runs on one device-ready footing: rows past a run's own count are padding, never sampled
    and never scored. When every position is scored (K == T), `positions` is None: the full forward."""

    inputs: torch.Tensor  # (E, Nmax, T)
    positions: torch.Tensor | None  # (E, Nmax, K)
    answers: torch.Tensor  # (E, Nmax, K): targets at those positions, -1 = no loss
    counts: torch.Tensor  # (E,)

    def to(self, device: torch.device | str) -> "Stacked":
        pos = None if self.positions is None else self.positions.to(device)
        return Stacked(self.inputs.to(device), pos, self.answers.to(device), self.counts.to(device))


def stack(members: Sequence[Examples], seq_len: int | None = None) -> Stacked:
    """Per-run splits -> one Stacked group, padded to the longest split, sequence and answer."""
    T = seq_len or max(m.seq_len for m in members)
    n_max = max(max(len(m) for m in members), 1)
    E = len(members)
    pos_ans = [_loss_positions(m.targets) for m in members]
    K = max(a.shape[1] for _, a in pos_ans)
    inputs = torch.zeros(E, n_max, T, dtype=torch.long)
    positions = torch.zeros(E, n_max, K, dtype=torch.long)
    answers = torch.full((E, n_max, K), -1, dtype=torch.long)
    for e, (m, (pos, ans)) in enumerate(zip(members, pos_ans)):
        inputs[e, : len(m), : m.seq_len] = m.inputs
        positions[e, : len(m), : pos.shape[1]] = pos
        answers[e, : len(m), : ans.shape[1]] = ans
    counts = torch.tensor([len(m) for m in members], dtype=torch.long)
    full = K == T and all(bool((a >= 0).all()) for _, a in pos_ans)
    if full:  # every position scored: no selection, the answers are the targets in order
        return Stacked(inputs, None, answers, counts)
    return Stacked(inputs, positions, answers, counts)

"""The one device policy: which torch device a command trains, samples or evaluates on."""

from __future__ import annotations

import torch

from groklab.errors import GroklabError


def resolve_device(name: str) -> torch.device:
    """'auto' -> CUDA if this torch sees a GPU, else the CPU; 'cpu'/'cuda' as asked, refused in one line when
    the build cannot provide it."""
    if name == "cuda" and not torch.cuda.is_available():
        raise GroklabError("device: --device cuda was asked for, but this torch build sees no CUDA GPU")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)

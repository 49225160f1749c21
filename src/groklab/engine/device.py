"""The one device policy: which torch device a command trains, samples or evaluates on."""

from __future__ import annotations

import torch

from groklab.errors import GroklabError


def resolve_device(name: str) -> torch.device:
    """'auto' -> CUDA if this torch sees a GPU, else the CPU; any other torch device string ('cpu', 'cuda',
    'cuda:1', 'mps', ...) as asked, refused in one line when this machine or torch build cannot provide it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as exc:
        raise GroklabError(f"device: {name!r} is not a torch device ({str(exc).splitlines()[0]})") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise GroklabError(f"device: --device {name} was asked for, but this torch build sees no CUDA GPU")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise GroklabError(f"device: --device {name} was asked for, but this machine has "
                               f"{torch.cuda.device_count()} CUDA GPU(s) (cuda:0 to cuda:{torch.cuda.device_count() - 1})")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise GroklabError(f"device: --device {name} was asked for, but this torch build sees no Apple GPU (MPS)")
    elif device.type != "cpu":
        try:
            torch.empty(0, device=device)
        except (RuntimeError, AssertionError) as exc:
            raise GroklabError(f"device: --device {name} is not usable here ({str(exc).splitlines()[0][:100]})") from None
    return device

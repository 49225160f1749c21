"""torch.compile's settings for the engine: compiled artefacts kept across runs, and room for every group.

The first compilation of a shape costs 10-40 s; torch keeps what inductor and AOTAutograd produced in an
on-disk cache keyed by the graph, and a later process that compiles the same step finds it there. Its
default folder is /tmp/torchinductor_USER, which many machines empty at boot: groklab points it under the
user's cache folder instead (unless TORCHINDUCTOR_CACHE_DIR is set), so the cost is paid once a machine.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

# each engine group compiles its own static shapes (and precision): dynamo's default of 8 compiled versions
# a function would silently leave the 9th group of a sweep uncompiled
RECOMPILE_LIMIT = 64


def cache_dir() -> Path:
    """Where compiled artefacts are kept: $XDG_CACHE_HOME/groklab/torchinductor (~/.cache by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "groklab" / "torchinductor"


def prepare_compile() -> None:
    """Before the first torch.compile of a process: the persistent cache folder (the user's own choice of
    TORCHINDUCTOR_CACHE_DIR wins) and a recompile limit that fits a sweep's groups."""
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache_dir()))
    import torch._dynamo.config as dynamo_config  # loaded only when compiling

    for name in ("recompile_limit", "cache_size_limit"):  # the name changed across torch versions
        if isinstance(getattr(dynamo_config, name, None), int):
            setattr(dynamo_config, name, max(getattr(dynamo_config, name), RECOMPILE_LIMIT))


def compiles(setting: bool | None, device: torch.device) -> bool:
    """Whether a step on `device` is compiled: as asked, else (None, the default) on a CUDA device only, where
    it halves a step and the cache above makes every start after a machine's first one cheap; a CPU's step gains
    less than its compile costs."""
    return device.type == "cuda" if setting is None else setting

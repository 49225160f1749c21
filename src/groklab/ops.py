"""The README's `groklab.ops.permutation` (and the operations table): they live in `groklab.data.ops`."""

from groklab.data.ops import OPERATIONS, permutation

__all__ = ["OPERATIONS", "permutation"]

"""The README's `groklab.results.load`: the results of a sweep as DataFrames (`groklab.analysis.results`)."""

from groklab.analysis.results import Results, load

__all__ = ["Results", "load"]

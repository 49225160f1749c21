"""groklab: train small GPTs on modular arithmetic until they grok, and look inside."""

__version__ = "0.1.0"

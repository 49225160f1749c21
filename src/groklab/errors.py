"""User-facing errors: the CLI prints these as one line and exits 2, never a traceback."""


class GroklabError(Exception):
    """A problem with the user's input or files, stated so the user can fix it."""


class DataError(GroklabError):
    """A data file or dataset request is invalid (messages name the file and line)."""


class TokenizerError(GroklabError):
    """Text that the vocabulary cannot encode."""


class CheckpointError(GroklabError):
    """A checkpoint or run directory that is missing, truncated or not ours."""

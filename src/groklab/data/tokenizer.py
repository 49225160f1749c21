"""Text <-> token ids: char-level (the seeds, nanoGPT's shakespeare_char) and number-level (Power et al.).

The vocabulary is saved into the run directory as JSON (`save`/`load_tokenizer`), so sampling and evaluation
never rebuild it from data. In equation vocabularies '\\n' is the end-of-equation token: the model learns to
emit it after the answer, which tells generation where to stop.

Errors: encode/decode problems and invalid or unreadable vocabulary files raise TokenizerError.
"""

from __future__ import annotations

import json
import operator
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Sequence

from groklab.files import atomic_write
from groklab.errors import TokenizerError
from groklab.data.ops import Operation, resolve_ops

DIGITS = "0123456789"
_MAX_LISTED = 40  # vocabularies longer than this are abbreviated in error messages
MAX_P = 1_000_000  # one token a number: a hand-edited vocab.json or manifest with p = 10^9 would take minutes


class Tokenizer(ABC):
    """Maps text to ids in [0, vocab_size) and back; `tokens[i]` is the text of id i."""

    kind: ClassVar[str]

    @property
    @abstractmethod
    def tokens(self) -> tuple[str, ...]: ...

    @abstractmethod
    def encode(self, text: str) -> list[int]:
        """Ids for text; TokenizerError names the first character (or number) it cannot encode and its
        0-based position in text."""

    @abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable; includes "kind" so tokenizer_from_dict can rebuild it."""

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    def decode(self, ids: Sequence[int]) -> str:
        tokens = self.tokens
        out = []
        for i in ids:
            try:
                i = operator.index(i)
            except TypeError:
                raise TokenizerError(f"token id must be an integer, got {i!r}") from None
            if not 0 <= i < len(tokens):
                raise TokenizerError(f"token id {i} is outside the vocabulary (size {len(tokens)})")
            out.append(tokens[i])
        return "".join(out)

    def to_json(self) -> str:
        """vocab.json's text, as a run folder holds it."""
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def save(self, path: str | os.PathLike[str]) -> None:
        atomic_write(path, self.to_json())

    def _describe(self) -> str:
        return _list_chars(self.tokens)


def _list_chars(chars: Sequence[str]) -> str:
    shown = ", ".join(repr(c) for c in chars[:_MAX_LISTED])
    return shown + (f", ... ({len(chars)} in all)" if len(chars) > _MAX_LISTED else "")


def _not_in_vocab(ch: str, pos: int, tok: Tokenizer) -> TokenizerError:
    return TokenizerError(f"character {ch!r} at position {pos} is not in the vocabulary ({tok._describe()})")


@dataclass(frozen=True)
class CharTokenizer(Tokenizer):
    """One token per character; ids follow the sorted unique characters (as nanoGPT's char prepare.py)."""

    chars: str  # normalised to the sorted unique characters
    _ids: dict[str, int] = field(init=False, repr=False, compare=False)
    _tokens: tuple[str, ...] = field(init=False, repr=False, compare=False)
    kind: ClassVar[str] = "char"

    def __post_init__(self) -> None:
        if not isinstance(self.chars, str) or not self.chars:
            raise TokenizerError(f"a character vocabulary needs at least one character, got {self.chars!r}")
        chars = "".join(sorted(set(self.chars)))
        object.__setattr__(self, "chars", chars)
        object.__setattr__(self, "_ids", {c: i for i, c in enumerate(chars)})
        object.__setattr__(self, "_tokens", tuple(chars))

    @classmethod
    def for_text(cls, text: str) -> CharTokenizer:
        """The characters of a text (seed 003's sanity run)."""
        return cls(text)

    @classmethod
    def for_equations(cls, ops: str | Sequence[str] | Sequence[Operation]) -> CharTokenizer:
        """Digits 0-9, the operation symbols, '=' and '\\n': fixed by the operations, not by which numbers a
        split happens to contain, so every split of a dataset shares it."""
        return cls(DIGITS + "".join(op.symbol for op in resolve_ops(ops)) + "=\n")

    @property
    def tokens(self) -> tuple[str, ...]:
        return self._tokens

    def encode(self, text: str) -> list[int]:
        ids = self._ids
        try:
            return [ids[c] for c in text]
        except KeyError:
            pos = next(i for i, c in enumerate(text) if c not in ids)
            raise _not_in_vocab(text[pos], pos, self) from None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "chars": self.chars, "vocab_size": self.vocab_size}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CharTokenizer:
        return cls(d["chars"])


@dataclass(frozen=True)
class NumberTokenizer(Tokenizer):
    """One token per number 0..p-1 (ids 0..p-1), then one per symbol ('\\n', op symbols, '=', sorted).

    A maximal run of digits is one number; it must be canonical (no leading zero) and below p, so that
    decode(encode(s)) == s for every text it accepts.
    """

    p: int
    symbols: str  # operation symbols; '=' and '\n' are always added; normalised to sorted unique
    _ids: dict[str, int] = field(init=False, repr=False, compare=False)
    _tokens: tuple[str, ...] = field(init=False, repr=False, compare=False)
    kind: ClassVar[str] = "number"

    def __post_init__(self) -> None:
        if isinstance(self.p, bool) or not isinstance(self.p, int) or self.p < 2:
            raise TokenizerError(f"number tokenizer: p must be an integer of at least 2, got {self.p!r}")
        if self.p > MAX_P:
            raise TokenizerError(f"number tokenizer: p must be at most {MAX_P:,} (one token a number), got {self.p}")
        if not isinstance(self.symbols, str) or any(c in DIGITS for c in self.symbols):
            raise TokenizerError(f"number tokenizer: symbols must be a string without digits, got {self.symbols!r}")
        symbols = "".join(sorted(set(self.symbols) | {"=", "\n"}))
        object.__setattr__(self, "symbols", symbols)
        object.__setattr__(self, "_ids", {c: self.p + i for i, c in enumerate(symbols)})
        # decode is called per sample during evaluation: build the p number strings once
        object.__setattr__(self, "_tokens", tuple(str(n) for n in range(self.p)) + tuple(symbols))

    @property
    def tokens(self) -> tuple[str, ...]:
        return self._tokens

    def _describe(self) -> str:
        return f"numbers 0..{self.p - 1} and {_list_chars(self.symbols)}"

    def encode(self, text: str) -> list[int]:
        out: list[int] = []
        width = len(str(self.p - 1))
        i = 0
        while i < len(text):
            ch = text[i]
            if ch in DIGITS:
                j = i
                while j < len(text) and text[j] in DIGITS:
                    j += 1
                run = text[i:j]
                if len(run) > 1 and run[0] == "0":
                    raise TokenizerError(f"number {run!r} at position {i} has a leading zero")
                # compare lengths first: int() of a very long digit run is slow (and limited in 3.11+)
                if len(run) > width or int(run) >= self.p:
                    shown = run if len(run) <= 12 else run[:12] + "..."
                    raise TokenizerError(f"number {shown} at position {i} is not below p = {self.p}")
                out.append(int(run))
                i = j
            elif ch in self._ids:
                out.append(self._ids[ch])
                i += 1
            else:
                raise _not_in_vocab(ch, i, self)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "p": self.p, "symbols": self.symbols, "vocab_size": self.vocab_size}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NumberTokenizer:
        return cls(d["p"], d["symbols"])


@dataclass(frozen=True)
class HybridTokenizer(Tokenizer):
    """Digits in, one token per answer out: the operands are read one character a token (as 'char'), the
    answer after '=' is one token for the whole number (as 'number'). It tells apart the two things that
    'char' asks of a model at once: parsing multi-digit operands, and producing a multi-digit answer.

    Ids: the digits 0-9, then the symbols ('\n', op symbols, '=', sorted), then the answers 0..p-1. The
    answer token of n decodes to the same text as the digits of n, so decode(encode(s)) == s; which one a
    digit run becomes is fixed by whether it follows '=' on its line.
    """

    p: int
    symbols: str
    _ids: dict[str, int] = field(init=False, repr=False, compare=False)
    _tokens: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _answer: NumberTokenizer = field(init=False, repr=False, compare=False)  # reads the answers' digit runs
    kind: ClassVar[str] = "hybrid"

    def __post_init__(self) -> None:
        number = NumberTokenizer(self.p, self.symbols)  # the same checks on p and the symbols
        object.__setattr__(self, "_answer", number)  # built once: it holds p number strings
        object.__setattr__(self, "symbols", number.symbols)
        chars = DIGITS + number.symbols
        object.__setattr__(self, "_ids", {c: i for i, c in enumerate(chars)})
        object.__setattr__(self, "_tokens", tuple(chars) + number.tokens[: self.p])

    @property
    def tokens(self) -> tuple[str, ...]:
        return self._tokens

    def _describe(self) -> str:
        return f"digits, {_list_chars(self.symbols)} and answers 0..{self.p - 1}"

    def encode(self, text: str) -> list[int]:
        out: list[int] = []
        after_eq = False
        i = 0
        while i < len(text):
            ch = text[i]
            if ch in DIGITS and after_eq:  # the answer: one token for the whole digit run
                j = i
                while j < len(text) and text[j] in DIGITS:
                    j += 1
                try:
                    [n] = self._answer.encode(text[i:j])
                except TokenizerError as e:
                    raise TokenizerError(f"answer at position {i}: {e}") from None
                out.append(len(self._ids) + n)
                i = j
                continue
            if ch not in self._ids:
                raise _not_in_vocab(ch, i, self)
            after_eq = (after_eq or ch == "=") and ch != "\n"
            out.append(self._ids[ch])
            i += 1
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "p": self.p, "symbols": self.symbols, "vocab_size": self.vocab_size}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HybridTokenizer:
        return cls(d["p"], d["symbols"])


# Kinds that tokenizer_from_dict can rebuild, keyed by their "kind" field.
TOKENIZERS: dict[str, type[CharTokenizer] | type[NumberTokenizer] | type[HybridTokenizer]] = {
    CharTokenizer.kind: CharTokenizer,
    NumberTokenizer.kind: NumberTokenizer,
    HybridTokenizer.kind: HybridTokenizer,
}


def tokenizer_from_dict(d: Any) -> Tokenizer:
    """Rebuild a tokenizer from to_dict's output; TokenizerError if it is not one."""
    if not isinstance(d, dict) or not isinstance(d.get("kind"), str) or d["kind"] not in TOKENIZERS:
        kind = d.get("kind") if isinstance(d, dict) else None
        raise TokenizerError(f"not a groklab tokenizer (kind {kind!r}; expected one of {', '.join(TOKENIZERS)})")
    try:
        tok = TOKENIZERS[d["kind"]].from_dict(d)
    except (KeyError, TypeError) as e:
        raise TokenizerError(f"{d['kind']} tokenizer: missing or invalid field {e}") from None
    # a hand-edited file whose vocabulary no longer matches would silently shift every id
    if "vocab_size" in d and d["vocab_size"] != tok.vocab_size:
        raise TokenizerError(f"vocab_size {d['vocab_size']} does not match the vocabulary ({tok.vocab_size})")
    return tok


def load_tokenizer(path: str | os.PathLike[str]) -> Tokenizer:
    """Read a vocabulary written by Tokenizer.save; errors name the path."""
    path = Path(path)
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TokenizerError(f"{path}: no such file") from None
    except (OSError, ValueError, RecursionError) as e:  # bad JSON, bad UTF-8, JSON nested too deeply
        raise TokenizerError(f"{path}: not a readable tokenizer file ({e})") from None
    try:
        return tokenizer_from_dict(d)
    except TokenizerError as e:
        raise TokenizerError(f"{path}: {e}") from None


def make_tokenizer(
    kind: Literal["char", "number", "hybrid"], ops: str | Sequence[str] | Sequence[Operation], p: int
) -> Tokenizer:
    """The tokenizer for equation data over these operations mod p (p is unused by 'char')."""
    if kind == "char":
        return CharTokenizer.for_equations(ops)
    symbols = "".join(op.symbol for op in resolve_ops(ops))
    if kind == "number":
        return NumberTokenizer(p, symbols)
    if kind == "hybrid":
        return HybridTokenizer(p, symbols)
    raise TokenizerError(f"tokenizer kind must be 'char' or 'number', or 'hybrid', got {kind!r}")

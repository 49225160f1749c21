"""The binary operations on Z_p that equations are made of, and the checks on the modulus they need.

Each operation has a one-character symbol that appears in the equation text (`30/74=24`), so the symbol is
also its token. The first four are the seeds' tasks; the rest are from Power et al. 2022 ("Grokking",
table of binary operations).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

from groklab.errors import DataError


@dataclass(frozen=True)
class Operation:
    """One binary operation (a, b) -> c on Z_p."""

    name: str  # short identifier accepted on the command line ("add")
    symbol: str  # one printable character, neither a digit nor '=' ("+")
    formula: str  # human-readable definition ("a+b")
    title: str  # task name in tables ("Addition")
    needs_prime: bool  # uses modular inverses, which exist for every nonzero b only when p is prime
    fn: Callable[[int, int, int], int | None] = field(repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.symbol) != 1 or not self.symbol.isprintable() or self.symbol.isspace():
            raise ValueError(f"operation symbol must be one printable character, got {self.symbol!r}")
        if self.symbol in "0123456789=,":
            raise ValueError(f"operation symbol {self.symbol!r} would be ambiguous in equation text")

    def apply(self, a: int, b: int, p: int) -> int | None:
        """c in [0, p), or None where the operation is undefined for (a, b) (such pairs are left out)."""
        c = self.fn(a, b, p)
        return None if c is None else c % p

    def label(self) -> str:
        """'/ (div)', as listed in error messages."""
        return f"{self.symbol} ({self.name})"


def _inverse(b: int, p: int) -> int | None:
    # pow(b, -1, p) raises ValueError when gcd(b, p) != 1; for prime p that is only b ≡ 0
    try:
        return pow(b, -1, p)
    except ValueError:
        return None


def _div(a: int, b: int, p: int) -> int | None:
    # c = a / b means a ≡ b·c (mod p), the seed report's reformulation
    inv = _inverse(b, p)
    return None if inv is None else a * inv


def _div_if_odd(a: int, b: int, p: int) -> int | None:
    # Power et al.: a/b if b is odd, else a-b. Odd b < p is never 0, so it is invertible for every prime p
    # (p = 2 included: b = 1); the None branch is there only for non-canonical inputs such as b = p.
    return _div(a, b, p) if b % 2 == 1 else a - b


def _op(name: str, symbol: str, formula: str, title: str, fn: Callable[[int, int, int], int | None],
        needs_prime: bool = False) -> Operation:
    return Operation(name=name, symbol=symbol, formula=formula, title=title, needs_prime=needs_prime, fn=fn)


# Keyed by symbol: the symbol is what equation files and tokenizers see.
OPERATIONS: dict[str, Operation] = {
    op.symbol: op
    for op in (
        _op("add", "+", "a+b", "Addition", lambda a, b, p: a + b),
        _op("sub", "-", "a-b", "Subtraction", lambda a, b, p: a - b),
        _op("mul", "*", "a*b", "Multiplication", lambda a, b, p: a * b),
        _op("div", "/", "a/b (a = b*c)", "Division", _div, needs_prime=True),
        _op("squares", "#", "a^2+b^2", "a^2+b^2", lambda a, b, p: a * a + b * b),
        _op("quadratic", "@", "a^2+ab+b^2", "a^2+ab+b^2", lambda a, b, p: a * a + a * b + b * b),
        _op("cubic", "&", "a^3+ab", "a^3+ab", lambda a, b, p: a**3 + a * b),
        _op("cubic2", "$", "a^3+ab^2+b", "a^3+ab^2+b", lambda a, b, p: a**3 + a * b * b + b),
        _op("div_odd", "!", "a/b if b odd else a-b", "a/b if b odd else a-b", _div_if_odd, needs_prime=True),
    )
}
_BY_NAME: dict[str, Operation] = {op.name: op for op in OPERATIONS.values()}


def choices() -> str:
    """'+ (add), - (sub), ...' for error and help messages."""
    return ", ".join(op.label() for op in OPERATIONS.values())


def _lookup(token: str) -> list[Operation]:
    if token in OPERATIONS:
        return [OPERATIONS[token]]
    if token.lower() in _BY_NAME:
        return [_BY_NAME[token.lower()]]
    # "+-" is read as "+,-": symbols are single characters and names are words, so this is unambiguous
    if len(token) > 1 and all(ch in OPERATIONS for ch in token):
        return [OPERATIONS[ch] for ch in token]
    raise DataError(f"unknown operation {token!r}; choose from {choices()}")


def resolve_ops(spec: str | Sequence[str] | Sequence[Operation]) -> list[Operation]:
    """'+', '+,-', 'add,sub', '+-' or a list of names/symbols -> operations, in the order given.

    Unknown, duplicate or missing operations raise DataError.
    """
    if isinstance(spec, str):
        tokens: list[str | Operation] = list(spec.split(","))
    else:
        tokens = list(spec)
    ops: list[Operation] = []
    for token in tokens:
        if isinstance(token, Operation):
            found = [token]
        elif isinstance(token, str):
            token = token.strip()
            if not token:
                continue  # tolerate "+, -" and a trailing comma; an all-empty spec fails below
            found = _lookup(token)
        else:
            raise DataError(f"operation must be a name or symbol, got {token!r}; choose from {choices()}")
        for op in found:
            if op in ops:
                raise DataError(f"operation {op.label()} is given twice")
            ops.append(op)
    if not ops:
        raise DataError(f"no operation given; choose from {choices()}")
    return ops


def smallest_factor(n: int) -> int:
    """The smallest prime factor of n >= 2 (n itself when n is prime)."""
    if n % 2 == 0:
        return 2
    f = 3
    while f * f <= n:
        if n % f == 0:
            return f
        f += 2
    return n


def is_prime(n: int) -> bool:
    """Trial division: moduli here are small (at most a few thousand)."""
    return n >= 2 and smallest_factor(n) == n


def check_modulus(p: int, ops: str | Sequence[str] | Sequence[Operation]) -> None:
    """DataError unless p >= 2 and, for operations that divide, p is prime."""
    if isinstance(p, bool) or not isinstance(p, int):
        raise DataError(f"p must be an integer, got {p!r}")
    if p < 2:
        raise DataError(f"p must be at least 2, got {p}")
    for op in resolve_ops(ops):
        if op.needs_prime and not is_prime(p):
            f = smallest_factor(p)
            what = "division" if op.symbol == "/" else f"operation {op.label()}"
            raise DataError(
                f"{what} needs a prime modulus; {p} is not prime ({p} = {f} × {p // f}), "
                "so some nonzero numbers have no inverse"
            )

"""The binary operations that equations are made of, and the checks on the modulus they need.

Each operation has a one-character symbol that appears in the equation text (`30/74=24`), so the symbol is
also its token. The first four are the seeds' tasks; the rest are from Power et al. 2022 ("Grokking",
table of binary operations), on Z_p and, for the last three, on the symmetric group S_n.

Permutations are numbers too: the n! permutations of 0..n-1 are numbered by the lexicographic rank of their
one-line notation (0 = the identity 01234, 1 = 01243, ..., 119 = 43210 for n = 5), so an S5 equation is a
line such as `17o53=86` with every number below p = n! = 120. That keeps one strict file format, one parser,
round-trip tokenisation and one token per permutation (`--tokenizer number`, as Power et al.) for every task.
Composition applies the right factor first: (x∘y)(i) = x(y(i)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Literal, Sequence

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
    domain: Literal["zp", "perm"] = "zp"  # numbers mod p, or permutations numbered 0..n!-1 (p = n!)

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
        needs_prime: bool = False, domain: Literal["zp", "perm"] = "zp") -> Operation:
    return Operation(name=name, symbol=symbol, formula=formula, title=title, needs_prime=needs_prime, fn=fn,
                     domain=domain)


MAX_PERM_N = 7  # S7: 5,040 elements, 25 million pairs, past what `groklab data` holds anyway


def perm_degree(p: int) -> int | None:
    """n where p = n! (2 <= n <= MAX_PERM_N), else None."""
    return next((n for n in range(2, MAX_PERM_N + 1) if math.factorial(n) == p), None)


def unrank(number: int, n: int) -> tuple[int, ...]:
    """The permutation of 0..n-1 with this lexicographic rank (the factorial number system)."""
    items, out = list(range(n)), []
    for i in range(n - 1, -1, -1):
        digit, number = divmod(number, math.factorial(i))
        out.append(items.pop(digit))
    return tuple(out)


def rank(perm: Sequence[int]) -> int:
    """The lexicographic rank of a permutation of 0..n-1: unrank's inverse."""
    items, number = list(range(len(perm))), 0
    for i, v in enumerate(perm):
        digit = items.index(v)
        number += digit * math.factorial(len(perm) - 1 - i)
        items.pop(digit)
    return number


def permutation(number: int, p: int) -> tuple[int, ...]:
    """The permutation a number stands for in S_n, p = n! (its one-line notation)."""
    n = perm_degree(p)
    if n is None or not 0 <= number < p:
        raise DataError(f"{number} is not a permutation number for p = {p} (p must be n! and the number below it)")
    return unrank(number, n)


def _perm_op(word: Callable[[tuple[int, ...], tuple[int, ...]], list[tuple[int, ...]]]):
    """An operation on permutation numbers from a word in x, y and x⁻¹: the product of the word, rightmost
    factor applied first."""

    def fn(a: int, b: int, p: int) -> int | None:
        n = perm_degree(p)
        if n is None or not (0 <= a < p and 0 <= b < p):
            return None
        result = tuple(range(n))
        for factor in reversed(word(unrank(a, n), unrank(b, n))):
            result = tuple(factor[i] for i in result)  # (factor ∘ result)(i) = factor(result(i))
        return rank(result)

    return fn


def _inverse_perm(x: tuple[int, ...]) -> tuple[int, ...]:
    inv = [0] * len(x)
    for i, xi in enumerate(x):
        inv[xi] = i
    return tuple(inv)


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
        # Power et al.'s S5 tasks, for any S_n with p = n!
        _op("perm", "o", "x∘y", "Permutations x∘y", _perm_op(lambda x, y: [x, y]), domain="perm"),
        _op("perm_conj", "%", "x∘y∘x⁻¹", "Permutations x∘y∘x⁻¹",
            _perm_op(lambda x, y: [x, y, _inverse_perm(x)]), domain="perm"),
        _op("perm_aba", ":", "x∘y∘x", "Permutations x∘y∘x", _perm_op(lambda x, y: [x, y, x]), domain="perm"),
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
        if op.domain == "perm" and perm_degree(p) is None:
            raise DataError(
                f"operation {op.label()} acts on the permutations of n things, numbered 0..n!-1: p must be n! "
                f"({', '.join(str(math.factorial(n)) for n in range(2, MAX_PERM_N + 1))}; 120 for S5), got {p}"
            )
        if op.needs_prime and not is_prime(p):
            f = smallest_factor(p)
            what = "division" if op.symbol == "/" else f"operation {op.label()}"
            raise DataError(
                f"{what} needs a prime modulus; {p} is not prime ({p} = {f} × {p // f}), "
                "so some nonzero numbers have no inverse"
            )

"""Operations on Z_p: their values, their lookup by name or symbol, and the modulus checks."""

from __future__ import annotations

import pytest

from groklab.errors import DataError
from groklab.data.ops import OPERATIONS, check_modulus, is_prime, resolve_ops

# Independent statements of each operation (Power et al. 2022, table of binary operations).
EXPECTED = {
    "+": lambda a, b, p: (a + b) % p,
    "-": lambda a, b, p: (a - b) % p,
    "*": lambda a, b, p: (a * b) % p,
    "#": lambda a, b, p: (a**2 + b**2) % p,
    "@": lambda a, b, p: (a**2 + a * b + b**2) % p,
    "&": lambda a, b, p: (a**3 + a * b) % p,
    "$": lambda a, b, p: (a**3 + a * b**2 + b) % p,
}


def test_registry_is_keyed_by_a_usable_symbol():
    assert {"+", "-", "*", "/", "#", "@", "&", "$", "!"} <= set(OPERATIONS)
    for symbol, op in OPERATIONS.items():
        assert op.symbol == symbol and len(symbol) == 1
        assert symbol.isprintable() and not symbol.isdigit() and symbol not in "=,\n"
    assert len({op.name for op in OPERATIONS.values()}) == len(OPERATIONS)
    assert OPERATIONS["/"].needs_prime and OPERATIONS["!"].needs_prime and not OPERATIONS["+"].needs_prime


@pytest.mark.parametrize("symbol", sorted(EXPECTED))
@pytest.mark.parametrize("p", [2, 7, 12])
def test_polynomial_ops_match_their_formula(symbol, p):
    op = OPERATIONS[symbol]
    for a in range(p):
        for b in range(p):
            assert op.apply(a, b, p) == EXPECTED[symbol](a, b, p)


@pytest.mark.parametrize("p", [2, 3, 5, 97])
def test_division_is_defined_exactly_for_nonzero_b_and_inverts_multiplication(p):
    div = OPERATIONS["/"]
    for a in range(p):
        assert div.apply(a, 0, p) is None
        for b in range(1, p):
            c = div.apply(a, b, p)
            assert c is not None and 0 <= c < p
            assert (b * c) % p == a  # a/b = c  <=>  a = b*c (mod p)


def test_division_example_from_the_seed_report():
    # the seed report prompts "30/74=": 74·24 = 1776 = 18·97 + 30, so the answer is 24
    assert OPERATIONS["/"].apply(30, 74, 97) == 24


@pytest.mark.parametrize("p", [2, 3, 97])
def test_div_if_odd_divides_for_odd_b_and_subtracts_for_even_b(p):
    op = OPERATIONS["!"]
    for a in range(p):
        for b in range(p):
            c = op.apply(a, b, p)
            assert c is not None and 0 <= c < p
            if b % 2:
                assert (b * c) % p == a
            else:
                assert c == (a - b) % p


@pytest.mark.parametrize(
    "spec, symbols",
    [
        ("+", ["+"]),
        ("+,-", ["+", "-"]),
        ("add,sub", ["+", "-"]),
        (" add , / ", ["+", "/"]),
        ("Div", ["/"]),
        ("+-", ["+", "-"]),
        (["*", "div"], ["*", "/"]),
        ("+,", ["+"]),
    ],
)
def test_resolve_ops_accepts_names_symbols_and_lists(spec, symbols):
    assert [op.symbol for op in resolve_ops(spec)] == symbols


def test_resolve_ops_rejects_unknown_and_lists_the_choices():
    with pytest.raises(DataError, match=r"unknown operation 'x'; choose from \+ \(add\), - \(sub\)"):
        resolve_ops("+,x")
    with pytest.raises(DataError, match=r"unknown operation 'modulo'"):
        resolve_ops(["modulo"])


@pytest.mark.parametrize("spec", ["+,add", ["/", "div"], "++"])
def test_resolve_ops_rejects_duplicates(spec):
    with pytest.raises(DataError, match="given twice"):
        resolve_ops(spec)


@pytest.mark.parametrize("spec", ["", " ", ",", []])
def test_resolve_ops_rejects_empty(spec):
    with pytest.raises(DataError, match="no operation given"):
        resolve_ops(spec)


def test_is_prime_agrees_with_brute_force():
    for n in range(-3, 400):
        assert is_prime(n) == (n >= 2 and all(n % d for d in range(2, n)))


def test_check_modulus():
    check_modulus(97, "/")
    check_modulus(96, "+,-,*")  # no inverses needed
    check_modulus(2, "/")
    with pytest.raises(DataError, match="p must be at least 2, got 1"):
        check_modulus(1, "+")
    with pytest.raises(DataError, match=r"division needs a prime modulus; 96 is not prime \(96 = 2 × 48\)"):
        check_modulus(96, "+,/")
    with pytest.raises(DataError, match=r"operation ! \(div_odd\) needs a prime modulus; 9 is not prime \(9 = 3 × 3\)"):
        check_modulus(9, "!")
    for bad in (True, 97.0, "97"):
        with pytest.raises(DataError, match="p must be an integer"):
            check_modulus(bad, "+")  # type: ignore[arg-type]

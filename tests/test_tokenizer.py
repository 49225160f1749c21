"""Char- and number-level tokenizers: ids, round trips, error messages, and saved vocabularies."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from groklab.data.equations import all_equations
from groklab.errors import TokenizerError
from groklab.data.tokenizer import (
    CharTokenizer,
    NumberTokenizer,
    load_tokenizer,
    make_tokenizer,
    tokenizer_from_dict,
)

SYMBOLS = "+-*/#@&$!"


def test_char_tokenizer_for_equations_has_a_fixed_sorted_vocabulary():
    tok = CharTokenizer.for_equations("/")
    assert tok.tokens == tuple("\n/0123456789=") and tok.vocab_size == 13
    ids = tok.encode("30/74=24\n")
    assert ids == [5, 2, 1, 9, 6, 12, 4, 6, 0]  # "\n" = 0, "/" = 1, digits 2..11, "=" = 12
    assert tok.decode(ids) == "30/74=24\n"
    assert CharTokenizer.for_equations("+,-").vocab_size == 14


def test_char_tokenizer_for_text_follows_nanogpt():
    text = "I love machine learning"
    tok = CharTokenizer.for_text(text)
    assert tok.chars == "".join(sorted(set(text)))
    assert tok.decode(tok.encode(text)) == text


def test_unknown_character_is_named_with_position_and_vocabulary():
    tok = CharTokenizer.for_equations("+,-,*,/")
    message = r"character 'x' at position 3 is not in the vocabulary \('\\n', '\*', '\+', '-', '/', '0', .*'='\)"
    with pytest.raises(TokenizerError, match=message):
        tok.encode("123x")
    with pytest.raises(TokenizerError, match=r"'W', \.\.\. \(50 in all\)\)$"):  # long vocabularies are cut short
        CharTokenizer("".join(chr(48 + i) for i in range(50))).encode("!")


def test_number_tokenizer_gives_one_token_per_number():
    tok = NumberTokenizer(97, "/")
    assert tok.vocab_size == 97 + 3
    sym = {c: tok.encode(c)[0] for c in "/=\n"}
    assert sorted(sym.values()) == [97, 98, 99]
    assert tok.encode("30/74=24\n") == [30, sym["/"], 74, sym["="], 24, sym["\n"]]
    assert tok.decode(tok.encode("30/74=")) == "30/74="
    assert tok.encode("0") == [0] and tok.encode("96") == [96]


@pytest.mark.parametrize(
    "text, message",
    [
        ("97+1=1", r"number 97 at position 0 is not below p = 97"),
        ("1+07=8", r"number '07' at position 2 has a leading zero"),
        ("1+" + "9" * 5000, r"number 999999999999\.\.\. at position 2 is not below p = 97"),
        ("1*2", r"character '\*' at position 1 is not in the vocabulary \(numbers 0..96 and '\\n', '\+', '='\)"),
        ("1+٣", r"character '٣' at position 2"),
    ],
)
def test_number_tokenizer_errors(text, message):
    with pytest.raises(TokenizerError, match=message):
        NumberTokenizer(97, "+").encode(text)


def test_decode_rejects_ids_outside_the_vocabulary():
    tok = CharTokenizer.for_equations("+")
    with pytest.raises(TokenizerError, match=r"token id 13 is outside the vocabulary \(size 13\)"):
        tok.decode([0, 13])
    with pytest.raises(TokenizerError, match=r"token id -1"):
        NumberTokenizer(5, "+").decode([-1])
    with pytest.raises(TokenizerError, match=r"must be an integer"):
        tok.decode([1.0])  # type: ignore[list-item]


def test_constructor_validation():
    with pytest.raises(TokenizerError, match="at least one character"):
        CharTokenizer("")
    with pytest.raises(TokenizerError, match="p must be an integer of at least 2"):
        NumberTokenizer(1, "+")
    with pytest.raises(TokenizerError, match="without digits"):
        NumberTokenizer(97, "+1")


@pytest.mark.parametrize("tok", [CharTokenizer.for_equations("+,/"), NumberTokenizer(113, "+-"), CharTokenizer("ab\n")])
def test_save_and_load_round_trip(tmp_path, tok):
    path = tmp_path / "tokenizer.json"
    tok.save(path)
    loaded = load_tokenizer(path)
    assert loaded == tok and type(loaded) is type(tok) and loaded.tokens == tok.tokens
    assert json.loads(path.read_text())["kind"] == tok.kind
    assert tokenizer_from_dict(json.loads(json.dumps(tok.to_dict()))) == tok


def test_bad_vocabulary_files_name_the_path(tmp_path):
    with pytest.raises(TokenizerError, match=r"missing.json: no such file"):
        load_tokenizer(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(TokenizerError, match=r"bad.json: not a readable tokenizer file"):
        load_tokenizer(bad)
    bad.write_text(json.dumps({"kind": "bpe"}))
    with pytest.raises(TokenizerError, match=r"bad.json: not a groklab tokenizer \(kind 'bpe'"):
        load_tokenizer(bad)
    bad.write_text(json.dumps([1, 2]))
    with pytest.raises(TokenizerError, match=r"bad.json: not a groklab tokenizer"):
        load_tokenizer(bad)
    bad.write_text(json.dumps({"kind": "number", "symbols": "+"}))
    with pytest.raises(TokenizerError, match=r"bad.json: number tokenizer: missing or invalid field 'p'"):
        load_tokenizer(bad)
    bad.write_text(json.dumps({"kind": "char", "chars": "abc", "vocab_size": 4}))
    with pytest.raises(TokenizerError, match=r"bad.json: vocab_size 4 does not match"):
        load_tokenizer(bad)


def test_make_tokenizer():
    assert make_tokenizer("char", "/", 97) == CharTokenizer.for_equations("/")
    assert make_tokenizer("number", ["+", "div"], 97) == NumberTokenizer(97, "+/")
    with pytest.raises(TokenizerError, match="'char' or 'number'"):
        make_tokenizer("bpe", "+", 97)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["char", "number"])
def test_every_generated_equation_round_trips(kind):
    ops = "+,-,/,!"
    tok = make_tokenizer(kind, ops, 13)
    for line in all_equations(ops, 13):
        assert tok.decode(tok.encode(line + "\n")) == line + "\n"


# --- properties -------------------------------------------------------------------------------------------


@st.composite
def equations(draw):
    p = draw(st.integers(2, 2000))
    ops = draw(st.text(alphabet=SYMBOLS, min_size=1, max_size=4))
    number = st.integers(0, p - 1)
    line = f"{draw(number)}{draw(st.sampled_from(ops))}{draw(number)}={draw(number)}"
    return p, ops, line + draw(st.sampled_from(["", "\n"]))


@settings(max_examples=300, deadline=None)
@given(equations())
def test_valid_equations_round_trip_with_both_tokenizers(case):
    p, ops, line = case
    for tok in (CharTokenizer.for_equations(",".join(set(ops))), NumberTokenizer(p, ops)):
        ids = tok.encode(line)
        assert all(0 <= i < tok.vocab_size for i in ids)
        assert tok.decode(ids) == line


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("0123456789+/=\nx "), max_size=30) | st.text(max_size=30))
def test_random_text_only_ever_raises_tokenizer_error(text):
    for tok in (CharTokenizer.for_equations("+,/"), NumberTokenizer(97, "+/")):
        try:
            ids = tok.encode(text)
        except TokenizerError:
            continue
        assert tok.decode(ids) == text  # whatever is accepted round-trips exactly

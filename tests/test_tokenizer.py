"""Char- and number-level tokenizers: ids, round trips, error messages, and saved vocabularies; then the same,
fuzzed (random vocabularies, texts, id lists and vocab.json files; each kind of case adds a row to
docs/reliability.md)."""

from __future__ import annotations

import json
import re
import time
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from groklab.data.equations import all_equations
from groklab.errors import TokenizerError
from groklab.data.tokenizer import (
    CharTokenizer,
    NumberTokenizer,
    load_tokenizer,
    MAX_P,
    make_tokenizer,
    tokenizer_from_dict,
)
from helpers import FAST, OP_SYMBOLS, hide, json_values

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


# =========================================================================================================
# fuzzed: random vocabularies, texts, id lists and vocab.json files
# =========================================================================================================


def test_char_vocabularies_round_trip_and_name_the_first_unknown_character(reliability):
    counts: Counter[str] = Counter()
    example: list[str] = []

    @settings(max_examples=200, **FAST)
    @given(st.data(), st.text(min_size=1, max_size=30))
    def check(data, vocab):
        tok = CharTokenizer(vocab)
        inside = data.draw(st.text(alphabet=st.sampled_from(tok.chars), max_size=40))
        ids = tok.encode(inside)
        assert ids == [tok.chars.index(c) for c in inside] and tok.decode(ids) == inside
        counts["drawn"] += 1
        text = data.draw(st.text(max_size=20))
        unknown = [i for i, c in enumerate(text) if c not in tok.chars]
        try:
            ids = tok.encode(text)
        except TokenizerError as exc:
            pos = unknown[0]
            assert str(exc).startswith(f"character {text[pos]!r} at position {pos} is not in the vocabulary")
            counts["refused"] += 1
            example[:] = [str(exc)]
            return
        assert not unknown and tok.decode(ids) == text
        counts["round trip"] += 1

    check()
    assert counts["refused"]
    reliability("tokenizer", f"{counts['drawn']} random character vocabularies (any Unicode), each with a text "
                "drawn from it and a random text", f"decode(encode(s)) == s for all {counts['drawn']} drawn texts and "
                f"{counts['round trip']} random ones; "
                f"{counts['refused']} refused naming the first unknown character and its position, e.g. {example[0]!r}")


def expected_number_ids(tok: NumberTokenizer, text: str) -> list[int] | None:
    """The ids a number tokenizer must give, from a regular expression over the text; None: must refuse."""
    ids = []
    for m in re.finditer(r"[0-9]+|.", text, re.DOTALL):
        token = m.group()
        if token[0] in "0123456789":
            if (len(token) > 1 and token[0] == "0") or int(token) >= tok.p:
                return None
            ids.append(int(token))
        elif token in tok.symbols:
            ids.append(tok.p + tok.symbols.index(token))
        else:
            return None
    return ids


def test_number_tokenizer_agrees_with_a_regex_reference_on_random_text(reliability):
    counts: Counter[str] = Counter()
    example: list[str] = []

    @settings(max_examples=300, **FAST)
    @given(st.integers(2, 3000) | st.sampled_from([10, 100, 1000]), st.text(alphabet=OP_SYMBOLS + "xé ", max_size=4),
           st.data())
    def check(p, symbols, data):
        symbols = "".join(c for c in symbols if c not in "0123456789")
        tok = NumberTokenizer(p, symbols)
        text = data.draw(st.text(alphabet="0123456789" * 3 + OP_SYMBOLS + "=\nx ٣", max_size=25))
        expected = expected_number_ids(tok, text)
        try:
            ids = tok.encode(text)
        except TokenizerError as exc:
            assert expected is None, (p, symbols, text, str(exc))
            counts["refused"] += 1
            example[:] = [str(exc)]
            return
        assert ids == expected and tok.decode(ids) == text
        counts["round trip"] += 1

    check()
    assert counts["round trip"] and counts["refused"]
    reliability("tokenizer", f"{sum(counts.values())} random texts (digits, symbols, '٣', spaces) against number "
                "tokenizers with random p up to 3,000",
                f"{counts['round trip']} gave exactly the ids a regex reference gives and decoded "
                f"back unchanged; {counts['refused']} refused as the reference says, e.g. {example[0]!r}")


def test_saved_vocabularies_of_any_characters_load_back_equal(tmp_path, reliability):
    n = [0]

    @settings(max_examples=100, **FAST)
    @given(st.one_of(
        st.text(min_size=1, max_size=40).map(CharTokenizer),
        st.builds(NumberTokenizer, st.integers(2, 5000), st.text(alphabet=OP_SYMBOLS + "\"\\'\u2028é", max_size=5)),
    ))
    def check(tok):
        path = tmp_path / "vocab.json"
        tok.save(path)
        loaded = load_tokenizer(path)
        assert loaded == tok and type(loaded) is type(tok) and loaded.tokens == tok.tokens
        n[0] += 1

    check()
    reliability("tokenizer", f"{n[0]} random vocabularies (quotes, backslashes, U+2028, any Unicode) saved to "
                "vocab.json",
                f"all {n[0]} loaded back equal, same ids for every token")


def test_fuzzed_vocabulary_files_load_or_raise_tokenizer_error(tmp_path, reliability):
    counts: Counter[str] = Counter()
    example: list[str] = []
    slowest = [0.0]
    near_valid = st.fixed_dictionaries(
        {"kind": st.sampled_from(["char", "number", "bpe", 1, None, [], {}])},
        optional={"chars": json_values | st.text(max_size=5), "symbols": json_values | st.text(max_size=3),
                  "p": st.integers(-3, 300) | st.sampled_from([MAX_P + 1, 10**12, 10**100]) | json_values,
                  "vocab_size": json_values | st.integers(0, 400)},
    )

    valid = st.one_of(st.text(min_size=1, max_size=20).map(CharTokenizer),
                      st.builds(NumberTokenizer, st.integers(2, 500), st.text(alphabet=OP_SYMBOLS, max_size=3)))
    mutated = st.builds(lambda tok, key, value: {**tok.to_dict(), key: value}, valid,
                        st.sampled_from(["kind", "chars", "p", "symbols", "vocab_size", "extra"]), json_values)

    @settings(max_examples=200, **FAST)
    @given(valid.map(lambda tok: tok.to_dict()) | mutated | near_valid | json_values | st.binary(max_size=30))
    def check(content):
        path = tmp_path / "vocab.json"
        path.write_bytes(content if isinstance(content, bytes) else json.dumps(content).encode())
        t0 = time.perf_counter()
        try:
            tok = load_tokenizer(path)
        except TokenizerError as exc:
            assert str(exc).startswith(f"{path}: ")
            counts["refused"] += 1
            example[:] = [hide(str(exc), tmp_path)]
            return
        finally:
            slowest[0] = max(slowest[0], time.perf_counter() - t0)
        assert tokenizer_from_dict(tok.to_dict()) == tok
        counts["loaded"] += 1

    check()
    (tmp_path / "vocab.json").write_text('{"kind": ' + "[" * 50_000 + "]" * 50_000 + "}")
    with pytest.raises(TokenizerError, match="not a readable tokenizer file") as deep:
        load_tokenizer(tmp_path / "vocab.json")
    with pytest.raises(TokenizerError, match="not a groklab tokenizer"):  # an unhashable kind was a TypeError
        tokenizer_from_dict({"kind": ["char"]})
    t0 = time.perf_counter()
    with pytest.raises(TokenizerError, match=r"p must be at most 1,000,000"):  # was: minutes building 10^12 tokens
        tokenizer_from_dict({"kind": "number", "p": 10**12, "symbols": "+"})
    assert time.perf_counter() - t0 < 0.5 and slowest[0] < 2
    assert counts["refused"] and counts["loaded"]
    reliability("tokenizer", f"{sum(counts.values())} fuzzed vocab.json files (valid ones, valid ones with a field "
                "replaced by random JSON, near-valid dicts, kind as a list, p = 10^12, random JSON and bytes)",
                f"{counts['loaded']} loaded and re-serialise equal, "
                f"{counts['refused']} refused with TokenizerError naming the file "
                f"(slowest {slowest[0] * 1000:.0f} ms), "
                f"e.g. {example[0]!r}")
    reliability("tokenizer", "vocab.json nested 50,000 arrays deep", hide(str(deep.value), tmp_path))


def test_decode_of_arbitrary_ids_gives_text_or_tokenizer_error(reliability):
    counts: Counter[str] = Counter()
    tokenizers = [CharTokenizer.for_equations("+,/"), NumberTokenizer(97, "+")]

    @settings(max_examples=200, **FAST)
    @given(st.lists(st.integers(0, 12), max_size=6) | st.lists(
        st.integers(0, 12) | st.integers(-(2**70), 2**70) | st.integers(0, 110) | st.floats() | st.text(max_size=2)
        | st.none(), max_size=6))
    def check(ids):
        counts["lists"] += 1
        for tok in tokenizers:
            try:
                text = tok.decode(ids)
            except TokenizerError:
                counts["refused"] += 1
                continue
            assert text == "".join(tok.tokens[int(i)] for i in ids)
            counts["decoded"] += 1

    check()
    reliability("tokenizer", f"decode() of {counts['lists']} random id lists (negative, 2^70, floats, strings, None) "
                "by a char and a number tokenizer",
                f"{counts['decoded']} decoded to the listed tokens, {counts['refused']} refused with TokenizerError")

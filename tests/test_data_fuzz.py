"""Bad input, fuzzed: the data-file parser, the tokenizers, sweep specs, prompts, checkpoints and command-line
arguments get generated and hostile input. Each input gets a correct result or a clear error (a GroklabError,
or on the command line one `groklab: error:` line and exit status 2), never a traceback or a hang. Every kind
of case adds a row to docs/reliability.md with the outcome observed (counts, and a message actually printed).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from types import UnionType
from typing import Literal, Union, get_args, get_origin

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from groklab.store import checkpoint as ckpt
from groklab.data import equations as data_mod
from groklab.cli import main
from groklab.config import RunConfig, field_info
from groklab.data.equations import (
    DatasetSpec,
    load_dataset_dir,
    make_splits,
    parse_equation,
    read_equation_file,
    read_text_file,
    write_dataset,
)
from groklab.errors import CheckpointError, DataError, GroklabError, TokenizerError
from groklab.data.ops import OPERATIONS
from groklab.analysis.sample import complete, evaluate_split, interactive
from groklab.store.loadrun import load_run
from groklab.experiments.spec import MANAGED_FIELDS, PATH_FIELDS, SpecError, load_spec, parse_spec
from groklab.data.tokenizer import MAX_P, CharTokenizer, NumberTokenizer, load_tokenizer, tokenizer_from_dict
from groklab.training.loop import train_runs
from helpers import assert_clean_error, hide, is_usage_error, run_cli, tiny_config

SYMBOLS = "".join(OPERATIONS)
FAST = {"deadline": None,
        "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]}


def tally_refusal(code: int, err: str, counts: Counter, example: list[str], *folders: Path) -> None:
    """A fuzzed command line that was refused: check it is clean, count it as argparse's usage error or
    groklab's own, and keep groklab's message as the ledger's example."""
    line = assert_clean_error(code, err)
    usage = is_usage_error(err)
    counts["argparse" if usage else "groklab"] += 1
    if not usage:
        example[:] = [hide(line, *folders)]


# =========================================================================================================
# data files
# =========================================================================================================


def reference_lines(raw: bytes) -> list[str] | None:
    """What read_equation_file must return for these bytes (data.py's rules, applied to the whole file at
    once), or None where it must refuse."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    lines = text.removeprefix("\ufeff").split("\n")
    if lines[-1] == "":
        lines.pop()
    lines = [line.removesuffix("\r") for line in lines]
    if not lines:
        return None
    for line in lines:
        try:
            parse_equation(line)
        except DataError:
            return None
    return lines


equation_text = st.builds(
    lambda a, op, b, c: f"{a}{op}{b}={c}",
    st.integers(0, 200) | st.integers(0, 10**12), st.sampled_from(SYMBOLS), st.integers(0, 200), st.integers(0, 200),
)
file_piece = st.one_of(
    equation_text.map(str.encode),
    equation_text.map(str.encode),
    st.text(alphabet="0123456789+-*/=#x \t\r\ufeff\u2028٣é", max_size=12).map(str.encode),
    st.binary(max_size=12),
)
file_bytes = st.builds(
    lambda bom, lines, sep, final: (b"\xef\xbb\xbf" if bom else b"") + sep.join(lines)
    + (sep if final and lines else b""),
    st.booleans(), st.lists(file_piece, max_size=8), st.sampled_from([b"\n", b"\r\n"]), st.booleans(),
)


def test_generated_data_files_parse_exactly_or_name_file_and_line(tmp_path, reliability):
    path = tmp_path / "train.txt"
    seen: Counter[str] = Counter()
    examples: dict[str, str] = {}

    @settings(max_examples=300, **FAST)
    @given(file_bytes)
    def check(raw):
        path.write_bytes(raw)
        expected = reference_lines(raw)
        try:
            got = read_equation_file(path)
        except DataError as exc:
            message = str(exc)
            assert expected is None, (raw, message)
            assert "\n" not in message and message.startswith(f"{path}:")
            where = re.match(rf"{re.escape(str(path))}:(\d+): ", message)
            if where is None:
                assert message == f"{path}: no equations (the file is empty)", message
            else:
                assert 1 <= int(where.group(1)) <= raw.count(b"\n") + 1
            kind = "not UTF-8" if "UTF-8" in message else "empty" if where is None else "malformed line"
            seen[kind] += 1
            examples.setdefault(kind, hide(message, tmp_path))
            return
        assert got == expected, raw
        for line in got:  # only canonical equations are accepted
            a, op, b, c = parse_equation(line)
            assert f"{a}{op}{b}={c}" == line
        seen["parsed"] += 1

    check()
    total = sum(seen.values())
    assert seen["parsed"] and seen["malformed line"] and seen["not UTF-8"]
    reliability("data file", f"{total} generated split files: equations, random characters, random bytes, CRLF, "
                "byte-order marks, missing final newline",
                f"{seen['parsed']} parsed to exactly the lines a whole-file reference split gives; "
                f"{total - seen['parsed']} refused with file:line ({seen['malformed line']} malformed, "
                f"{seen['not UTF-8']} not UTF-8, {seen['empty']} empty), e.g. {examples['malformed line']!r}")


@pytest.mark.parametrize("name, raw", [
    ("an empty file (0 bytes)", b""),
    ("a file of blank lines", b"\n\r\n  \n"),
    ("a file holding only a byte-order mark", b"\xef\xbb\xbf"),
    ("a blank line between equations", b"1+1=2\n\n2+2=4\n"),
])
def test_empty_and_blank_data_files(tmp_path, reliability, name, raw):
    path = tmp_path / "train.txt"
    path.write_bytes(raw)
    with pytest.raises(DataError) as err:
        read_equation_file(path)
    assert str(err.value).startswith(str(path))
    reliability("data file", name, hide(str(err.value), tmp_path))


@pytest.mark.parametrize("name, raw, column", [
    ("Latin-1 text (é as byte 0xe9)", "1+1=2\n2+2=4\nd\xe9j\xe0\n".encode("latin-1"), 2),
    ("a lone UTF-8 continuation byte", b"1+1=2\n3+\x803=6\n", 3),
    ("an overlong UTF-8 encoding of '/'", b"30\xc0\xaf74=24\n", 3),
    ("a UTF-16 file (with its byte-order mark)", "1+1=2\n".encode("utf-16"), 1),
    ("a UTF-8-encoded surrogate (CESU-8)", b"1+1=2\n\xed\xa0\x80\n", 1),
])
def test_non_utf8_bytes_are_refused_naming_line_and_column(tmp_path, reliability, name, raw, column):
    path = tmp_path / "train.txt"
    path.write_bytes(raw)
    message = rf"train.txt:\d+: not UTF-8 text \(byte 0x[0-9a-f]{{2}} at column {column}\)"
    with pytest.raises(DataError, match=message) as err:
        read_equation_file(path)
    (tmp_path / "val.txt").write_text("1+1=2\n")
    with pytest.raises(DataError, match="not UTF-8"):
        load_dataset_dir(tmp_path)
    reliability("data file", f"non-UTF-8 bytes: {name}", hide(str(err.value), tmp_path))


def sparse_file(path: Path, head: bytes, size: int, tail: bytes) -> Path:
    """head, then zeros up to `size` bytes (a hole: nothing written, no disk used), then tail."""
    with open(path, "wb") as f:
        f.write(head)
        f.seek(size)
        f.write(tail)
    return path


def test_a_1_gb_line_is_refused_at_once_in_bounded_memory(tmp_path, capsys, reliability):
    data_dir = tmp_path / "d"
    data_dir.mkdir()
    path = sparse_file(data_dir / "train.txt", b"1+1=2\n12", 2**30, b"+1=3\n")  # line 2 is 1 GiB long
    (data_dir / "val.txt").write_text("1+1=2\n")
    assert path.stat().st_size > 2**30
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(DataError, match=r"train.txt:2: line longer than 4,096 bytes") as err:
            read_equation_file(path)
        seconds = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert seconds < 2 and peak < 16 * 2**20, (seconds, peak)
    # the same through the command line: one line, exit 2, before any training
    code, _, cli_err = run_cli(capsys, ["train", "--data_dir", str(data_dir), "--out_dir", str(tmp_path / "r")])
    line = assert_clean_error(code, cli_err)
    assert "line longer than" in line and not (tmp_path / "r").exists()
    reliability("data file", "a 1 GiB line in train.txt (sparse file), read directly and via "
                "`groklab train --data_dir`",
                f"{hide(str(err.value), tmp_path)} ({seconds * 1000:.0f} ms, peak {peak / 2**20:.2f} MiB traced); "
                f"the CLI: exit 2, one line")


def test_a_1_gb_text_file_is_refused_before_it_is_read(tmp_path, capsys, reliability):
    path = sparse_file(tmp_path / "book.txt", b"It was the best of times", 2**30, b".\n")
    t0 = time.perf_counter()
    with pytest.raises(DataError, match=r"book.txt: larger than 64 MiB") as err:
        read_text_file(path)
    seconds = time.perf_counter() - t0
    assert seconds < 1
    code, _, cli_err = run_cli(capsys, ["train", str(path), "--out_dir", str(tmp_path / "r")])
    assert "larger than 64 MiB" in assert_clean_error(code, cli_err)
    reliability("data file", "a 1 GiB text to memorise (`groklab train book.txt`, sparse file)",
                f"refused from its size in {seconds * 1000:.0f} ms: {hide(str(err.value), tmp_path)}; CLI exit 2")


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_an_endless_device_as_a_data_file_is_refused(reliability):
    t0 = time.perf_counter()
    with pytest.raises(DataError, match=r"/dev/zero:1: line longer than") as eq_err:
        read_equation_file("/dev/zero")
    with pytest.raises(DataError, match=r"/dev/zero: larger than 64 MiB") as text_err:
        read_text_file("/dev/zero")
    with pytest.raises(SpecError, match=r"/dev/zero: larger than 1 MiB"):
        load_spec("/dev/zero")
    seconds = time.perf_counter() - t0
    assert seconds < 5
    reliability("data file", "/dev/zero (a file that never ends) as split file, text file and sweep spec",
                f"all three refused within {seconds:.1f} s: {eq_err.value}; {text_err.value}")


def test_more_lines_than_a_dataset_can_hold_are_refused(tmp_path, monkeypatch, reliability):
    monkeypatch.setattr(data_mod, "MAX_EQUATIONS", 5)  # the real limit (10,000,000 lines) would take a while
    path = tmp_path / "train.txt"
    path.write_text("1+1=2\n" * 6)
    with pytest.raises(DataError, match=r"train.txt: more than 5 lines") as err:
        read_equation_file(path)
    path.write_text("1+1=2\n" * 5)
    assert len(read_equation_file(path)) == 5
    reliability("data file", "a split file with more lines than MAX_EQUATIONS (limit lowered to 5 for the test)",
                hide(str(err.value), tmp_path))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


def test_fuzzed_dataset_manifests_load_or_are_refused(tmp_path, reliability):
    spec = DatasetSpec("+", 5)
    write_dataset(spec, make_splits(spec), tmp_path)
    good = json.loads((tmp_path / "manifest.json").read_text())
    seen: Counter[str] = Counter()
    example: list[str] = []

    def mutated(draw_key, value):
        m = dict(good)
        m[draw_key] = value
        return m

    manifests = st.one_of(
        json_values,
        st.builds(mutated, st.sampled_from(sorted(good)), json_values),
        st.builds(mutated, st.just("p"), st.integers(-3, 10**30)),
        st.builds(mutated, st.just("ops"),
                  st.lists(st.fixed_dictionaries({"symbol": st.text(max_size=2)}), max_size=3)),
    )

    @settings(max_examples=150, **FAST)
    @given(manifests)
    def check(manifest):
        (tmp_path / "manifest.json").write_text(json.dumps(manifest))
        try:
            splits, loaded = load_dataset_dir(tmp_path)
        except DataError as exc:
            assert str(exc).startswith(str(tmp_path))
            seen["refused"] += 1
            example[:] = [hide(str(exc), tmp_path)]
            return
        assert loaded == manifest and splits["train"] == make_splits(spec)["train"]
        seen["loaded"] += 1

    check()
    deep = "[" * 100_000 + "]" * 100_000  # JSON nested past Python's recursion limit
    (tmp_path / "manifest.json").write_text(deep)
    with pytest.raises(DataError, match="not a readable JSON manifest") as err:
        load_dataset_dir(tmp_path)
    assert seen["refused"]
    reliability("data file", f"{sum(seen.values())} fuzzed manifest.json files (random JSON, fields replaced by "
                "random values, huge p, unknown symbols)",
                f"{seen['loaded']} loaded the files unchanged (a changed field groklab does not rely on, or one the "
                f"data still satisfies); {seen['refused']} refused, e.g. {example[0]!r}")
    reliability("data file", "manifest.json nested 100,000 arrays deep", hide(str(err.value), tmp_path))


good_ops = st.sampled_from(["+", "/", "-", "*", "+,-", "div", "add,sub", "#@", "!", "&,$"])
op_specs = st.one_of(
    good_ops, good_ops,
    st.text(alphabet=SYMBOLS + ",. adivmulsubx", max_size=6),
    st.lists(st.sampled_from([*SYMBOLS, "add", "div", "pow", "", " "]), max_size=3),
)
good_moduli = st.sampled_from([2, 3, 5, 7, 11, 13, 31])
moduli = st.one_of(
    good_moduli, good_moduli, good_moduli, st.integers(-3, 40),
    st.sampled_from([10**9 + 7, 10**18 + 9, 2**61 - 1, 10**30 + 57]), st.booleans(), st.floats(allow_nan=True),
    st.text(max_size=3),
)


def test_generated_dataset_requests_give_correct_splits_or_data_errors(reliability):
    seen: Counter[str] = Counter()
    slowest = [0.0]

    @settings(max_examples=200, **FAST)
    @given(op_specs, moduli, st.one_of(st.none(), st.none(), st.integers(1, 30), st.integers(-2, 2000)),
           st.none() | st.one_of(
               st.sampled_from([(0.7, 0.15, 0.15), (0.5, 0.5, 0.0), (1.0, 0.0, 0.0), (0.4, 0.4, 0.2)]),
               st.tuples(*[st.floats(-0.5, 1.5) | st.sampled_from([float("nan"), float("inf")])] * 3)),
           st.one_of(st.integers(0, 9), st.integers(0, 9), st.integers(-(2**80), 2**80),
                     st.floats() | st.text(max_size=2)))
    def check(ops, p, num_samples, fractions, seed):
        t0 = time.perf_counter()
        try:
            spec = DatasetSpec(ops, p, num_samples, fractions, seed)  # type: ignore[arg-type]
            splits = make_splits(spec)
        except DataError:
            seen["refused"] += 1
            return
        finally:
            slowest[0] = max(slowest[0], time.perf_counter() - t0)
        lines = splits["train"] + splits["val"] + splits["test"]
        assert splits["train"] and len(set(lines)) == len(lines)
        for line in lines:
            a, op, b, c = parse_equation(line)
            assert op in spec.ops and max(a, b, c) < spec.p and OPERATIONS[op].apply(a, b, spec.p) == c
        seen["made"] += 1

    check()
    assert seen["made"] and seen["refused"] and slowest[0] < 5
    reliability("data file", f"{sum(seen.values())} generated dataset requests (`groklab data`): random op lists, "
                "p from -3 to 10^30 (bools, floats, text), fractions with NaN/inf, seeds to 2^80",
                f"{seen['made']} made splits whose every line is right mod p and distinct, {seen['refused']} refused "
                f"with DataError; slowest answer {slowest[0] * 1000:.0f} ms")


def test_a_huge_prime_modulus_is_refused_at_once(capsys, tmp_path, reliability):
    t0 = time.perf_counter()
    code, _, err = run_cli(capsys, ["data", "--op", "/", "--p", str(10**18 + 9), "--out", str(tmp_path / "d")])
    seconds = time.perf_counter() - t0
    line = assert_clean_error(code, err)
    assert "make over 10,000,000 equations" in line and seconds < 2  # was: hours of trial division first
    reliability("data file", "`groklab data --op / --p 1000000000000000009` (a prime far too large)",
                f"{line} ({seconds * 1000:.0f} ms)")


# =========================================================================================================
# tokenizers
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
    @given(st.integers(2, 3000) | st.sampled_from([10, 100, 1000]), st.text(alphabet=SYMBOLS + "xé ", max_size=4),
           st.data())
    def check(p, symbols, data):
        symbols = "".join(c for c in symbols if c not in "0123456789")
        tok = NumberTokenizer(p, symbols)
        text = data.draw(st.text(alphabet="0123456789" * 3 + SYMBOLS + "=\nx ٣", max_size=25))
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
        st.builds(NumberTokenizer, st.integers(2, 5000), st.text(alphabet=SYMBOLS + "\"\\'\u2028é", max_size=5)),
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
                      st.builds(NumberTokenizer, st.integers(2, 500), st.text(alphabet=SYMBOLS, max_size=3)))
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


# =========================================================================================================
# sweep specs
# =========================================================================================================


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    assert isinstance(v, dict)
    return "{" + ", ".join(f"{json.dumps(k, ensure_ascii=False)} = {toml_value(x)}" for k, x in v.items()) + "}"


def toml_text(d: dict) -> str:
    return "".join(f"{json.dumps(k, ensure_ascii=False)} = {toml_value(v)}\n" for k, v in d.items())


FIELD_NAMES = ["op", "p", "operators", "prime", "seed", "lr", "weight_decay", "n_layer", "n_head", "n_embd",
               "max_steps", "tokenizer", "data_dir", "text_file", "dropout", "train_fraction", "num_samples",
               "out_dir", "resume", "n_layr", "", "block-size", "grok_threshold", "device"]
PATHS = ["data", "sub/dir", ".", "../outside", "/etc", "sub/../../x", "a\x00b", "~/x", "", "data/" + "d/" * 140]
spec_scalars = st.one_of(
    st.integers(1, 8), st.integers(-3, 8), st.integers(-(2**70), 2**70), st.floats(0, 1), st.floats(), st.booleans(),
    st.sampled_from(["+", "/", "+,-", "char", "number", "cpu", "x"]), st.sampled_from(PATHS), st.text(max_size=5),
)
spec_tables = st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=4), spec_scalars, max_size=4)
spec_axes = st.dictionaries(st.sampled_from(FIELD_NAMES), st.lists(spec_scalars, max_size=3) | spec_scalars,
                            max_size=3)
spec_names = st.sampled_from(["tiny", "a.b-c_1", "bad name", "x\n", "", "..", "-x", "é"]) | st.text(max_size=4)
experiments = st.fixed_dictionaries({}, optional={"name": spec_names, "base": spec_tables, "grid": spec_axes,
                                                  "zip": spec_axes, "description": spec_scalars, "junk": spec_scalars})
plausible_specs = st.fixed_dictionaries({}, optional={
    "name": st.sampled_from(["tiny", "a.b-c_1"]), "base": spec_tables, "grid": spec_axes, "zip": spec_axes,
})
wild_specs = st.fixed_dictionaries({}, optional={
    "name": spec_names, "description": spec_scalars, "base": spec_tables | spec_scalars, "grid": spec_axes,
    "zip": spec_axes, "experiment": st.lists(experiments | spec_scalars, max_size=2) | spec_scalars,
    "runs": spec_scalars,
})
specs = plausible_specs | wild_specs | st.fixed_dictionaries({"experiment": st.lists(experiments, min_size=1,
                                                                                     max_size=2)})


def test_generated_sweep_specs_expand_inside_their_folder_or_name_the_field(tmp_path, reliability):
    root = tmp_path / "specs"
    (root / "data").mkdir(parents=True)
    counts: Counter[str] = Counter()
    example: list[str] = []

    @settings(max_examples=300, **FAST)
    @given(specs, st.dictionaries(st.sampled_from(FIELD_NAMES), spec_scalars, max_size=2))
    def check(spec, overrides):
        text = toml_text(spec)
        try:
            runs = parse_spec(text, "spec.toml", root).expand(overrides)
        except SpecError as exc:
            message = str(exc)
            assert message.startswith("spec.toml: ") and "Traceback" not in message
            counts["refused"] += 1
            example[:] = [hide(message, tmp_path)]
            return
        assert len({r.run_id for r in runs}) == len(runs)
        for r in runs:
            parts = r.run_id.split("/")
            assert len(parts) == 2 and all(0 < len(x.encode()) <= 255 and x not in (".", "..") for x in parts)
            for name in PATH_FIELDS:
                value = getattr(r.config.data, name)
                if value is not None and name not in overrides:
                    assert Path(value).resolve().is_relative_to(root.resolve()), value
            assert r.config.train.out_dir == RunConfig().train.out_dir  # set by the sweep, not by the spec
        counts["expanded"] += 1
        counts["runs"] += len(runs)

    check()
    assert counts["expanded"] and counts["refused"]
    reliability("sweep spec", f"{counts['expanded'] + counts['refused']} generated specs: random fields, aliases, "
                "typos, paths ('../', '/etc', NUL, 285 characters), lists, tables, experiments, names, CLI overrides",
                f"{counts['expanded']} expanded ({counts['runs']} runs, every data path inside the spec's folder, "
                f"folder names ≤ 255 bytes); {counts['refused']} refused naming file and field, e.g. {example[0]!r}")


def test_random_spec_bytes_are_refused_as_spec_errors(tmp_path, reliability):
    counts: Counter[str] = Counter()

    @settings(max_examples=150, **FAST)
    @given(st.binary(max_size=60) | st.text(max_size=60).map(str.encode))
    def check(raw):
        path = tmp_path / "s.toml"
        path.write_bytes(raw)
        try:
            load_spec(path).expand()
        except SpecError as exc:
            assert str(exc).startswith(str(path))
            counts["refused"] += 1
            return
        counts["expanded"] += 1  # e.g. an empty or comment-only file: one run of the default config

    check()
    reliability("sweep spec", f"{sum(counts.values())} spec files of random bytes or random text",
                f"{counts['refused']} refused with SpecError naming the file, {counts['expanded']} valid TOML that "
                "expanded (empty or comment-only)")


def test_a_spec_pointing_outside_its_folder_is_refused(tmp_path, capsys, reliability):
    root = tmp_path / "specs"
    (root / "data").mkdir(parents=True)
    (tmp_path / "secret").mkdir()
    (root / "escape").symlink_to(tmp_path / "secret")
    (root / "loop").symlink_to(root / "loop")
    cases = {
        "a parent path": '[base]\ndata_dir = "../secret"\n',
        "an absolute path": '[base]\ndata_dir = "/etc"\n',
        "a path that dips in and out": '[grid]\ndata_dir = ["data", "data/../../secret"]\n',
        "a symlink inside the folder to a folder outside": '[base]\ntext_file = "escape/notes.txt"\n',
        "a NUL byte in the path": '[base]\ndata_dir = "data\\u0000x"\n',
        "an outside path in one experiment": '[[experiment]]\nname = "a"\n[experiment.base]\ndata_dir = "data"\n'
                                             '[[experiment]]\nname = "b"\n[experiment.zip]\ndata_dir = ["../secret"]\n',
    }
    for name, body in cases.items():
        (root / "s.toml").write_text(body)
        with pytest.raises(SpecError) as err:
            load_spec(root / "s.toml").expand({"op": "+", "p": 7})
        message = str(err.value)
        assert message.startswith(str(root / "s.toml")) and ("outside the spec's folder" in message
                                                             or "not a usable path" in message), message
        reliability("sweep spec", f"a data path leaving the spec's folder: {name}", hide(message, tmp_path))
    # a symlink loop: Python 3.11/3.12 cannot resolve it (refused), 3.13 leaves it as is (inside: accepted)
    (root / "s.toml").write_text('[base]\ndata_dir = "loop/x"\n')
    try:
        data_dir = load_spec(root / "s.toml").expand({"op": "+", "p": 7})[0].config.data.data_dir
        outcome = f"accepted, inside the folder: {data_dir}"
        assert outcome.endswith(str((root / "loop" / "x")))
    except SpecError as exc:
        assert "not a usable path" in str(exc)
        outcome = str(exc)
    reliability("sweep spec", "a data path through a symlink loop inside the spec's folder", hide(outcome, tmp_path))
    (root / "s.toml").write_text(cases["a parent path"])
    code, _, err = run_cli(capsys, ["sweep", str(root / "s.toml"), "--out", str(tmp_path / "out")])
    line = assert_clean_error(code, err)
    assert "points outside the spec's folder" in line and not (tmp_path / "out").exists()
    reliability("sweep spec", "`groklab sweep` with a spec whose data_dir is '../secret'",
                f"exit 2 before anything ran: {hide(line, tmp_path)}")


@pytest.mark.parametrize("name, body, message", [
    ("a name ending in a newline", 'name = "tiny\\n"\n', "name must be letters"),
    ("[[experiment]] entries that are numbers", "experiment = [1, 2]\n",
     r"\[\[experiment\]\] must be a list of tables"),
    ("TOML nested 5,000 arrays deep", "x = " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
    ("a grid value whose run folder name would exceed 255 bytes",
     '[base]\nop = "+"\np = 7\n[grid]\noperators = ["+", "+' + "," * 300 + '"]\n', "more than the 255"),
    ("a typo in a field, with a suggestion", '[grid]\nweight_decy = [0.1, 1.0]\n', "did you mean 'weight_decay'"),
    ("a managed field", "[base]\nout_dir = 'x'\n", "out_dir is set by the sweep"),
])
def test_named_bad_specs(tmp_path, reliability, name, body, message):
    (tmp_path / "s.toml").write_text(body)
    with pytest.raises(SpecError, match=message) as err:
        load_spec(tmp_path / "s.toml").expand()
    assert str(err.value).startswith(str(tmp_path / "s.toml"))
    reliability("sweep spec", name, hide(str(err.value), tmp_path))


def test_unreadable_spec_files(tmp_path, reliability):
    (tmp_path / "latin1.toml").write_bytes('name = "d\xe9j\xe0"\n'.encode("latin-1"))
    (tmp_path / "folder.toml").mkdir()
    for name, path, message in [("a spec in Latin-1 (not UTF-8)", tmp_path / "latin1.toml", "not UTF-8"),
                                ("a spec path that is a folder", tmp_path / "folder.toml", "is a directory"),
                                ("a spec that does not exist", tmp_path / "missing.toml", "no such file")]:
        with pytest.raises(SpecError, match=message) as err:
            load_spec(path)
        reliability("sweep spec", name, hide(str(err.value), tmp_path))


# =========================================================================================================
# runs: prompts, and checkpoints from another vocabulary
# =========================================================================================================


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three tiny trained runs: 'plus' (char, from a data folder, '+' mod 7, 13 tokens), 'div' (char, on the fly,
    '/' mod 7, also 13 tokens: trained in the same group) and 'num' (number tokenizer, '+' mod 7, 10 tokens)."""
    root = tmp_path_factory.mktemp("fuzz-runs")
    spec = DatasetSpec("+", 7, fractions=(0.6, 0.2, 0.2))
    write_dataset(spec, make_splits(spec), root / "plus7")
    plus = tiny_config(root / "plus", operators=None, prime=None, train_fraction=None, val_fraction=None,
                       data_dir=str(root / "plus7"), max_steps=3)
    div = tiny_config(root / "div", operators="/", max_steps=3)
    num = tiny_config(root / "num", tokenizer="number", max_steps=3)
    train_runs([plus, div], log=lambda _: None)
    train_runs([num], log=lambda _: None)
    return root


def copy_run(runs: Path, name: str, into: Path) -> Path:
    shutil.copytree(runs / name, into)
    return into


def test_random_prompts_complete_or_are_refused(runs, reliability):
    counts: Counter[str] = Counter()
    example: dict[str, str] = {}
    loaded = {name: load_run(runs / name) for name in ("plus", "num")}

    equation_prompts = st.builds("{}+{}=".format, st.integers(0, 6), st.integers(0, 6))

    @settings(max_examples=80, **FAST)
    @given(st.sampled_from(sorted(loaded)), equation_prompts | st.text(alphabet="0123456+=", max_size=8)
           | st.text(alphabet="0123456789+/=\n x٣é", max_size=12) | st.text(max_size=6),
           st.integers(0, 3), st.sampled_from([0.0, 1e-300, 0.7, 1.0, 1e300, float("inf")]),
           st.sampled_from([None, 1, 3, 100]))
    def check(name, prompt, n, temperature, top_k):
        run = loaded[name]
        try:
            text = complete(run, prompt, n, temperature, top_k, None)
        except GroklabError as exc:
            kind = "empty" if not prompt else "unknown"
            assert isinstance(exc, TokenizerError) or kind == "empty", exc
            counts[kind] += 1
            if kind == "unknown":
                example.setdefault(name, str(exc))
            return
        assert text.startswith(prompt)
        if name == "plus":  # number tokens decode without separators ([0, 0] is "00"), so count chars only here
            assert len(text) <= len(prompt) + n
        counts["completed"] += 1

    check()
    assert counts["completed"] and counts["unknown"]
    reliability("sampling prompt", f"{sum(counts.values())} random prompts (out-of-vocabulary characters, '٣', "
                "numbers ≥ p, empty) to a char and a number-tokenizer run, temperatures 0 to inf and 1e-300",
                f"{counts['completed']} completed (the output starts with the prompt); {counts['unknown']} refused "
                f"naming the character or number and its position, e.g. {example['plus']!r} / {example['num']!r}; "
                f"{counts['empty']} empty prompts refused")


def test_out_of_vocabulary_prompt_and_bad_sampling_flags_on_the_command_line(runs, capsys, reliability):
    run = str(runs / "plus")
    cases = [
        ("an out-of-vocabulary prompt ('3x4=')", ["--prompts", "3x4="], "'x'"),
        ("a prompt with '/' to a '+' run", ["--prompt", "30/74="], "'/'"),
        ("a number at or above p to a number-tokenizer run", ["--prompt", "7+2="], "not below p = 7"),
        ("an empty prompt", ["--prompt", ""], "the prompt is empty"),
        ("--temperature nan", ["--prompts", "1+2=", "--temperature", "nan"], "temperature must be >= 0"),
        ("--temperature -1", ["--prompts", "1+2=", "--temperature", "-1"], "must be >= 0"),
        ("--seed 2^70", ["--prompts", "1+2=", "--seed", str(2**70)], "--seed"),
        ("--max_new_tokens -1", ["--prompts", "1+2=", "--max_new_tokens", "-1"], "must be >= 0"),
        ("--top_k abc", ["--prompts", "1+2=", "--top_k", "abc"], "invalid int value"),
    ]
    if not torch.cuda.is_available():
        cases.append(("--device cuda on a machine without CUDA", ["--prompts", "1+2=", "--device", "cuda"],
                      "sees no CUDA GPU"))
    for name, flags, message in cases:
        target = str(runs / "num") if "number-tokenizer" in name else run
        code, _, err = run_cli(capsys, ["sample", target, *flags])
        line = assert_clean_error(code, err)
        assert message in line, line
        reliability("sampling prompt", f"`groklab sample` with {name}", f"exit 2: {hide(line, runs)}")
    argv = ["sample", run, "--prompts", "1+2=,3+3=,6+0=", "--max_new_tokens", "3"]
    code, out, _ = run_cli(capsys, [*argv, "--temperature", "1e-300"])
    assert code == 0 and out.startswith("1+2=")
    greedy = run_cli(capsys, [*argv, "--temperature", "0"])[1]
    assert out == greedy
    reliability("sampling prompt", "`groklab sample --temperature 1e-300` (logits / T overflow float32)",
                f"exit 0, the same completions as --temperature 0: {out.split()!r}")


def test_interactive_mode_survives_any_line(runs, reliability):
    run = load_run(runs / "plus")
    counts: Counter[str] = Counter()

    @settings(max_examples=60, **FAST)
    @given(st.lists(st.text(alphabet="0123456789+=x/ \t٣", max_size=8) | st.text(max_size=4), max_size=5))
    def check(lines):
        inputs = iter(lines)
        written: list[str] = []

        def read(_prompt):
            try:
                return next(inputs)
            except StopIteration:
                raise EOFError from None

        interactive(run, 2, 0.0, None, None, read=read, write=written.append)
        asked = []
        for line in lines:  # an empty line (or quit, exit) ends the session
            if line.strip() in ("", "quit", "exit"):
                break
            asked.append(line)
        ended_by_eof = len(asked) == len(lines)
        answers = written[1 : len(written) - ended_by_eof]
        assert len(answers) == len(asked) and (not ended_by_eof or written[-1] == "")
        for line, answer in zip(asked, answers):
            assert answer.startswith(line) or answer.startswith("error: ")
        counts["sessions"] += 1
        counts["answered"] += len(asked)
        counts["errors"] += sum(1 for w in answers if w.startswith("error: "))

    check()
    reliability("sampling prompt", f"{counts['sessions']} interactive sessions of random lines, then Ctrl-D",
                f"every session ended normally; each of the {counts['answered']} lines before an empty one got one "
                f"answer: a completion, or for {counts['errors']} of them 'error: ...', and the loop went on")


def test_a_checkpoint_from_a_different_vocabulary_is_refused(runs, tmp_path, capsys, reliability):
    """The weights and vocab.json must be the ones the run was trained with. Same-sized vocabularies ('+' and '/'
    runs both have 13 tokens) used to load silently and answer for the wrong operation."""
    cases = []

    def refused(name: str, run_dir: Path, message: str, command: str = "sample") -> None:
        with pytest.raises(CheckpointError, match=message) as err:
            evaluate_split(load_run(run_dir), "test") if command == "evaluate" else load_run(run_dir)
        argv = ["sample", str(run_dir), "--prompts", "1+2="] if command == "sample" else ["evaluate", str(run_dir)]
        code, _, cli_err = run_cli(capsys, argv)
        assert re.search(message, assert_clean_error(code, cli_err))
        cases.append(name)
        reliability("checkpoint vocabulary", name,
                    f"`groklab {command}` exit 2: {hide(str(err.value), tmp_path, runs)}")

    x = copy_run(runs, "plus", tmp_path / "a")
    CharTokenizer.for_equations("/").save(x / "vocab.json")
    refused("vocab.json of a '+' run replaced by the '/' vocabulary (same size, 13 tokens)", x,
            r"is not the vocabulary the weights in model.safetensors were trained with")

    x = copy_run(runs, "plus", tmp_path / "b")
    shutil.copy(runs / "div/model.safetensors", x / "model.safetensors")
    refused("model.safetensors of a '/' run copied into a '+' run (same shapes)", x,
            r"is not the vocabulary the weights in model.safetensors were trained with")

    x = copy_run(runs, "plus", tmp_path / "c")
    shutil.copy(runs / "num/model.safetensors", x / "model.safetensors")
    refused("model.safetensors of a number-tokenizer run (10 tokens) in a char run (13)", x,
            r"the weights have a vocabulary of 10 tokens but vocab.json has 13")

    x = copy_run(runs, "div", tmp_path / "d")
    for f in ("model.safetensors", "vocab.json"):
        shutil.copy(runs / "plus" / f, x / f)
    refused("weights and vocab.json of a '+' run copied together into a '/' run", x,
            r"does not match the run's data")

    x = copy_run(runs, "plus", tmp_path / "e")
    for f in ("model.safetensors", "vocab.json"):
        shutil.copy(runs / "num" / f, x / f)
    (x / "data" / "manifest.json").unlink()
    refused("weights and vocab.json of a number-tokenizer run in a char run without a dataset manifest", x,
            r"vocab.json holds a 'number' vocabulary but the run's config says tokenizer = 'char'")

    x = copy_run(runs, "plus", tmp_path / "f")
    for f in ("model.safetensors", "vocab.json"):
        shutil.copy(runs / "div" / f, x / f)
    (x / "data" / "manifest.json").unlink()
    refused("weights and vocab.json of a '/' run in a '+' run without a dataset manifest, then `evaluate`", x,
            r"does not match the run's data", command="evaluate")

    x = copy_run(runs, "plus", tmp_path / "g")
    (x / "vocab.json").write_text('{"kind": ' + "[" * 50_000 + "]" * 50_000 + "}")
    with pytest.raises(TokenizerError, match="not a readable tokenizer file"):
        load_run(x)
    (x / "vocab.json").write_text((runs / "plus" / "vocab.json").read_text())
    (x / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(CheckpointError, match="not a valid JSON file") as err:
        load_run(x)
    reliability("checkpoint vocabulary", "vocab.json and config.json nested 50,000+ arrays deep",
                f"both refused (TokenizerError, CheckpointError): {hide(str(err.value), tmp_path)[:120]}")

    # checkpoints written before the weights named their vocabulary still load, and the genuine runs do
    x = copy_run(runs, "plus", tmp_path / "old")
    weights, meta = ckpt.load_weights(x / "model.safetensors")
    assert meta["vocab"] == CharTokenizer.for_equations("+").to_dict()
    ckpt.save_weights(x / "model.safetensors", weights, {"step": meta["step"]})
    assert load_run(x).tokenizer == CharTokenizer.for_equations("+")
    for name in ("plus", "div", "num"):
        assert evaluate_split(load_run(runs / name), "val")["examples"] > 0
    assert len(cases) == 6


# =========================================================================================================
# command-line arguments
# =========================================================================================================

# a NUL byte cannot be passed in a real argv, so none is generated
junk_text = st.text(alphabet=st.characters(blacklist_characters="\x00"), max_size=6)
argv_values = st.sampled_from(["7", "0", "-1", "nan", "inf", "abc", "", "٣", str(2**70), "+", "true"]) | junk_text


def values(good: list[str], bad: list[str]) -> st.SearchStrategy[str]:
    """Flag values: half from `good` (plausible), the rest hostile: `bad` ones and random text."""
    return st.one_of(st.sampled_from(good), st.sampled_from(good), st.sampled_from(bad), junk_text)


INTS = values(["1", "2", "3"], ["0", "-1", str(2**70), "1e3", "3.5", "٣", "abc", ""])
FLOATS = values(["0.1", "0.5", "1e-3"], ["0", "-1", "nan", "inf", "-inf", "2", "abc", ""])


def config_flag(name: str) -> tuple[str, st.SearchStrategy[str] | None]:
    """--FIELD and a strategy for its value, from the field's type (None: the flag takes no value)."""
    if name.startswith("--no"):
        return name, None
    _, canonical, tp = field_info(name.lstrip("-"))
    args = [a for a in get_args(tp) if a is not type(None)] if get_origin(tp) in (Union, UnionType) else [tp]
    tp = args[0]
    if tp is bool:
        return name, values(["true", "false", "no"], ["maybe", ""])
    if get_origin(tp) is Literal:
        return name, values(list(get_args(tp)), ["bogus", "", "CPU"])
    if tp is int:
        return name, INTS
    if tp is float:
        return name, FLOATS
    if canonical == "operators":
        return name, values(["+", "/", "+,-"], ["^", "", ",", "div,div"])
    return name, values(["nowhere"], [".", "", "/"])  # data_dir, text_file


CONFIG_FLAGS = [config_flag(f) for f in [
    "--n_layer", "--n_head", "--n_embd", "--block_size", "--dropout", "--operators", "--prime", "--num_samples",
    "--train_fraction", "--val_fraction", "--data_seed", "--tokenizer", "--loss_on", "--mask_first_n",
    "--learning_rate", "--weight_decay", "--beta1", "--eps", "--grad_clip", "--warmup_steps", "--max_steps",
    "--batch_size", "--seed", "--eval_points_per_decade", "--checkpoint_interval", "--grok_threshold", "--device",
    "--data_dir", "--text_file", "--progress", "--max_iters", "--beta_1", "--p", "--lr", "--no-progress"]] + [
    ("--nonsense", argv_values)]


def flag_args(flags: list[tuple[str, st.SearchStrategy[str] | None]], max_size: int) -> st.SearchStrategy[list[str]]:
    """Up to max_size flags (with values where they take one), flattened into argv words."""
    one = st.sampled_from(flags).flatmap(
        lambda fv: st.just([fv[0]]) if fv[1] is None else fv[1].map(lambda v, f=fv[0]: [f, v]))
    return st.lists(one, max_size=max_size).map(lambda parts: [w for part in parts for w in part])


DATA_FLAGS = [
    ("--seed", values(["0", "1", "-1", str(2**70)], ["x", "1.5"])),
    ("--num_samples", values(["5", "10", "20"], ["0", "-1", "100000", "abc"])),
    ("--fractions", values(["0.7,0.15,0.15", "0.5,0.3,0.2", "1,0,0"],
                           ["nan,0,1", "0.5,0.5", "", "a,b,c", "0,0.5,0.5", "1e-300,1,0", "inf,-inf,1"])),
    ("--bogus", argv_values),
]


def test_fuzzed_data_command_lines(tmp_path, capsys, reliability):
    counts: Counter[str] = Counter()
    example: list[str] = []
    n = [0]

    @settings(max_examples=60, **FAST)
    @given(values(["+", "/", "+,-", "add", "mul", "#"], ["div,div", "^", ",", "", "٣"]),
           values(["7", "13", "11", "97"], ["2", "1", "0", "-1", "96", "abc", "٣", "3.5", "", str(10**18 + 9)]),
           flag_args(DATA_FLAGS, 2), st.sets(st.sampled_from(["--op", "--p", "--out"]), max_size=1))
    def check(op, p, extra, left_out):
        n[0] += 1
        out = tmp_path / f"d{n[0]}"
        required = {"--op": op, "--p": p, "--out": str(out)}
        argv = ["data", *[x for f, v in required.items() if f not in left_out for x in (f, v)], *extra]
        code, _, err = run_cli(capsys, argv)
        if code == 0:
            assert (out / "manifest.json").exists()
            counts["written"] += 1
            return
        tally_refusal(code, err, counts, example, tmp_path)

    check()
    assert counts["written"] and counts["groklab"] and counts["argparse"]
    reliability("command line", f"{n[0]} fuzzed `groklab data` command lines (ops, p, fractions, seeds and sample "
                "counts: plausible, or nan, inf, '٣', 2^70, empty, unknown ops, random text; required flags left "
                f"out)", f"{counts['written']} wrote a dataset; {counts['argparse']} usage errors and "
                f"{counts['groklab']} one-line errors, all exit 2, no traceback, e.g. {example[0]!r}")


def test_fuzzed_train_command_lines_are_checked_before_training(tmp_path, capsys, monkeypatch, reliability):
    """Random flags and values for `groklab train`. Training itself is replaced by loading each run's data, so
    everything up to the first step is exercised; the named cases below train for real."""
    import groklab.training.groups
    from groklab.data.dataset import load_run_data

    def train_many(configs, **_):
        for c in configs:
            load_run_data(c.data, c.model)
        return []

    monkeypatch.setattr(groklab.training.groups, "train_many", train_many)
    counts: Counter[str] = Counter()
    example: list[str] = []
    n = [0]
    base = ["--operators", "+", "--prime", "7", "--max_steps", "2"]

    @settings(max_examples=100, **FAST)
    @given(flag_args(CONFIG_FLAGS, 3), st.booleans())
    def check(flags, with_base):
        n[0] += 1
        argv = ["train", *(base if with_base else []), *flags, "--out_dir", str(tmp_path / f"r{n[0]}")]
        code, _, err = run_cli(capsys, argv)
        if code == 0:
            counts["accepted"] += 1
            return
        tally_refusal(code, err, counts, example, tmp_path)

    check()
    assert counts["accepted"] and counts["groklab"] and counts["argparse"]
    reliability("command line", f"{n[0]} fuzzed `groklab train` command lines (random config flags and aliases, "
                "values by type: plausible, 0, -1, nan, inf, 2^70, '٣', random text; data loaded, training stubbed)",
                f"{counts['accepted']} accepted; {counts['argparse']} usage errors and {counts['groklab']} one-line "
                f"errors naming the field, all exit 2, e.g. {example[0]!r}")


TINY = ["--n_layer", "1", "--n_head", "2", "--n_embd", "16", "--batch_size", "8", "--eval_points_per_decade", "2",
        "--no-progress", "--no-plot", "--max_steps", "3"]


@pytest.mark.parametrize("name, flags, message", [
    ("--seed 2^70 (beyond torch's 64-bit seeds)", ["--operators", "+", "--prime", "7", "--seed", str(2**70)],
     "seed: must fit in 64 bits"),
    ("--prime 2 (4 equations: the val split would be empty)", ["--operators", "+", "--prime", "2"],
     "val split is empty"),
    ("--val_fraction 0", ["--operators", "+", "--prime", "7", "--val_fraction", "0"], "val split is empty"),
    ("--out_dir inside a regular file", ["--operators", "+", "--prime", "7", "--out_dir", "FILE/run"],
     "Not a directory: 'FILE/run'"),
    ("--operators / --prime 10^18+9", ["--operators", "/", "--prime", str(10**18 + 9)], "make over 10,000,000"),
])
def test_named_bad_train_arguments(tmp_path, capsys, reliability, name, flags, message):
    (tmp_path / "file").write_text("not a folder")
    flags = [f.replace("FILE", str(tmp_path / "file")) for f in flags]
    out = [] if any(f.startswith("--out_dir") for f in flags) else ["--out_dir", str(tmp_path / "r")]
    t0 = time.perf_counter()
    code, _, err = run_cli(capsys, ["train", *flags, *out, *TINY])
    line = assert_clean_error(code, err)
    assert message.replace("FILE", str(tmp_path / "file")) in line and time.perf_counter() - t0 < 10, line
    reliability("command line", f"`groklab train {name}`", f"exit 2: {hide(line, tmp_path)}")


def test_a_run_that_diverges_is_reported_not_a_traceback(tmp_path, capsys, reliability):
    code, _, err = run_cli(capsys, ["train", "--operators", "+", "--prime", "7", "--lr", "inf",
                                    "--out_dir", str(tmp_path / "inf"), *TINY])
    assert code == 2 and "learning_rate: must be a finite number" in err and not (tmp_path / "inf").exists()
    code, out, err = run_cli(capsys, ["train", "--operators", "+", "--prime", "7", "--lr", "1e30",
                                      "--out_dir", str(tmp_path / "r"), *TINY])
    assert code == 1 and "Traceback" not in err, err
    failure = json.loads((tmp_path / "r" / "failed.json").read_text())
    assert failure["status"] == "failed" and "failed" in (out + err)
    shown = next(line for line in (out + err).splitlines() if "failed" in line)
    reliability("command line", "`groklab train --lr 1e30` (the run goes non-finite)",
                f"exit 1, the failure printed: {hide(shown, tmp_path)}")


SAMPLE_FLAGS = [
    ("--split", values(["test", "val", "train", "val,test"], ["", "bogus", " test"])),
    ("--json", None),
    ("--device", values(["cpu"], ["gpu", "auto", ""])),
    ("--prompts", values(["1+2=", "3+4=,5+6="], ["1/2=", "x", "", ","])),
    ("--prompt", values(["1+2=", "6+6="], ["٣", "\n", ""])),
    ("--max_new_tokens", values(["0", "1", "3"], ["-1", "abc", "1.5"])),
    ("--temperature", values(["0", "0.5", "1"], ["nan", "-1", "inf", "1e-300", "abc"])),
    ("--top_k", values(["1", "3", "0"], ["-2", "abc"])),
    ("--seed", values(["0", "7", "-1"], [str(2**70), "abc"])),
]


def test_fuzzed_evaluate_and_sample_command_lines(runs, capsys, reliability):
    counts: Counter[str] = Counter()

    @settings(max_examples=40, **FAST)
    @given(st.sampled_from(["evaluate", "sample"]), st.sampled_from(["plus", "plus", "num", "missing"]),
           flag_args(SAMPLE_FLAGS, 3))
    def check(command, name, flags):
        argv = [command, str(runs / name), *flags]
        if command == "sample" and "--prompt" not in flags and "--prompts" not in flags:
            argv += ["--prompts", "1+2="]
        code, _, err = run_cli(capsys, argv)
        if code == 0:
            counts["ran"] += 1
            return
        assert_clean_error(code, err)
        counts["refused"] += 1

    check()
    assert counts["ran"] and counts["refused"]
    reliability("command line", f"{sum(counts.values())} fuzzed `groklab sample`/`evaluate` command lines (typed "
                "flags with plausible and hostile values, a missing run)", f"{counts['ran']} ran, "
                f"{counts['refused']} refused with exit 2 and no traceback")


def test_every_config_field_in_a_spec_rejects_a_wrong_type(tmp_path, reliability):
    """A sweep spec can set any field; a value of the wrong type is a SpecError naming the field (not a crash
    when the run starts)."""
    refused = []
    for name in [f for f in FIELD_NAMES if f and f not in MANAGED_FIELDS and f != "n_layr" and f != "block-size"]:
        (tmp_path / "s.toml").write_text(f"[base]\n{name} = {{ nested = [1] }}\n")
        with pytest.raises(SpecError, match=rf"{field_info(name)[1]}: expected") as err:
            load_spec(tmp_path / "s.toml").expand()
        refused.append(field_info(name)[1])
    reliability("sweep spec", f"an inline table as the value of each of {len(refused)} config fields",
                f"every one refused naming the field, e.g. {hide(str(err.value), tmp_path)}")


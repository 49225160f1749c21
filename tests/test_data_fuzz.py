"""Bad input, fuzzed, for the data layer (groklab.data.equations): split files, manifests and dataset requests
get generated and hostile input. Each input gets a correct result or a clear error (a DataError naming file and
line, or on the command line one `groklab: error:` line and exit status 2), never a traceback or a hang. Every
kind of case adds a row to docs/reliability.md with the outcome observed (counts, and a message actually
printed). The other fuzzed inputs live with the module they fuzz: test_tokenizer.py, test_sweep_spec.py,
test_sample.py, test_loadrun.py and test_cli.py.
"""

from __future__ import annotations

import json
import os
import re
import time
import tracemalloc
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from groklab.data import equations as data_mod
from groklab.data.equations import DatasetSpec, make_splits, write_dataset
from groklab.data.parse import load_dataset_dir, parse_equation, read_equation_file, read_text_file
from groklab.data.ops import OPERATIONS
from groklab.errors import DataError
from groklab.experiments.spec import SpecError, load_spec
from helpers import FAST, OP_SYMBOLS, assert_clean_error, hide, json_values, run_cli


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
    st.integers(0, 200) | st.integers(0, 10**12), st.sampled_from(OP_SYMBOLS), st.integers(0, 200), st.integers(0, 200),
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
    st.text(alphabet=OP_SYMBOLS + ",. adivmulsubx", max_size=6),
    st.lists(st.sampled_from([*OP_SYMBOLS, "add", "div", "pow", "", " "]), max_size=3),
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

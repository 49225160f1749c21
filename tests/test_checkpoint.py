"""Checkpoint files (groklab.store.checkpoint): safetensors with a format tag, JSON metadata and a sha256 of the
tensor data. What goes in comes out bit for bit; a flipped byte in the data, a torn file, a file of the other
format or a foreign one is a CheckpointError naming the path; read_meta reads the header alone."""

from __future__ import annotations

import json
import time
import tracemalloc

import pytest
import torch
from safetensors.torch import save as st_save
from safetensors.torch import save_file

from groklab.errors import CheckpointError
from groklab.store import checkpoint as ckpt


def awkward_tensors() -> dict[str, torch.Tensor]:
    """Every dtype a run could hold, with the values that are easy to get wrong: -0.0, subnormals, extremes,
    NaN and inf, a scalar, an empty tensor and a transposed (non-contiguous) one."""
    f32 = torch.tensor([0.0, -0.0, 1e-45, -3.4e38, float("inf"), float("-inf"), float("nan"), 1 / 3])
    return {
        "f32": f32,
        "f64": torch.tensor([1 / 3, -0.0, 5e-324, 1.7e308], dtype=torch.float64),
        "f16": torch.tensor([65504.0, 6e-8, -0.0], dtype=torch.float16),
        "bf16": torch.tensor([3.0e38, 1e-40, -1.0], dtype=torch.bfloat16),
        "i64": torch.tensor([-(2**63), 2**63 - 1, 0]),
        "i8": torch.tensor([-128, 127], dtype=torch.int8),
        "u8": torch.arange(256, dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 3),
        "transposed": torch.arange(12, dtype=torch.float32).reshape(3, 4).t(),
        "matrix.with.dots": torch.randn(5, 7),
    }


def raw_bytes(t: torch.Tensor) -> bytes:
    return t.contiguous().flatten().view(torch.uint8).numpy().tobytes()


def assert_same_bits(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert (a[k].dtype, a[k].shape) == (b[k].dtype, b[k].shape), k
        assert raw_bytes(a[k]) == raw_bytes(b[k]), k


def data_start(raw: bytes) -> int:
    """Where a safetensors file's tensor buffer begins (after the 8-byte length and the JSON header)."""
    return 8 + int.from_bytes(raw[:8], "little")


META = {"step": 1234, "model": {"n_embd": 16, "name": "d\u00e9j\u00e0 vu \u2028"}, "vocab": {"kind": "char"}}


def test_weights_round_trip_bit_for_bit(tmp_path):
    tensors = awkward_tensors()
    ckpt.save_weights(tmp_path / "w.safetensors", tensors, META)
    loaded, meta = ckpt.load_weights(tmp_path / "w.safetensors")
    assert_same_bits(loaded, tensors) and meta == META
    assert not [p.name for p in tmp_path.iterdir() if p.name != "w.safetensors"]  # no temporary file left
    # _save hashes one serialisation and writes another: the tensor buffer must not depend on anything but the
    # tensors (the JSON header's key order may vary from call to call)
    first = (tmp_path / "w.safetensors").read_bytes()
    ckpt.save_weights(tmp_path / "again.safetensors", tensors, {"other": "metadata"})
    again = (tmp_path / "again.safetensors").read_bytes()
    assert again[data_start(again):] == first[data_start(first):]


def test_metadata_that_is_not_json_is_refused_and_nothing_is_written(tmp_path):
    with pytest.raises(ValueError):
        ckpt.save_weights(tmp_path / "w.safetensors", {"x": torch.ones(2)}, {"loss": float("nan")})
    assert list(tmp_path.iterdir()) == []


def test_state_round_trips_and_restores_the_rng(tmp_path):
    weights, optim = {"wte": torch.randn(4, 3)}, {"exp_avg": torch.randn(4, 3), "exp_avg_sq": torch.rand(4, 3)}
    torch.manual_seed(7)
    ckpt.save_state(tmp_path / "s.safetensors", weights, optim, {"step": 10, "group_size": 2})
    expected = torch.rand(5)  # what the generator gives next, from the saved state
    torch.manual_seed(99)
    w, o, meta = ckpt.load_state(tmp_path / "s.safetensors")
    assert_same_bits(w, weights) and assert_same_bits(o, optim)
    assert meta == {"step": 10, "group_size": 2} and torch.equal(torch.rand(5), expected)
    for bad in ({}, {"step": -1}, {"step": True}, {"step": "10"}, {"step": 1.5}):
        ckpt.save_state(tmp_path / "bad.safetensors", weights, optim, bad)
        with pytest.raises(CheckpointError, match=r"bad.safetensors: no valid step recorded$"):
            ckpt.load_state(tmp_path / "bad.safetensors")


def test_a_flipped_byte_anywhere_in_the_tensor_data_is_refused(tmp_path):
    path = tmp_path / "w.safetensors"
    ckpt.save_weights(path, {"a": torch.randn(6, 5), "b": torch.arange(7)}, {"step": 1})
    good = path.read_bytes()
    start = data_start(good)
    assert len(good) - start == 6 * 5 * 4 + 7 * 8
    for i in range(start, len(good)):
        for bit in (0x01, 0x80):
            raw = bytearray(good)
            raw[i] ^= bit
            path.write_bytes(bytes(raw))
            with pytest.raises(CheckpointError, match="does not match its checksum"):
                ckpt.load_weights(path)
    path.write_bytes(good)
    assert ckpt.load_weights(path)[1] == {"step": 1}


def test_a_torn_file_is_refused_at_every_length(tmp_path):
    path = tmp_path / "s.safetensors"
    ckpt.save_state(path, {"w": torch.randn(3, 2)}, {"m": torch.randn(3, 2)}, {"step": 5})
    good = path.read_bytes()
    messages = set()
    # a crash can leave any prefix of a file written in place: every cut through the length and the header,
    # then every 37th through the data (5 KB of it are the RNG state)
    start = data_start(good)
    for n in [*range(start + 64), *range(start + 64, len(good), 37)]:
        path.write_bytes(good[:n])
        with pytest.raises(CheckpointError) as err:
            ckpt.load_state(path)
        assert str(err.value).startswith(f"{path}: ")
        messages.add(str(err.value).split(": ", 1)[1].split(" (")[0].split(":")[0])
    assert messages == {"not a readable safetensors file", "the tensor data does not match its checksum"}, messages
    path.write_bytes(good + b"\0")  # one byte too many: the data no longer match either
    with pytest.raises(CheckpointError):
        ckpt.load_state(path)


def test_the_format_tag_is_checked(tmp_path):
    ckpt.save_weights(tmp_path / "w.safetensors", {"x": torch.ones(2)}, {"step": 1})
    ckpt.save_state(tmp_path / "s.safetensors", {"x": torch.ones(2)}, {}, {"step": 1})
    with pytest.raises(CheckpointError, match=r"not a groklab checkpoint \(format 'groklab-weights/1', "
                                              r"expected 'groklab-state/1'\)"):
        ckpt.load_state(tmp_path / "w.safetensors")
    with pytest.raises(CheckpointError, match=r"format 'groklab-state/1', expected 'groklab-weights/1'"):
        ckpt.load_weights(tmp_path / "s.safetensors")
    save_file({"x": torch.ones(2)}, str(tmp_path / "plain.safetensors"))  # someone else's safetensors file
    with pytest.raises(CheckpointError, match=r"plain.safetensors: not a groklab checkpoint \(format None"):
        ckpt.load_weights(tmp_path / "plain.safetensors")
    (tmp_path / "damaged.safetensors").write_bytes(
        st_save({"x": torch.ones(2)}, metadata={"format": ckpt.WEIGHTS_FORMAT, "meta": "{not json"}))
    with pytest.raises(CheckpointError, match=r"damaged.safetensors: damaged checkpoint metadata$"):
        ckpt.load_weights(tmp_path / "damaged.safetensors")


def test_a_file_written_before_checksums_still_loads(tmp_path):
    tensors = {"x": torch.randn(3)}
    (tmp_path / "old.safetensors").write_bytes(  # groklab 0.1: format and meta, no sha256
        st_save(tensors, metadata={"format": ckpt.WEIGHTS_FORMAT, "meta": json.dumps({"step": 3})}))
    loaded, meta = ckpt.load_weights(tmp_path / "old.safetensors")
    assert_same_bits(loaded, tensors) and meta == {"step": 3}


def test_read_meta_reads_the_header_alone(tmp_path):
    path = tmp_path / "s.safetensors"
    ckpt.save_state(path, {"w": torch.randn(64, 64)}, {"m": torch.randn(64, 64)}, {"step": 42, "model": {"n": 1}})
    with open(path, "r+b") as f:  # 4 GiB of tensor data (a hole: no disk used); read in full it would not fit
        f.truncate(2**32)
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        meta = ckpt.read_meta(path)
        seconds = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert meta == {"step": 42, "model": {"n": 1}} and seconds < 1 and peak < 2**20, (seconds, peak)
    assert ckpt.read_meta(tmp_path / "missing.safetensors") is None
    assert ckpt.read_meta(tmp_path / "missing" / "s.safetensors") is None
    with pytest.raises(CheckpointError, match=r"format 'groklab-state/1', expected 'groklab-weights/1'"):
        ckpt.read_meta(path, ckpt.WEIGHTS_FORMAT)
    (tmp_path / "liar.safetensors").write_bytes((2**62).to_bytes(8, "little") + b"{}")  # claims a 4 EiB header
    with pytest.raises(CheckpointError, match=r"header length 4611686018427387904 exceeds the file"):
        ckpt.read_meta(tmp_path / "liar.safetensors")
    with pytest.raises(CheckpointError, match=r"cannot read"):
        ckpt.read_meta(tmp_path)  # a folder


def test_all_finite():
    assert ckpt.all_finite({}) and ckpt.all_finite({"w": torch.randn(3, 3), "i": torch.tensor([2**62])})
    assert ckpt.all_finite({"flags": torch.tensor([True]), "empty": torch.zeros(0)})
    for bad in (float("nan"), float("inf"), float("-inf")):
        for dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
            t = torch.zeros(4, dtype=dtype)
            t[2] = bad
            assert not ckpt.all_finite({"ok": torch.ones(2), "bad": t}), (bad, dtype)

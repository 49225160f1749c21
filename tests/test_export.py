"""A trained run opened outside groklab: the plain nn.Module, transformers' GPT2LMHeadModel (in memory and from
the folder `groklab export` writes, offline) and TransformerLens's bridge all give groklab's logits on the
run's own splits; options GPT-2 lacks are refused naming the option; --out is never a folder of someone else's."""

import json
import os

import pytest
import torch

from groklab.cli import main
from groklab.config import ModelConfig
from groklab.data.dataset import load_run_data
from groklab.store.rundir import stored_data_config
from groklab.errors import GroklabError
from groklab.store.export import GroklabGPT, check_exportable, load_module, to_module
from groklab.store.loadrun import load_run
from groklab.training.loop import train_runs
from helpers import tiny_config

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing here may reach the hub
os.environ["TRANSFORMERS_OFFLINE"] = "1"


def _train(path, **changes):
    train_runs([tiny_config(path, max_steps=30, **changes)], log=lambda _: None)
    return load_run(path)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three trained runs: the default (tied head, biases), an untied head without biases and number tokens
    with two layers, and --norm_residual (which only the plain module can express)."""
    root = tmp_path_factory.mktemp("export")
    return {
        "default": _train(root / "default"),
        "untied": _train(root / "untied", tie_embeddings=False, bias=False, tokenizer="number", n_layer=2),
        "norm_residual": _train(root / "normres", norm_residual=True),
    }


def _split_ids(run) -> torch.Tensor:
    """Every example of the run's stored splits as token ids (B, T): what the run was trained and scored on."""
    data = load_run_data(stored_data_config(run.cfg, run.run_dir).data, run.model.cfg)
    return torch.cat([data.scored[s].inputs for s in ("train", "val", "test")])


def _groklab_logits(run, ids):
    with torch.no_grad():
        return run.model(ids[None])[0]


@pytest.mark.parametrize("kind", ["default", "untied", "norm_residual"])
def test_module_logits_equal_groklab_and_hooks_see_the_activations(runs, kind):
    run = runs[kind]
    ids = _split_ids(run)
    module = run.to_module()
    assert isinstance(module, torch.nn.Module) and not module.training
    seen = {}
    module.h[0].attn.pattern.register_forward_hook(lambda m, i, o: seen.update(pattern=o))
    module.h[0].mlp.act.register_forward_hook(lambda m, i, o: seen.update(mlp=o))
    with torch.no_grad():
        logits = module(ids)
    torch.testing.assert_close(logits, _groklab_logits(run, ids), atol=1e-6, rtol=0)
    B, T = ids.shape
    C, H = run.model.cfg.n_embd, run.model.cfg.n_head
    assert seen["pattern"].shape == (B, H, T, T) and seen["mlp"].shape == (B, T, 4 * C)
    torch.testing.assert_close(seen["pattern"].sum(-1), torch.ones(B, H, T))  # rows of a softmax
    assert torch.all(seen["pattern"].triu(1) == 0)  # causal: no position attends to a later one
    # a hook that changes an activation changes the output: hooks act on the real computation
    module.h[0].mlp.act.register_forward_hook(lambda m, i, o: torch.zeros_like(o))
    with torch.no_grad():
        assert not torch.allclose(module(ids), logits)


def test_module_state_dict_round_trips_and_moves_like_any_module(runs, tmp_path):
    run = runs["untied"]
    module = to_module(run)
    names = set(module.state_dict())
    assert {"wte.weight", "wpe.weight", "lm_head.weight", "h.1.attn.c_attn.weight", "ln_f.weight"} <= names
    assert not any(n.endswith(".bias") for n in names)  # trained without biases
    fresh = GroklabGPT(run.model.cfg, run.tokenizer.vocab_size)
    fresh.load_state_dict(module.state_dict())
    ids = _split_ids(run)
    with torch.no_grad():
        torch.testing.assert_close(fresh.eval().double()(ids), module.double()(ids), atol=1e-12, rtol=0)
    assert main(["export", str(run.run_dir), "--format", "module", "--out", str(tmp_path / "m")]) == 0
    from groklab.files import FILE_MODE

    # every file as the umask gives it, as in a run folder (module.safetensors was 0600, from safetensors)
    assert {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "m").iterdir()} == \
        {p.name: FILE_MODE for p in (tmp_path / "m").iterdir()}
    loaded, tok = load_module(tmp_path / "m")
    assert tok == run.tokenizer
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids), _groklab_logits(run, ids), atol=1e-6, rtol=0)


def test_options_gpt2_lacks_are_refused_naming_the_option():
    check_exportable(ModelConfig(norm_residual=True), "module")  # the plain module has it
    with pytest.raises(GroklabError, match=r"norm_residual=True.*--format module"):
        check_exportable(ModelConfig(norm_residual=True), "hf")
    check_exportable(ModelConfig(tie_embeddings=False, bias=False, dropout=0.1, init="torch"), "hf")


def test_norm_residual_run_is_refused_by_the_hf_export_before_anything_is_written(runs, tmp_path, capsys):
    pytest.importorskip("transformers")
    out = tmp_path / "hf"
    assert main(["export", str(runs["norm_residual"].run_dir), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("groklab: error: norm_residual=True") and "\n" not in err
    assert not out.exists()


def test_out_folder_of_someone_else_is_refused_and_an_earlier_export_is_replaced(runs, tmp_path, capsys):
    run = runs["default"]
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("mine")
    assert main(["export", str(run.run_dir), "--format", "module", "--out", str(theirs)]) == 2
    assert "did not export (notes.txt)" in capsys.readouterr().err
    assert sorted(p.name for p in theirs.iterdir()) == ["notes.txt"]
    assert main(["export", str(run.run_dir), "--format", "module", "--out", str(run.run_dir)]) == 2  # a run folder
    ours = tmp_path / "ours"
    assert main(["export", str(run.run_dir), "--format", "module", "--out", str(ours)]) == 0
    (ours / "README.md").write_text("the user's own note beside the export")
    assert main(["export", str(runs["untied"].run_dir), "--format", "module", "--out", str(ours)]) == 0
    assert (ours / "README.md").read_text().startswith("the user's")
    assert json.loads((ours / "groklab_export.json").read_text())["source"] == str(runs["untied"].run_dir)


def test_hf_logits_equal_groklab_in_memory_and_loaded_offline_from_the_export(runs, tmp_path):
    transformers = pytest.importorskip("transformers")
    for kind in ("default", "untied"):
        run = runs[kind]
        ids = _split_ids(run)
        expected = _groklab_logits(run, ids)
        model, tokenizer = run.to_hf()
        with torch.no_grad():
            torch.testing.assert_close(model(ids).logits, expected, atol=1e-5, rtol=0)
        out = tmp_path / kind
        assert main(["export", str(run.run_dir), "--format", "hf", "--out", str(out)]) == 0
        loaded = transformers.GPT2LMHeadModel.from_pretrained(out, local_files_only=True).eval()
        tok = transformers.AutoTokenizer.from_pretrained(out, local_files_only=True)
        with torch.no_grad():
            torch.testing.assert_close(loaded(ids).logits, expected, atol=1e-5, rtol=0)
        # the tokenizer is the run's: the same ids for the run's own text, and back
        text = (run.run_dir / "data" / "val.txt").read_text().splitlines()[0] + "\n"
        assert tok(text).input_ids == run.tokenizer.encode(text) == tokenizer(text).input_ids
        assert tok.decode(run.tokenizer.encode(text)) == text
        assert loaded.config.tie_word_embeddings == (kind == "default")


def test_hf_tokenizer_sends_unknown_text_outside_the_model_vocabulary(runs):
    pytest.importorskip("transformers")
    run = runs["default"]
    model, tok = run.to_hf()
    ids = tok("1+x=").input_ids
    assert ids[2] == run.tokenizer.vocab_size  # <unk>: the model has no such row, so it refuses rather than guess
    with pytest.raises(IndexError):
        model(torch.tensor([ids]))
    assert tok.eos_token == "\n" and tok.eos_token_id == run.tokenizer.encode("\n")[0]


def test_transformer_lens_bridge_run_with_cache_equals_groklab(runs):
    pytest.importorskip("transformer_lens")
    from groklab.store.export import to_lens

    run = runs["untied"]
    ids = _split_ids(run)
    bridge = to_lens(run)
    logits, cache = bridge.run_with_cache(ids)
    torch.testing.assert_close(logits, _groklab_logits(run, ids), atol=1e-5, rtol=0)
    B, T = ids.shape
    assert cache["blocks.1.attn.hook_pattern"].shape == (B, run.model.cfg.n_head, T, T)
    assert cache["blocks.0.hook_resid_post"].shape == (B, T, run.model.cfg.n_embd)
    # strings go through the run's tokenizer, without a BOS token in front (groklab's prompts have none)
    prompt = (run.run_dir / "data" / "train.txt").read_text().splitlines()[0].split("=")[0] + "="
    assert bridge.to_tokens(prompt).tolist() == [run.tokenizer.encode(prompt)]


def test_missing_transformers_is_one_line_naming_the_extra(runs, tmp_path, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "transformers", None)  # import fails as if not installed
    out = tmp_path / "hf"
    assert main(["export", str(runs["default"].run_dir), "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip() == ("groklab: error: the Hugging Face export needs the transformers "
                                               "package: pip install 'groklab[hf]'")
    assert not out.exists()
    with pytest.raises(GroklabError, match=r"groklab\[hf\]"):
        runs["default"].to_hf()


def _interrupt_before(monkeypatch, name: str) -> None:
    """A Ctrl-C landing just before groklab.store.export calls `name` (as /tmp/advrun/tools/sig_export.py)."""
    import signal

    import groklab.store.export as ex

    original = getattr(ex, name)

    def patched(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        return original(*args, **kwargs)

    monkeypatch.setattr(ex, name, patched)


def test_an_interrupted_export_leaves_the_earlier_one_and_the_same_command_redoes_it(tiny_runs, tmp_path, capsys,
                                                                                    monkeypatch, reliability):
    """Interrupted between the weights and groklab_export.json, an export could not be redone ('already holds
    files groklab did not export'), and one over an earlier export destroyed it (its mark was deleted first)."""
    out = tmp_path / "x"
    argv = ["export", str(tiny_runs / "num"), "--format", "module", "--out", str(out)]
    with monkeypatch.context() as m:
        _interrupt_before(m, "write_json")
        assert main(argv) == 130
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == []
    assert main(argv) == 0
    (out / "NOTES.txt").write_text("mine")
    good = {p.name: p.read_bytes() for p in out.iterdir()}
    with monkeypatch.context() as m:
        _interrupt_before(m, "write_json")
        assert main(argv) == 130
    assert {p.name: p.read_bytes() for p in out.iterdir()} == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x"]
    with monkeypatch.context() as m:  # a signal during the swap waits for it: the new export is there, whole
        _interrupt_before(m, "_swap_in")
        assert main(argv) == 130
    load_module(out)
    assert main(argv) == 0 and (out / "NOTES.txt").read_text() == "mine"
    load_module(out)
    assert "Traceback" not in capsys.readouterr().err
    reliability("export", "Ctrl-C before groklab_export.json, into a new folder and over an earlier export",
                "the earlier export (or nothing) intact; the same command redoes it")

"""Configuration (groklab.config), the single source of CLI flags, config.json and sweep-spec fields: every field
documented and given a role, every flat name and alias resolving to exactly one field, values type-checked and
validated with messages that name the field, config dicts that round-trip and refuse fields they do not know,
and `differences` by role (what a resume refuses and what it records)."""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from typing import Literal, get_args, get_origin, get_type_hints

import pytest

from groklab.config import (
    ROLES,
    SECTION_CLASSES,
    ConfigError,
    ModelConfig,
    OptimConfig,
    RunConfig,
    TrainConfig,
    differences,
    field_info,
    field_roles,
    flat_fields,
)
from groklab.errors import GroklabError

FIELDS = [(section, f) for section, cls in SECTION_CLASSES.items() for f in dataclasses.fields(cls)]
HINTS = {section: get_type_hints(cls) for section, cls in SECTION_CLASSES.items()}
FIELD_NAMES = {f.name for _, f in FIELDS}


def value_types(section: str, name: str) -> list:
    """The types a field's value may have, None left out (`int | None` -> [int])."""
    tp = HINTS[section][name]
    if get_origin(tp) in (typing.Union, types.UnionType):
        return [a for a in get_args(tp) if a is not type(None)]
    return [tp]


def test_every_field_has_help_text_and_a_role():
    for section, f in FIELDS:
        assert isinstance(f.metadata.get("help"), str) and len(f.metadata["help"].strip()) >= 10, (section, f.name)
        assert f.metadata.get("role") in ROLES, (section, f.name)
        assert all(isinstance(a, str) and a and not a.startswith("-") for a in f.metadata.get("aliases", ())), f.name
    roles = field_roles()
    assert set(roles) == set(flat_fields(RunConfig())) == FIELD_NAMES  # flat names are unique across sections
    assert set(roles.values()) == set(ROLES)  # every role is some field's


def test_flat_names_and_aliases_resolve_to_exactly_one_field():
    names = [name for _, f in FIELDS for name in (f.name, *f.metadata.get("aliases", ()))]
    assert len(names) == len(set(names)), "an alias that names another field would silently set the wrong one"
    for section, f in FIELDS:
        for name in (f.name, *f.metadata.get("aliases", ())):
            expected = (section, f.name, HINTS[section][f.name])
            assert field_info(name) == expected and field_info(name.replace("_", "-")) == expected, name
    cfg = RunConfig().replace(op="+", p=113, lr=0.01, wd=1.0, beta_1=0.8, max_iters=7, n_layer=3,
                              **{"eval-points-per-decade": 4})
    assert (cfg.data.operators, cfg.data.prime, cfg.model.n_layer) == ("+", 113, 3)
    assert (cfg.optim.learning_rate, cfg.optim.weight_decay, cfg.optim.beta1) == (0.01, 1.0, 0.8)
    assert (cfg.train.max_steps, cfg.train.eval_points_per_decade) == (7, 4)
    with pytest.raises(ConfigError, match=r"^n_layr: no such config field \(did you mean 'n_layer'\?\)$"):
        field_info("n_layr")
    with pytest.raises(ConfigError, match=r"^zzzzzz: no such config field$"):
        RunConfig().replace(zzzzzz=1)


def test_replace_type_checks_every_field_and_names_it():
    cfg = RunConfig()
    for section, f in FIELDS:
        with pytest.raises(ConfigError) as err:
            cfg.replace(**{f.name: []})  # a list is no field's type
        assert str(err.value).startswith(f"{f.name}: expected ") and str(err.value).endswith("got []"), str(err.value)
    cases = [
        ({"n_layer": "3"}, "n_layer: expected int, got '3'"),  # a sweep spec's "3" is not an integer
        ({"n_layer": True}, "n_layer: expected int, got True"),
        ({"n_layer": 2.0}, "n_layer: expected int, got 2.0"),
        ({"progress": 1}, "progress: expected bool, got 1"),
        ({"lr": "1e-3"}, "learning_rate: expected float, got '1e-3'"),  # an alias is reported by its field
        ({"out_dir": 3}, "out_dir: expected str, got 3"),
        ({"n_layer": None}, "n_layer: a value is required"),
    ]
    for changes, message in cases:
        with pytest.raises(ConfigError) as err:
            cfg.replace(**changes)
        assert str(err.value) == message
    with pytest.raises(ConfigError, match=r"^tokenizer: expected one of 'char', 'number'"):
        cfg.replace(tokenizer="bpe")
    changed = cfg.replace(learning_rate=1, prime=None)
    assert type(changed.optim.learning_rate) is float and changed.optim.learning_rate == 1.0  # an int, kept a float
    assert changed.data.prime is None and cfg.replace(seed=1) is not cfg and cfg.train.seed == 42  # cfg unchanged
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.train.seed = 1  # type: ignore[misc]


def test_replace_validates_each_section_as_a_whole():
    cfg = RunConfig()  # n_embd 128, n_head 4
    with pytest.raises(ConfigError, match=r"^n_embd: 30 is not divisible by n_head=4$"):
        cfg.replace(n_embd=30)
    both = cfg.replace(n_embd=30, n_head=5)  # one change of the section, checked once
    assert (both.model.n_embd, both.model.n_head) == (30, 5)
    with pytest.raises(ConfigError, match=r"^prime: --operators and --prime go together$"):
        cfg.replace(operators="+")
    assert cfg.replace(operators="+", p=7).data.prime == 7


def bad_values(tp) -> list:
    """Values to try for a field of this type: out of range, empty, huge, not finite."""
    if get_origin(tp) is Literal:
        return ["bogus"]
    if tp is int:
        return [-1, 0, 2**70]
    if tp is float:
        return [-1.0, 0.0, 2.0, math.inf, -math.inf, math.nan]
    if tp is str:
        return ["", " ", "a/b"]
    return []  # bool: both values are valid


def test_a_refused_value_names_the_field():
    """Whatever a single field is changed to, a refusal is a ConfigError that starts with the name of the field
    it is about and names the changed field (a rule between two fields names both: "n_embd: 128 is not divisible
    by n_head=...")."""
    cfg = RunConfig()
    refused: dict[str, list] = {}
    for section, f in FIELDS:
        for tp in value_types(section, f.name):
            for value in bad_values(tp):
                try:
                    cfg.replace(**{f.name: value})
                except ConfigError as exc:
                    message = str(exc)
                    assert message.split(": ", 1)[0] in FIELD_NAMES and f.name in message, (f.name, value, message)
                    refused.setdefault(f.name, []).append(value)
    for section, f in FIELDS:
        types_ = value_types(section, f.name)
        if float in types_:  # finite floats: inf would pass a bound like lr > 0 and break config.json
            for value in (math.inf, -math.inf, math.nan):
                with pytest.raises(ConfigError) as err:
                    cfg.replace(**{f.name: value})
                assert str(err.value) == f"{f.name}: must be a finite number, got {value}"
        if any(get_origin(t) is Literal for t in types_):
            assert "bogus" in refused.get(f.name, []), f.name
    assert issubclass(ConfigError, GroklabError)  # so the CLI prints it as one `groklab: error:` line, exit 2


def test_constructing_a_section_directly_validates_it_too():
    with pytest.raises(ConfigError, match=r"^n_layer: must be at least 1, got 0$"):
        ModelConfig(n_layer=0)
    with pytest.raises(ConfigError, match=r"^learning_rate: must be a finite number, got inf$"):
        OptimConfig(learning_rate=math.inf)
    with pytest.raises(ConfigError, match=r"^grok_threshold: must be a finite number, got nan$"):
        TrainConfig(grok_threshold=math.nan)
    with pytest.raises(ConfigError, match=r"^seed: must fit in 64 bits"):
        TrainConfig(seed=2**63)


@pytest.mark.parametrize("section, field, value", [("train", "compile", "banana"), ("train", "compile", "auto"),
                                                    ("train", "cuda_graph", 1), ("optim", "learning_rate", "1e-3"),
                                                    ("train", "max_steps", 10.5), ("data", "prime", True)])
def test_from_dict_checks_each_value_as_a_flag_would(section, field, value):
    """A config.json or sweep.json value of the wrong type is refused naming the field, not carried along as
    what ran ('compile': 'banana' was read back as the run's setting)."""
    d = RunConfig().to_dict()
    d[section][field] = value
    with pytest.raises(ConfigError, match=f"{field}: expected"):
        RunConfig.from_dict(d)


def test_from_dict_refuses_a_section_that_is_no_object_and_a_number_no_float_can_hold():
    with pytest.raises(ConfigError, match="data: expected an object of fields, got list"):
        RunConfig.from_dict({"data": []})
    with pytest.raises(ConfigError, match=r"learning_rate: 10{19}\.\.\. is too large for a float"):
        RunConfig.from_dict({"optim": {"learning_rate": 10**400}})


def test_from_dict_round_trips_and_refuses_unknown_fields():
    cfg = RunConfig().replace(op="/", p=97, tokenizer="number", n_layer=1, lr=3e-3, min_lr=1e-4, seed=7,
                              wandb_mode="offline", out_dir="out/x")
    assert RunConfig.from_dict(cfg.to_dict()) == cfg
    assert RunConfig.from_dict(json.loads(cfg.to_json())) == cfg  # config.json as written (strict JSON: no NaN)
    json.loads(cfg.to_json(), parse_constant=lambda c: pytest.fail(f"config.json holds {c}"))
    assert RunConfig.from_dict({}) == RunConfig()
    partial = RunConfig.from_dict({"model": {"n_layer": 3}})
    assert partial.model.n_layer == 3 and partial.replace(n_layer=2) == RunConfig()  # missing fields: defaults
    with pytest.raises(ConfigError, match=r"^model: unknown field\(s\) n_heads, n_layers$"):
        RunConfig.from_dict({"model": {"n_layers": 3, "n_heads": 2}})
    with pytest.raises(ConfigError, match=r"^train: unknown field\(s\) max_iters$"):  # an alias is no field name
        RunConfig.from_dict({"train": {"max_iters": 3}})
    with pytest.raises(ConfigError, match=r"^learning_rate: must be > 0, got -1.0$"):  # values are validated
        RunConfig.from_dict({"optim": {"learning_rate": -1}})


def test_differences_by_role():
    old = RunConfig()
    new = old.replace(operators="+", prime=7, learning_rate=0.01, seed=1, device="cpu", out_dir="elsewhere",
                      progress=False)
    src = [("operators", None, "+"), ("prime", None, 7)]
    what = [("learning_rate", 1e-3, 0.01), ("seed", 42, 1)]
    how = [("out_dir", "out/run", "elsewhere"), ("device", "auto", "cpu"), ("progress", True, False)]
    assert differences(old, new) == src + what  # what a resume compares by default, in declaration order
    assert differences(old, new, roles=("is",)) == what
    assert differences(old, new, roles=("source",)) == src
    assert differences(old, new, roles=("how",)) == how  # what meta.json records on a resume
    lr, seed = what
    out_dir, device, progress = how
    assert differences(old, new, roles=ROLES) == [*src, lr, out_dir, seed, device, progress]  # sections, then fields
    assert all(differences(new, new, roles=(role,)) == [] for role in ROLES)
    roles = field_roles()
    assert {name for name, *_ in src} <= {k for k, r in roles.items() if r == "source"}
    assert roles["seed"] == roles["learning_rate"] == "is" and roles["device"] == roles["out_dir"] == "how"

"""Fuzz the configuration edge: ``--set KEY=VALUE`` (retdm.cli.resolve_config → retdm.config) and
``params.yaml`` (pipelines.params.load_params, then train_config/sweep_config for what it lists),
from the real params.yaml with a node replaced, a key dropped or its bytes edited."""

import dataclasses
import tempfile
import typing
from pathlib import Path

import click
import yaml
from fuzzing import budget, expect_clean_error, mutated
from hypothesis import given
from hypothesis import strategies as st

from pipelines.params import load_params, sweep_config, train_config
from retdm.cli import resolve_config
from retdm.config import TrainConfig
from retdm.errors import ConfigError
from retdm.registry import UnknownNameError

REPO = Path(__file__).resolve().parents[2]


def _config_keys(cls=TrainConfig, prefix=""):
    """Every dotted key of the config tree, sections too."""
    out = []
    for name, tp in typing.get_type_hints(cls).items():
        out.append(prefix + name)
        if dataclasses.is_dataclass(tp):
            out += _config_keys(tp, f"{prefix}{name}.")
    return out


def _named(keys):
    """How a message names a key: quoted (``'loss.k'``; as ``repr`` writes it, so a control character
    in it is escaped and the message stays one line) or leading a colon (``data: expected …``)."""
    return [form for k in keys for form in (f"'{k}'", repr(k), f"{k}:")]


CONFIG_KEYS = _config_keys()
scalars = st.none() | st.booleans() | st.integers(-3, 300) | st.floats() | st.text(max_size=5)
yaml_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=2) | st.dictionaries(
    st.one_of(st.text(max_size=4), st.integers(0, 3), st.none()), inner, max_size=2), max_leaves=4)
value_texts = st.one_of(
    yaml_values.map(lambda v: yaml.safe_dump(v, default_flow_style=True).removesuffix("\n...\n").strip()),
    st.sampled_from(("[", "{a: 1", "'", '"x', "- a\n- b", "a: b: c", "&a [*a]", "!!python/object:os.system x",
                     "*undefined", "0x10", "1_000", ".nan", ".inf", "2024-01-01", "~", "yes", "1e3", "%", "@x", "\t")),
    st.text(max_size=6))
keys = st.one_of(st.sampled_from(CONFIG_KEYS), st.sampled_from(CONFIG_KEYS).map(lambda k: k + ".x"),
                 st.text(st.sampled_from("ab.=_ "), max_size=6), st.sampled_from(("", ".", "data.", ".seed", " seed")))


@budget(100, "`--set` overrides")
@given(st.sampled_from(("cpu", "paper", "lite", "features", "nope", "")),
       st.lists(st.tuples(keys, st.sampled_from(("=", "=", "")), value_texts), max_size=3),
       st.none() | st.integers(-2, 10))
def test_set_overrides(profile, pairs, seed):
    overrides = tuple(f"{k}{sep}{v}" for k, sep, v in pairs)
    try:
        cfg = resolve_config(profile, overrides, seed)
    except click.BadParameter as err:  # a malformed KEY=VALUE: the CLI's usage error (exit status 2)
        expect_clean_error(err, [repr(o) for o in overrides], Path("/nonexistent"), {})
        return
    except ConfigError as err:
        keys = [o.partition("=")[0].strip() for o in overrides]
        expect_clean_error(err, _named(keys + CONFIG_KEYS) + [repr(profile)], Path("/nonexistent"), {})
        return
    assert isinstance(cfg, TrainConfig) and cfg.profile == profile
    if seed is not None:
        assert cfg.seed == seed


REAL_PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())


def _paths(tree, prefix=()):
    yield prefix
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            yield from _paths(v, (*prefix, i))


@st.composite
def params_texts(draw):
    """params.yaml text: the real file with 1-2 nodes replaced by YAML values or keys dropped, or its bytes edited."""
    if draw(st.integers(0, 3)) == 0:
        return draw(mutated((REPO / "params.yaml").read_bytes()))
    tree = yaml.safe_load(yaml.safe_dump(REAL_PARAMS))
    for _ in range(draw(st.integers(1, 2))):
        path = draw(st.sampled_from(list(_paths(tree))))
        if not path:
            tree = draw(yaml_values)
            continue
        parent = tree
        for step in path[:-1]:
            parent = parent[step]
        if isinstance(parent, dict) and draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(yaml_values)
        if not isinstance(tree, dict):
            break
    return yaml.safe_dump(tree).encode()


def _keys_of(text: bytes) -> list[str]:
    """The keys of a params text, dotted and bare, for checking that a message names one."""
    try:
        tree = yaml.safe_load(text)
    except yaml.YAMLError:
        return []
    return [k for p in _paths(tree) if p for k in (".".join(map(str, p)), str(p[-1]))]


@budget(100, "`params.yaml`")
@given(params_texts())
def test_params_yaml(text):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "params.yaml"
        path.write_bytes(text)
        try:
            params = load_params(path)
            for dataset in params["datasets"] or {}:
                for method in params["methods"]:
                    train_config(params, method, dataset)
            for dataset in (params["sweep"] or {}).get("datasets") or []:
                sweep_config(params, dataset)
        except (ConfigError, UnknownNameError) as err:
            names = [path, "params.yaml", *_named(_keys_of(text) + CONFIG_KEYS)]
            expect_clean_error(err, names, Path(tmp) / "none", {})

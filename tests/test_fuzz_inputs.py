"""Property-based fuzzing (Hypothesis) of every reader of user files: target profiles, recipes and rungs, eval and
calibration text, and bundle manifests. Random and mutated inputs only ever give the reader's typed error or a
result, never another exception. Example counts: the "default" profile in `make test`, "ci" in the slow suite
(tests/conftest.py)."""

import json
import shutil
import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeqwen.bundle.manifest import manifest_plan, read_manifest
from edgeqwen.bundle.verify import device_check_note, parity_note, verify_bundle
from edgeqwen.drift.evaldata import EvalDataError, load_eval_data
from edgeqwen.errors import BundleError, ProfileError, RecipeError
from edgeqwen.recipes import Recipe, load_recipe
from edgeqwen.rungs import Rung, load_rung
from edgeqwen.schema import from_dict
from edgeqwen.targets import TargetProfile, load_target, load_target_file

GOLDEN = Path(__file__).parent / "golden"
pytestmark = pytest.mark.fuzz

# TOML's values (it has no null), nan and inf and 64-bit extremes included.
toml_scalars = st.one_of(
    st.integers(min_value=-2**63, max_value=2**63 - 1), st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(), st.text(max_size=20), st.sampled_from([0, -1, 1, 256, 4096, 10**12, 0.5, 1.0, "", "int4", "cpu"]),
)
toml_values = st.recursive(toml_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)), max_leaves=8)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)),
    max_leaves=10)


def key_paths(data, prefix=()):
    for key, value in data.items():
        yield (*prefix, key)
        if isinstance(value, dict):
            yield from key_paths(value, (*prefix, key))


@st.composite
def mutated(draw, original: dict, known_keys: tuple[str, ...] = ()):
    """`original` with a few keys replaced by random values, deleted, or joined by unknown ones (or by keys the
    reader knows, `known_keys`, that this example lacks)."""
    data = json.loads(json.dumps(original))  # a deep copy (TOML data is JSON data, dates aside)
    for _ in range(draw(st.integers(1, 3))):
        paths = list(key_paths(data))
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = data
        for key in path[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace":
            parent[path[-1]] = draw(toml_values)
        elif action == "delete":
            del parent[path[-1]]
        else:
            parent[draw(st.one_of(st.text(min_size=1, max_size=12), *map(st.just, known_keys)))] = draw(toml_values)
    return data


TARGET = tomllib.loads(load_target("raspberry-pi-5").path.read_text())
NPU_TARGET = tomllib.loads(load_target("intel-core-ultra-npu").path.read_text())
RECIPE = tomllib.loads(load_recipe("qwen3").path.read_text())
RUNG = tomllib.loads(load_rung("nncf-int4-awq").path.read_text())


# Each schema with the files it is fuzzed from, and the error it may raise.
SCHEMAS = {
    "target": (TargetProfile, ProfileError, (TARGET, NPU_TARGET)),
    "recipe": (Recipe, RecipeError, (RECIPE,)),
    "rung": (Rung, RecipeError, (RUNG,)),
}


@pytest.mark.parametrize("kind", SCHEMAS)
@given(data=st.data())
def test_profiles_recipes_and_rungs(kind, data):
    schema, error, originals = SCHEMAS[kind]
    value = data.draw(st.one_of(*(mutated(original) for original in originals), toml_values))
    try:
        from_dict(schema, value, path=Path("fuzz.toml"), error_cls=error)
    except error:
        pass


TARGET_TEXT = load_target("raspberry-pi-5").path.read_bytes()


@given(position=st.integers(0, len(TARGET_TEXT)), cut=st.integers(0, 40), insert=st.binary(max_size=20))
def test_target_files_with_damaged_bytes(tmp_path_factory, position, cut, insert):
    path = tmp_path_factory.mktemp("fuzz") / "raspberry-pi-5.toml"
    path.write_bytes(TARGET_TEXT[:position] + insert + TARGET_TEXT[position + cut:])
    try:
        load_target_file(path)
    except ProfileError:
        pass


@given(suffix=st.sampled_from([".txt", ".jsonl"]), content=st.one_of(
    st.binary(max_size=200),
    st.lists(json_values, max_size=5).map(lambda rows: "\n".join(json.dumps(r) for r in rows).encode()),
    st.lists(st.fixed_dictionaries({"messages": st.lists(st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "assistant", "system", "tool", "robot", 5]),
         "content": st.one_of(st.text(max_size=30), json_values)}), max_size=3)}), max_size=3)
    .map(lambda rows: "\n".join(json.dumps(r) for r in rows).encode()),
))
def test_eval_and_calibration_text(tmp_path_factory, suffix, content):
    path = tmp_path_factory.mktemp("fuzz") / f"data{suffix}"
    path.write_bytes(content)
    try:
        data = load_eval_data(path)
    except EvalDataError:
        return
    for record in data.records:  # what the drift stage relies on
        assert isinstance(record.get("text"), str) or all(
            isinstance(m["content"], str) and isinstance(m["role"], str) for m in record["messages"])


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    copy = tmp_path_factory.mktemp("fuzz") / "bundle"
    shutil.copytree(GOLDEN / "bundle-v1", copy)
    return copy


MANIFEST = json.loads((GOLDEN / "bundle-v1" / "manifest.json").read_text())


MANIFEST_KEYS = ("device_check", "parity", "files", "plan", "format_version", "drift", "runtime", "quality")


@given(st.one_of(mutated(MANIFEST, MANIFEST_KEYS), json_values, st.binary(max_size=100)))
def test_manifests(bundle, manifest):
    raw = manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode()
    (bundle / "manifest.json").write_bytes(raw)
    try:
        problems = verify_bundle(bundle)
        assert all(isinstance(p, str) for p in problems)
        loaded = read_manifest(bundle)
        device_check_note(loaded)
        parity_note(loaded)
        manifest_plan(bundle, loaded)
    except BundleError:
        pass

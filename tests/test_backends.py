"""The Backend registry: every registered engine is planned, built, run and read back through one interface.

The matrix is the registry and the target profiles on disk: an engine registered without a target (so
without a test), or a backend whose bundle breaks the contract, fails here.
"""

import pytest

from edgeqwen.backends import DECODER, backend_for, folder_engine, registry
from edgeqwen.bundle.manifest import manifest_plan, read_manifest
from edgeqwen.bundle.worker import BundleWorker
from edgeqwen.errors import ProfileError
from edgeqwen.models import resolve_model
from edgeqwen.plan import BuildPlan, resolve_plan
from edgeqwen.recipes import recipe_for_model_type
from edgeqwen.targets import load_all_targets, load_target_file

ENGINES = list(registry())
TARGETS = load_all_targets()


def test_every_registered_engine_has_a_target_and_every_target_a_registered_engine():
    by_engine = {}
    for target in TARGETS:
        by_engine.setdefault(target.runtime.engine, []).append(target.name)
    assert set(by_engine) <= set(ENGINES)
    missing = [engine for engine in ENGINES if engine not in by_engine]
    assert not missing, f"registered engines with no target profile, so no test: {missing}"


def test_a_target_naming_an_unregistered_engine_is_refused_with_the_registered_ones(tmp_path):
    source = next(t for t in TARGETS if t.name == "raspberry-pi-5").path.read_text()
    path = tmp_path / "raspberry-pi-5.toml"
    path.write_text(source.replace('engine = "onnxruntime-genai"', 'engine = "tensorrt"'))
    with pytest.raises(ProfileError, match=r"engine = 'tensorrt': expected one of 'onnxruntime-genai', 'openvino'"):
        load_target_file(path)


@pytest.mark.parametrize("family", ("qwen2", "qwen3"))
@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.name)
def test_every_plan_round_trips_through_json_into_its_typed_object(tiny_models, target, family):
    plan = resolve_plan(resolve_model(str(tiny_models[family])), target, recipe_for_model_type(family))
    again = BuildPlan.from_json(plan.to_json())
    assert again == plan and again.hash() == plan.hash()
    assert isinstance(again.engine_options, backend_for(plan.engine).options_type)


@pytest.fixture(scope="module", params=ENGINES)
def engine_bundle(request, tiny_models, tmp_path_factory):
    """A tiny Qwen3 built for the first target of each registered engine (the same request as the engines'
    own end-to-end tests make, so whichever runs second takes it from the session's build cache)."""
    from tests.conftest import run_cli

    engine = request.param
    target = next(t for t in TARGETS if t.runtime.engine == engine)
    bundle = tmp_path_factory.mktemp("engines") / engine
    result = run_cli("build", "--model", tiny_models["qwen3"], "--target", target.name, "--out", bundle,
                     "--eval-tokens", "256")
    assert result.code == 0, result.err
    return engine, bundle


def test_the_bundle_agrees_with_its_backend(engine_bundle):
    engine, bundle = engine_bundle
    backend, manifest = backend_for(engine), read_manifest(bundle)
    assert manifest["runtime"]["engine"] == engine == folder_engine(bundle)
    assert [name for name, other in registry().items() if other.recognizes(bundle)] == [engine]  # without a manifest too
    roles = backend.model_files(bundle)
    assert DECODER in roles and {name for names in roles.values() for name in names} <= set(manifest["files"])
    assert backend.bytes_per_token(bundle) == manifest["speed"]["bytes_per_token"] > 0
    plan = manifest_plan(bundle, manifest)
    assert isinstance(plan.engine_options, backend.options_type) and plan.hash() == manifest["plan_hash"]
    assert manifest["runtime"]["requirement"] == backend.runtime_requirement(plan)
    assert backend.estimate_memory(plan).to_dict() == manifest["memory_estimate"]


def test_no_file_names_a_folder_of_the_machine_that_built_it(engine_bundle, tiny_models):
    """Bundles are reproducible and portable: no scratch folder or source path in any file."""
    _, bundle = engine_bundle
    machine_paths = (b"edgeqwen-work-", str(tiny_models["qwen3"]).encode(), b"/tmp/")
    for path in (p for p in bundle.rglob("*") if p.is_file()):
        data = path.read_bytes()
        assert not [p for p in machine_paths if p in data], path.name


def test_the_worker_drives_every_engine_through_the_same_interface(engine_bundle):
    engine, bundle = engine_bundle
    messages = [{"role": "user", "content": "What is a list?"}]
    with BundleWorker(bundle) as worker:
        assert worker.info["engine"] == engine
        # On the CPU. A Qualcomm NPU pipeline takes its prompt once, in whole windows: no append, no rewind.
        windowed = engine == "onnxruntime-qnn"
        assert {"generate", "logits"} | ({"append", "rewind"} if not windowed else set()) \
            <= set(worker.info["capabilities"])
        _, ids = worker.render(messages)
        greedy = worker.generate(ids, 6, ignore_eos=True)["tokens"]
        logits, _ = worker.logits(ids + greedy)
    assert len(greedy) == 6 and logits.shape == (len(ids) + 5, 151936)
    # Generation and teacher forcing are one model: each greedy token is the argmax of the row before it.
    assert [int(row.argmax()) for row in logits[len(ids) - 1:]] == greedy

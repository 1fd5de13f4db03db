"""TensorRT configs, profiles and trtexec command lines; engine builds where TensorRT and a GPU exist."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from triton_course import ConfigError, artifact, tensorrt
from triton_course.errors import suggest_fix
from triton_course.model_config import ModelConfig, ModelInstanceGroup, build_config, parse_config, tensor, to_text

UNAVAILABLE = tensorrt.unavailable_reason()


@pytest.fixture(scope="module")
def base() -> ModelConfig:
    return artifact.reference_config()


def _config(max_batch_size: int, inputs: dict[str, list[int]]) -> ModelConfig:
    return build_config("m", platform="onnxruntime_onnx", max_batch_size=max_batch_size,
                        inputs=[tensor(name, "TYPE_FP32", dims) for name, dims in inputs.items()],
                        outputs=[tensor("out", "TYPE_FP32", [10])])


def _shapes(text: str) -> dict[str, tuple[int, ...]]:
    """'a:1x3,b:2x4' -> {'a': (1, 3), 'b': (2, 4)}: how trtexec reads a shapes flag."""
    return {name: tuple(int(d) for d in dims.split("x"))
            for name, dims in (part.rsplit(":", 1) for part in text.split(","))}


def _flag(command: list[str], name: str) -> str:
    values = [part.split("=", 1)[1] for part in command if part.startswith(f"--{name}=")]
    assert len(values) == 1, f"--{name} appears {len(values)} times in {command}"
    return values[0]


# --- onnxruntime's TensorRT accelerator -----------------------------------------------------------

def test_ort_tensorrt_config_passes_the_schema_and_says_what_the_backend_reads(base):
    config = tensorrt.ort_tensorrt_config(base, precision="FP16", workspace_bytes=1 << 30,
                                          engine_cache_path="/models/trt_cache")
    assert parse_config(to_text(config)) == config  # Triton's own schema reads it back unchanged
    [accelerator] = config.optimization.execution_accelerators.gpu_execution_accelerator
    assert accelerator.name == "tensorrt"
    assert dict(accelerator.parameters) == {
        "precision_mode": "FP16", "max_workspace_size_bytes": "1073741824",
        "trt_engine_cache_enable": "1", "trt_engine_cache_path": "/models/trt_cache",
        "trt_profile_min_shapes": "input:1x3x224x224", "trt_profile_opt_shapes": "input:8x3x224x224",
        "trt_profile_max_shapes": "input:8x3x224x224"}
    assert [g.kind for g in config.instance_group] == [ModelInstanceGroup.KIND_GPU]
    assert [(w.name, w.batch_size) for w in config.model_warmup] == [("random_batch_1", 1), ("random_batch_8", 8)]
    warm_input = config.model_warmup[0].inputs["input"]
    assert list(warm_input.dims) == [3, 224, 224] and warm_input.random_data
    assert base.optimization == ModelConfig().optimization  # the base config is left alone


def test_ort_tensorrt_config_refuses_what_cannot_work(base):
    with pytest.raises(ConfigError, match="onnxruntime backend"):
        tensorrt.ort_tensorrt_config(tensorrt.plan_config(base))
    on_cpu = ModelConfig()
    on_cpu.CopyFrom(base)
    on_cpu.instance_group.add(count=1, kind=ModelInstanceGroup.KIND_CPU)
    with pytest.raises(ConfigError, match="KIND_CPU"):
        tensorrt.ort_tensorrt_config(on_cpu)
    with pytest.raises(ConfigError, match="FP8"):
        tensorrt.ort_tensorrt_config(base, precision="FP8")


def test_plan_config_serves_the_same_tensors_from_an_engine(base):
    tuned = tensorrt.ort_tensorrt_config(base)
    plan = tensorrt.plan_config(tuned, name="plan", gpus=(0,))
    assert parse_config(to_text(plan)) == plan
    assert (plan.platform, plan.backend, plan.name) == ("tensorrt_plan", "", "plan")
    assert not plan.HasField("optimization") and not plan.parameters
    assert list(plan.input) == list(base.input) and list(plan.output) == list(base.output)
    assert [g.kind for g in plan.instance_group] == [ModelInstanceGroup.KIND_GPU]


# --- profiles and the max-batch rule (every shape the helper accepts) ---------------------------

dims_strategy = st.lists(st.integers(1, 512), min_size=1, max_size=4)
inputs_strategy = st.dictionaries(st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True), dims_strategy,
                                  min_size=1, max_size=3)


@settings(max_examples=200, deadline=None)
@given(max_batch_size=st.integers(1, 4096), inputs=inputs_strategy, data=st.data())
def test_profile_and_command_always_match_max_batch_size(max_batch_size, inputs, data):
    config = _config(max_batch_size, inputs)
    opt = data.draw(st.integers(1, max_batch_size))
    profile = tensorrt.profile_for(config, opt_batch=opt)
    assert profile.max_batch == max_batch_size
    for name, dims in inputs.items():
        assert profile.min[name] == (1, *dims) and profile.opt[name] == (opt, *dims)
        assert profile.max[name] == (max_batch_size, *dims)
    tensorrt.check_engine_batch(config, profile.max_batch)  # Triton accepts the engine it describes

    command = tensorrt.trtexec_command("m.onnx", "m.plan", config, opt_batch=opt)
    assert _shapes(_flag(command, "minShapes")) == profile.min
    assert _shapes(_flag(command, "optShapes")) == profile.opt
    assert _shapes(_flag(command, "maxShapes")) == profile.max
    accelerator = tensorrt.ort_tensorrt_config(config, opt_batch=opt, warmup=False)
    parameters = accelerator.optimization.execution_accelerators.gpu_execution_accelerator[0].parameters
    assert _shapes(parameters["trt_profile_max_shapes"]) == profile.max


@settings(max_examples=100, deadline=None)
@given(max_batch_size=st.integers(2, 4096), inputs=inputs_strategy, data=st.data())
def test_an_engine_smaller_than_max_batch_size_gets_tritons_error(max_batch_size, inputs, data):
    config = _config(max_batch_size, inputs)
    engine_batch = data.draw(st.integers(1, max_batch_size - 1))
    with pytest.raises(ConfigError) as caught:
        tensorrt.check_engine_batch(config, engine_batch)
    assert caught.value.triton_said == (f"autofill failed for model 'm': configuration specified max-batch "
                                        f"{max_batch_size} but TensorRT engine only supports max-batch {engine_batch}")
    assert f"max_batch_size: {engine_batch}" in caught.value.fix


@settings(max_examples=50, deadline=None)
@given(max_batch_size=st.integers(1, 64), inputs=inputs_strategy, opt=st.integers(-5, 200))
def test_opt_batch_outside_the_range_is_refused(max_batch_size, inputs, opt):
    config = _config(max_batch_size, inputs)
    if 1 <= opt <= max_batch_size:
        assert tensorrt.profile_for(config, opt).opt[next(iter(inputs))][0] == opt
    else:
        with pytest.raises(ConfigError, match="opt_batch"):
            tensorrt.profile_for(config, opt)


def test_variable_dims_and_no_batching():
    with pytest.raises(ConfigError, match="not all fixed"):
        tensorrt.profile_for(_config(8, {"tokens": [-1]}))
    static = _config(0, {"x": [4, 16]})
    profile = tensorrt.profile_for(static)
    assert profile.min == profile.opt == profile.max == {"x": (4, 16)}
    assert not any(part.startswith(("--minShapes", "--maxShapes")) for part in
                   tensorrt.trtexec_command("m.onnx", "m.plan", static))


# --- trtexec command lines ---------------------------------------------------------------------

def test_trtexec_command_for_the_course_model(base):
    assert tensorrt.trtexec_command("/w/model.onnx", "/w/model.plan", base, opt_batch=4) == [
        "trtexec", "--onnx=/w/model.onnx", "--saveEngine=/w/model.plan",
        "--minShapes=input:1x3x224x224", "--optShapes=input:4x3x224x224", "--maxShapes=input:8x3x224x224",
        "--memPoolSize=workspace:1024M", "--fp16"]
    two_inputs = _config(32, {"input_ids": [128], "attention_mask": [128]})
    assert tensorrt.trtexec_command("model.onnx", "model.plan", two_inputs, precision="FP32", opt_batch=8,
                                    workspace_mib=4096, trtexec="/usr/src/tensorrt/bin/trtexec") == [
        "/usr/src/tensorrt/bin/trtexec", "--onnx=model.onnx", "--saveEngine=model.plan",
        "--minShapes=input_ids:1x128,attention_mask:1x128", "--optShapes=input_ids:8x128,attention_mask:8x128",
        "--maxShapes=input_ids:32x128,attention_mask:32x128", "--memPoolSize=workspace:4096M"]


def test_trtexec_command_knows_what_each_tensorrt_cannot_do(base):
    with pytest.raises(ConfigError, match="no --fp16") as caught:
        tensorrt.trtexec_command("m.onnx", "m.plan", base, tensorrt_major=11)
    assert "autocast" in caught.value.fix
    assert "--fp16" not in tensorrt.trtexec_command("m.onnx", "m.plan", base, precision="FP32", tensorrt_major=11)
    with pytest.raises(ConfigError, match="calibration"):
        tensorrt.trtexec_command("m.onnx", "m.plan", base, precision="INT8")


def test_container_command_mounts_the_version_folder(base, tmp_path):
    command = tensorrt.trtexec_command(tmp_path / "model.onnx", tmp_path / "model.plan", base)
    line = tensorrt.container_command(command, tmp_path, release="24.10")
    assert line.startswith(f"docker run --rm --gpus all -v {tmp_path}:/models nvcr.io/nvidia/tensorrt:24.10-py3 "
                           "trtexec --onnx=/models/model.onnx --saveEngine=/models/model.plan ")
    assert str(tmp_path) not in line.split(":/models ", 1)[1]


def test_tritons_tensorrt_errors_get_fixes():
    fix = suggest_fix("autofill failed for model 'm': configuration specified max-batch 8 "
                      "but TensorRT engine only supports max-batch 4")
    assert "--maxShapes" in fix and "max_batch_size: 4" in fix
    assert "same release" in suggest_fix("Serialization assertion stdVersionRead == kSERIALIZATION_VERSION "
                                         "failed.Version tag does not match.")


# --- engine builds: run where TensorRT and a GPU exist -----------------------------------------

@pytest.mark.skipif(UNAVAILABLE is None, reason="TensorRT and a GPU are here: the build test runs instead")
def test_build_engine_says_why_it_cannot_run_here(base, tmp_path):
    with pytest.raises(tensorrt.TensorRTUnavailable) as caught:
        tensorrt.build_engine(artifact.ensure_onnx(), tmp_path / "model.plan", base)
    assert UNAVAILABLE in str(caught.value) and "trtexec_command" in caught.value.fix
    assert not (tmp_path / "model.plan").exists()


@pytest.mark.skipif(UNAVAILABLE is not None, reason=f"cannot build a TensorRT engine here: {UNAVAILABLE}")
def test_build_engine_matches_the_config(base, tmp_path):
    plan = tensorrt.build_engine(artifact.ensure_onnx(), tmp_path / "model.plan", base, precision="FP32", opt_batch=4)
    assert tensorrt.engine_max_batch(plan) == base.max_batch_size

"""Lab 08 checks: the trtexec command against the config's rules, the graph level on a real server,
the TensorRT accelerator block against Triton's schema."""

from __future__ import annotations

import pytest

import triton_course
from triton_course import artifact, model_config, repository, tensorrt
from triton_course.checks import lab08

COMMAND = ("trtexec --onnx=model.onnx --saveEngine=model.plan --minShapes=input:1x3x224x224 "
           "--optShapes=input:8x3x224x224 --maxShapes=input:16x3x224x224 --memPoolSize=workspace:1024M --fp16")


def test_command_right_and_course_command_pass():
    assert lab08.check_trtexec_command(COMMAND).ok
    assert lab08.check_trtexec_command(COMMAND.replace(" --", " \\\n    --")).ok
    course = tensorrt.trtexec_command("model.onnx", "model.plan", artifact.reference_config(max_batch_size=16),
                                      opt_batch=8)
    assert lab08.check_trtexec_command(course).ok


@pytest.mark.parametrize("wrong, message", [
    (COMMAND.replace("input:16x", "input:8x"), "--maxShapes has batch 8; the task asks for 16"),
    (COMMAND.replace("input:", "images:"), "the model's input is called 'input'"),
    (COMMAND.replace("input:16x3x224x224", "input:16,3,224,224"), "with x between the dimensions"),
    (COMMAND.replace("input:1x3x224x224", "input:3x224x224"), "has no batch dimension"),
    (COMMAND.replace(" --fp16", ""), "There is no --fp16"),
    (COMMAND.replace("--memPoolSize=workspace:1024M", "--workspace=1024"), "has no --workspace"),
    (COMMAND.replace(" --saveEngine=model.plan", ""), "There is no --saveEngine"),
    (COMMAND.replace(" --optShapes=input:8x3x224x224", ""), "There is no --optShapes="),
    (COMMAND.replace("input:8x", "input:16x", 1), "--optShapes has batch 16; the task asks for 8"),
    (COMMAND.replace("trtexec", "tensorrt"), "TensorRT's builder is trtexec"),
])
def test_command_mistakes(wrong, message):
    verdict = lab08.check_trtexec_command(wrong)
    assert not verdict.ok and message in str(verdict), str(verdict)


def test_max_batch_too_small_quotes_triton():
    verdict = lab08.check_trtexec_command(COMMAND.replace("input:16x", "input:8x"))
    assert verdict.triton_said.endswith("configuration specified max-batch 16 but TensorRT engine only supports "
                                        "max-batch 8")


GRAPH = """
name: "basic_graph"
platform: "onnxruntime_onnx"
max_batch_size: 8
input { name: "input" data_type: TYPE_FP32 dims: [3, 224, 224] }
output { name: "logits" data_type: TYPE_FP32 dims: [1000] label_filename: "labels.txt" }
optimization { graph { level: -1 } }
"""


@pytest.fixture(scope="module")
def server(reference_repo, tmp_path_factory):
    repo = tmp_path_factory.mktemp("lab08") / "model_repository"
    repository.add_version(repo, lab08.GRAPH_MODEL, 1, artifact.ensure_onnx())
    repository.write_file(repo / lab08.GRAPH_MODEL / "labels.txt", "\n".join(artifact.labels()) + "\n")
    with triton_course.start_server(repo, model_control_mode="explicit") as s:
        yield s


def test_graph_level_right(server):
    verdict = lab08.check_graph_level(server, GRAPH)
    assert verdict.ok, verdict
    assert "'espresso'" in verdict.confirmation


def test_graph_level_mistakes(server):
    verdict = lab08.check_graph_level(server, GRAPH.replace("level: -1", "level: basic"))
    assert "Expected integer, got: basic" in verdict.triton_said and "-1 (basic)" in verdict.hint
    verdict = lab08.check_graph_level(server, GRAPH.replace("graph { level: -1 }", "graph_level: -1"))
    assert 'no field named "graph_level"' in verdict.triton_said and "inside optimization" in verdict.hint
    assert "which means none" in str(lab08.check_graph_level(server, GRAPH.replace("level: -1", "level: 2")))
    assert "basic and extended" in str(lab08.check_graph_level(server, GRAPH.replace("level: -1", "level: 1")))
    no_block = GRAPH.replace("optimization { graph { level: -1 } }", "")
    assert "There is no optimization { graph { level } } block" in str(lab08.check_graph_level(server, no_block))
    verdict = lab08.check_graph_level(server, GRAPH.replace("level: -1", "level: 3"))
    assert "optimization graph level 3 is not one onnxruntime knows" in verdict.triton_said


ORT_TRT = model_config.to_text(tensorrt.ort_tensorrt_config(artifact.reference_config(), precision="FP16",
                                                            opt_batch=8, name="efficientnet_ort_trt"))


def test_ort_tensorrt_right():
    assert lab08.check_ort_tensorrt(ORT_TRT).ok, lab08.check_ort_tensorrt(ORT_TRT)


@pytest.mark.parametrize("old, new, message", [
    ('value: "FP16"', 'value: "fp16"', "write \"FP16\" (upper case)"),
    ("KIND_GPU", "KIND_CPU", "TensorRT runs on GPUs only"),
    ("gpu_execution_accelerator", "cpu_execution_accelerator", "it is a GPU accelerator"),
    ('value: "input:8x3x224x224"', 'value: "input:4x3x224x224"', "trt_profile_max_shapes is 'input:4x3x224x224'"),
    ("batch_size: 8", "batch_size: 4", "model_warmup has batches [1, 4]"),
    ('platform: "onnxruntime_onnx"', 'platform: "tensorrt_plan"', "belongs to the onnxruntime backend"),
    ("precision_mode", "precision", "precision_mode is None"),
])
def test_ort_tensorrt_mistakes(old, new, message):
    assert old in ORT_TRT
    verdict = lab08.check_ort_tensorrt(ORT_TRT.replace(old, new))
    assert not verdict.ok and message in str(verdict), str(verdict)


def test_ort_tensorrt_parse_error_quotes_the_parser():
    verdict = lab08.check_ort_tensorrt(ORT_TRT.replace("kind: KIND_GPU", "kind: GPU"))
    assert "Error parsing text-format inference.ModelConfig" in verdict.triton_said


class _Server:
    grpc_address = "127.0.0.1:8001"


def test_perf_command_right_and_mistakes():
    right = ("perf_analyzer -m basic_graph -u 127.0.0.1:8001 -i grpc --concurrency-range 2:2 "
             "--shape input:3,224,224 -f perf.csv")
    verdict = lab08.check_perf_command(right, _Server())
    assert verdict.ok and "Exercise 3 (the perf_analyzer command)" in str(verdict), str(verdict)
    wrong = str(lab08.check_perf_command(right.replace("-m basic_graph", "-m fp32").replace("2:2", "4:4"), _Server()))
    assert "-m is 'fp32'; the model to measure is 'basic_graph'." in wrong
    assert "--concurrency-range is '4:4'; the exercise asks for 2 clients only: 2:2." in wrong

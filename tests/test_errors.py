"""Reading Triton's log, mapping its messages to fixes, and naming who wrote them (no server needed)."""

import importlib.util
import sys
import types
from pathlib import Path

import pytest

from triton_course.checks import failed
from triton_course.errors import (
    PROTOBUF,
    RUNNERS,
    ConfigError,
    CourseError,
    InferenceError,
    ModelLoadError,
    ModelProblem,
    find_model_errors,
    quote,
    stub_failures,
    suggest_fix,
)

# Lines as Triton 2.51 writes them (captured from the embedded server).
LOG = r'''E1123 21:57:12.069861 2241 model_repository_manager.cc:1460] "Poll failed for model directory 'nofile': Invalid model name: Could not determine backend for model 'nofile' with no backend in model configuration. Expected model name of the form 'model.<backend_name>'."
[libprotobuf ERROR /tmp/tritonbuild/grpc/third_party/protobuf/src/google/protobuf/text_format.cc:337] Error parsing text-format inference.ModelConfig: 2:16: Expected ":", found "8".
E1123 21:57:12.070349 2241 model_repository_manager.cc:1460] "Poll failed for model directory 'parsefail': failed to read text proto from /r/parsefail/config.pbtxt"
E1123 21:57:12.070554 2241 model_repository_manager.cc:724] "failed to load model 'noversion': at least one version must be available under the version policy of model 'noversion'"
E1123 21:57:12.071340 2241 model_lifecycle.cc:642] "failed to load 'onnxplat' version 1: Invalid argument: unable to find backend library for backend 'onnxruntime', try specifying runtime on the model configuration."
I1123 21:57:48.316889 2430 pb_stub.cc:2105]  Failed to preinitialize Python stub: Python model file not found in '/r/nofile2/1/model.py'
I1123 21:57:12.071059 2241 model_lifecycle.cc:472] "loading: unreadable:1"
'''


def test_find_model_errors_reads_every_kind_of_failure_line():
    errors = find_model_errors(LOG, ["/r"])
    assert set(errors) == {"nofile", "parsefail", "noversion", "onnxplat", "nofile2"}
    assert errors["parsefail"].endswith('(2:16: Expected ":", found "8".)')
    assert errors["noversion"].startswith("at least one version must be available")
    assert "Python model file not found" in errors["nofile2"]


def test_stub_failures_are_traced_to_their_model():
    assert list(stub_failures(LOG, ["/r"])) == ["nofile2"]
    assert stub_failures(LOG, ["/elsewhere"]) == {}


def test_fixes_are_specific():
    assert "backend" in suggest_fix("unable to find backend library for backend 'onnxruntime'")
    assert "'onnxruntime' backend" in suggest_fix("unable to find backend library for backend 'onnxruntime'")
    assert "at most 8 items" in suggest_fix("inference request batch-size must be <= 8 for 'm'")
    assert "explicit" in suggest_fix("explicit model load / unload is not allowed if polling is enabled")
    assert suggest_fix("something nobody has seen").startswith("Read the server log")
    labels = suggest_fix("Internal: failed to open text file for read /r/m/labels.txt: No such file or directory")
    assert "names a file that is not there (/r/m/labels.txt)" in labels
    # the python backend's words (python_backend src/shm_manager.cc; a stub's import), as lesson 9 shows them
    shm = suggest_fix("Internal: Unable to initialize shared memory key 'k' to requested size (9 bytes). If you "
                      "are running Triton inside docker, use '--shm-size' flag ... Error: No space left on device")
    assert "--shm-size" in shm and "shm-default-byte-size" in shm
    missing = suggest_fix("Internal: ModuleNotFoundError: No module named 'anyascii'")
    assert "imports 'anyascii'" in missing and "EXECUTION_ENV_PATH" in missing
    no_activate = suggest_fix("Internal: Path /r/m/env/bin/activate does not exist. The Python environment should "
                              "contain an 'activate' script.")
    assert "bin/activate" in no_activate and "conda-pack" in no_activate


def test_model_load_error_lists_every_model():
    err = ModelLoadError([ModelProblem("a", "Permission denied: '/r/a/1/model.onnx'"),
                          ModelProblem("b", "failed to read text proto from /r/b/config.pbtxt")])
    text = str(err)
    assert "Model 'a' failed to load." in text and "Model 'b' failed to load." in text
    assert "chmod a+r" in text and "line:column" in text
    assert err.problem("b").model == "b"


# --- who wrote the words: Triton, or the course's runner standing in for the onnxruntime backend -----------------


# As the embedded 2.51 server reports a failed initialize of the ONNX runner (seen on it; the stack cut off).
RUNNER_DIMS = ("Internal: course ONNX runner: model 'batched', tensor 'input': the model expects 4 dimensions "
               "(shape [-1,3,224,224]) but the model configuration specifies 5 dimensions (an initial batch "
               "dimension because max_batch_size > 0 followed by the explicit tensor shape, making complete shape "
               "[-1,-1,3,224,224])")
ONNX_RUNNER = "The course's ONNX runner (standing in for the onnxruntime backend) said: "


def test_a_runner_message_is_quoted_as_the_runners_without_the_python_backends_status():
    said = quote(RUNNER_DIMS)
    assert said.writer == RUNNERS["course ONNX runner"]
    assert said.words.startswith("model 'batched', tensor 'input': the model expects 4 dimensions")
    assert str(said).startswith(ONNX_RUNNER + "model 'batched'")


def test_a_runner_request_failure_is_the_runners_too():
    said = quote("course ONNX runner: onnx runtime error 2: Unexpected input data type")
    assert str(said) == ONNX_RUNNER + "onnx runtime error 2: Unexpected input data type"
    torch = quote("Internal: course PyTorch runner: RuntimeError: CUDA out of memory")
    assert str(torch).startswith("The course's PyTorch runner (standing in for the onnxruntime backend on the GPU) "
                                 "said: RuntimeError")


def test_tritons_own_words_stay_tritons():
    for message in ["at least one version must be available under the version policy of model 'm'",
                    "failed to read text proto from /r/m/config.pbtxt",
                    "Internal: ValueError: your model.py raised this",  # a learner's python model: Triton reports it
                    "inference request batch-size must be <= 8 for 'm'"]:
        assert str(quote(message)) == f"Triton said: {message}"


def test_the_python_protobuf_parser_is_not_called_triton():
    said = quote('Error parsing text-format inference.ModelConfig: 3:5 : Message type "x" has no field named "dim".')
    assert said.writer == PROTOBUF and said.words.startswith("3:5 :")
    error = ConfigError("config.pbtxt does not parse as a Triton ModelConfig.",
                        triton_said='Error parsing text-format inference.ModelConfig: 1:1 : bad')
    assert "Triton said" not in str(error) and "Python's protobuf parser" in str(error)


def test_model_problems_course_errors_and_verdicts_name_the_runner():
    problem = str(ModelProblem("batched", RUNNER_DIMS))
    assert ONNX_RUNNER + "model 'batched'" in problem and "Triton said" not in problem
    assert "leave it out of dims" in problem  # the fix still reads the words
    assert ONNX_RUNNER in str(InferenceError("refused", triton_said=RUNNER_DIMS))
    verdict = str(failed("Exercise 1", "refused", triton_said=RUNNER_DIMS))
    assert "  " + ONNX_RUNNER + "model 'batched'" in verdict and "Triton said" not in verdict
    assert "  Triton said: unknown model" in str(failed("Exercise 1", "x", triton_said="unknown model"))
    copy = str(failed("Exercise 7", "x", triton_said="configuration specified max-batch 8 but TensorRT engine only "
                      "supports max-batch 4", said_by="the course's copy of the tensorrt backend's rule"))
    assert "The course's copy of the tensorrt backend's rule said: configuration specified" in copy
    assert "pip said: x" in str(CourseError("w", triton_said="x", source="pip"))


def test_jupyterlab_checkpoint_folders_get_their_own_fix():
    # Triton 2.51's words (embedded server): a top-level folder is taken for a model, one inside a model is skipped.
    top = suggest_fix("at least one version must be available under the version policy of model '.ipynb_checkpoints'")
    assert "JupyterLab" in top and "rm -r REPOSITORY/.ipynb_checkpoints" in top
    inside = suggest_fix("ignore version directory '.ipynb_checkpoints' which fails to convert to integral number")
    assert inside.startswith("Only a warning")
    assert "numbered version folder" in suggest_fix("at least one version must be available under the version "
                                                    "policy of model 'm'")


@pytest.fixture(scope="module")
def onnx_runner():
    """triton_course/runner/onnx_model.py as Triton's python stub imports it (with a stand-in for pb_utils)."""
    sys.modules.setdefault("triton_python_backend_utils", types.ModuleType("triton_python_backend_utils"))
    path = Path(__file__).resolve().parents[1] / "triton_course" / "runner" / "onnx_model.py"
    spec = importlib.util.spec_from_file_location("course_onnx_runner_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _session(inputs, outputs):
    node = types.SimpleNamespace
    return types.SimpleNamespace(get_inputs=lambda: [node(name=n, type=t, shape=s) for n, t, s in inputs],
                                 get_outputs=lambda: [node(name=n, type=t, shape=s) for n, t, s in outputs])


SESSION = ([("input", "tensor(float)", ["batch", 3, 224, 224])], [("logits", "tensor(float)", ["batch", 1000])])


def _config(dims, max_batch_size=8, name="input", data_type="TYPE_FP32"):
    return {"name": "batched", "max_batch_size": max_batch_size,
            "input": [{"name": name, "data_type": data_type, "dims": dims}],
            "output": [{"name": "logits", "data_type": "TYPE_FP32", "dims": [1000]}]}


def _raised(runner, config, session=SESSION):
    with pytest.raises(Exception) as caught:
        runner.check_config(config, _session(*session))
    return caught.value


def test_the_runner_words_its_errors_as_the_onnxruntime_backend_in_its_own_name(onnx_runner):
    error = _raised(onnx_runner, _config(["-1", "3", "224", "224"]))
    # The stub (pybind11 2.10) writes "<type name>: <message>": the type's name is the runner's, not ValueError.
    assert type(error).__name__ == "course ONNX runner"
    assert str(error) == ("model 'batched', tensor 'input': the model expects 4 dimensions (shape [-1,3,224,224]) but "
                          "the model configuration specifies 5 dimensions (an initial batch dimension because "
                          "max_batch_size > 0 followed by the explicit tensor shape, making complete shape "
                          "[-1,-1,3,224,224])")  # onnxruntime_backend src/onnxruntime_utils.cc CompareDimsSupported
    assert quote(f"Internal: {type(error).__name__}: {error}").writer == RUNNERS["course ONNX runner"]
    assert str(_raised(onnx_runner, _config(["3", "224", "224"], name="image"))) == (
        "unexpected inference input 'image', allowed inputs are: input")
    assert str(_raised(onnx_runner, _config(["3", "224", "224"], data_type="TYPE_FP16"))) == (
        "unable to load model 'batched', configuration expects datatype TYPE_FP16 for input 'input', "
        "model provides TYPE_FP32")


def test_the_runner_compares_dims_as_the_onnxruntime_backend_does(onnx_runner):
    onnx_runner.check_config(_config(["3", "224", "224"]), _session(*SESSION))  # the right config passes
    # A configured -1 matches only a -1 in the model (CompareDimsSupported, compare_exact false).
    assert "specifies 4 dimensions" in str(_raised(onnx_runner, _config(["3", "-1", "224"])))
    fixed = ([("input", "tensor(float)", [1, 3, 224, 224])], [("logits", "tensor(float)", [1, 1000])])
    assert str(_raised(onnx_runner, _config(["3", "224", "224"]), fixed)).endswith(
        "for the model to support batching the shape should have at least 1 dimension and the first dimension "
        "must be -1; but shape expected by the model is [1,3,224,224]")
    assert "(shape [3,224,224])" in str(_raised(onnx_runner, _config(["3", "224", "224"], max_batch_size=0)))

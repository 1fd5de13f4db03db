"""Reading Triton's log and mapping its messages to fixes (no server needed)."""

from triton_course.errors import ModelLoadError, ModelProblem, find_model_errors, stub_failures, suggest_fix

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


def test_model_load_error_lists_every_model():
    err = ModelLoadError([ModelProblem("a", "Permission denied: '/r/a/1/model.onnx'"),
                          ModelProblem("b", "failed to read text proto from /r/b/config.pbtxt")])
    text = str(err)
    assert "Model 'a' failed to load." in text and "Model 'b' failed to load." in text
    assert "chmod a+r" in text and "line:column" in text
    assert err.problem("b").model == "b"

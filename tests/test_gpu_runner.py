"""The course's PyTorch runner on the GPU: the precision a config asks for, the batch-size buckets
its CUDA graphs cover, and (on a machine with a GPU) its answers against onnxruntime's on the CPU."""

import numpy as np
import pytest

from triton_course import artifact, gpu, repository, start_server
from triton_course.model_config import ModelInstanceGroup
from triton_course.photos import PHOTOS, photo, preprocess
from triton_course.runner.torch_graphs import buckets, requested_precision
from triton_course.runtimes import stand_in

# How far the GPU's logits (about -5 to 15 for the course photos) may be from onnxruntime's on the CPU, per
# precision the runner serves: in FP32 cuDNN's fastest kernels (picked per batch size) add in another order;
# FP16 keeps about 3 significant digits.
TOLERANCE = {"FP32": 0.05, "FP16": 0.5}


def tensorrt(precision: str) -> dict:
    return {"optimization": {"execution_accelerators": {"gpu_execution_accelerator": [
        {"name": "tensorrt", "parameters": {"precision_mode": precision}}]}}}


def test_the_config_asks_for_fp16_the_way_tensorrt_users_ask():
    assert requested_precision({}) == "FP32"
    assert requested_precision(tensorrt("FP16")) == "FP16"
    assert requested_precision(tensorrt("fp32")) == "FP32"
    cuda = {"optimization": {"execution_accelerators": {"gpu_execution_accelerator": [{"name": "cuda"}]}}}
    assert requested_precision(cuda) == "FP32"


@pytest.mark.parametrize("config, named, supported", [
    (tensorrt("INT8"), "precision_mode 'INT8'", '"FP32" or "FP16"'),
    ({"optimization": {"execution_accelerators": {"gpu_execution_accelerator": [{"name": "openvino"}]}}},
     "gpu_execution_accelerator 'openvino'", '"tensorrt"'),
])
def test_an_unsupported_setting_is_named_with_what_is_supported(config, named, supported):
    with pytest.raises(ValueError) as caught:
        requested_precision(config)
    assert named in str(caught.value) and supported in str(caught.value)


def test_every_batch_size_up_to_max_has_a_bucket():
    assert buckets(64) == [1, 2, 4, 8, 16, 32, 64]
    assert buckets(6) == [1, 2, 4, 6]
    assert buckets(1) == [1]
    for max_batch_size in (1, 5, 8, 33):
        sizes = buckets(max_batch_size)
        assert all(any(s >= n for s in sizes) for n in range(1, max_batch_size + 1)) and max(sizes) == max_batch_size


def test_the_served_copy_says_at_which_precision_the_gpu_serves(tmp_path, reference_repo, monkeypatch):
    monkeypatch.setattr(gpu, "torch_device_name", lambda: "Test GPU")
    config = artifact.reference_config()
    config.name = "fp16"
    accelerator = config.optimization.execution_accelerators.gpu_execution_accelerator.add(name="tensorrt")
    accelerator.parameters["precision_mode"] = "FP16"
    repository.add_model(tmp_path / "repo", config, artifact.onnx_path(reference_repo))
    served, notes = stand_in.served_copy(tmp_path / "repo", ["python"], tmp_path / "served")
    assert "at FP16 as the config asks TensorRT (precision_mode); batches replayed from CUDA graphs" in notes[0]
    assert (served / "fp16" / "1" / "torch_graphs.py").exists()

    accelerator.parameters["precision_mode"] = "INT8"
    repository.write_config(tmp_path / "repo" / "fp16", config)
    _, notes = stand_in.served_copy(tmp_path / "repo", ["python"], tmp_path / "served")
    assert "it will refuse to load: precision_mode 'INT8'" in notes[0]


def _gpu() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


@pytest.mark.skipif(not _gpu(), reason="needs a GPU that PyTorch can use")
def test_the_gpu_runner_answers_like_onnxruntime_at_each_precision(tmp_path, reference_repo):
    import onnxruntime as ort
    import tritonclient.http as httpclient

    images = np.stack([preprocess(photo(name)) for name in PHOTOS])
    session = ort.InferenceSession(str(artifact.onnx_path(reference_repo)), providers=["CPUExecutionProvider"])
    expected = session.run(None, {artifact.INPUT_NAME: images})[0]
    repo = tmp_path / "repo"
    for precision in TOLERANCE:
        config = artifact.reference_config(max_batch_size=8)
        config.name = precision.lower()
        config.dynamic_batching.SetInParent()
        config.instance_group.add(kind=ModelInstanceGroup.KIND_GPU, count=1)
        if precision == "FP16":
            accelerator = config.optimization.execution_accelerators.gpu_execution_accelerator.add(name="tensorrt")
            accelerator.parameters["precision_mode"] = "FP16"
        repository.add_torch_model(repo, config, artifact.torchscript_path(reference_repo), labels=artifact.labels())
    with start_server(repo) as server:
        client = httpclient.InferenceServerClient(server.http_address)
        for precision, tolerance in TOLERANCE.items():
            # One request per photo (the graph of bucket 1), then all of them in one request (bucket 8).
            answers = [_infer(client, precision.lower(), images[i:i + 1]) for i in range(len(images))]
            for got in (np.concatenate(answers), _infer(client, precision.lower(), images)):
                print(f"{precision}: largest difference from onnxruntime {np.abs(got - expected).max():.4f}")
                assert np.abs(got - expected).max() < tolerance, precision
                for g, w in zip(got, expected):
                    assert np.argmax(g) == np.argmax(w), precision
                    # FP16 may swap two near-equal classes within the five; the five stay the same.
                    assert set(np.argsort(-g)[:5]) == set(np.argsort(-w)[:5]), precision
        log = server.log_text()
        assert "FP16 (the config asks TensorRT for it), channels-last, one CUDA graph per batch size" in log


def _infer(client, model: str, batch: np.ndarray) -> np.ndarray:
    import tritonclient.http as httpclient

    request = httpclient.InferInput(artifact.INPUT_NAME, list(batch.shape), "FP32")
    request.set_data_from_numpy(batch)
    return client.infer(model, [request]).as_numpy(artifact.OUTPUT_NAME)


@pytest.mark.skipif(not _gpu(), reason="needs a GPU that PyTorch can use")
def test_the_gpu_runner_serves_the_uint8_pixels_model_at_each_precision(tmp_path, reference_repo):
    """uint8 pixels in, normalised by the network on the GPU: the same answers as FP32 input on the CPU."""
    import onnxruntime as ort
    import tritonclient.http as httpclient

    from triton_course.photos import pixels

    session = ort.InferenceSession(str(artifact.onnx_path(reference_repo)), providers=["CPUExecutionProvider"])
    expected = session.run(None, {artifact.INPUT_NAME: np.stack([preprocess(photo(name)) for name in PHOTOS])})[0]
    raw = np.stack([pixels(photo(name)) for name in PHOTOS])
    repo = tmp_path / "repo"
    for precision in TOLERANCE:
        config = artifact.reference_config(max_batch_size=8, pixels=True)
        config.name = f"pixels_{precision.lower()}"
        config.dynamic_batching.SetInParent()
        config.instance_group.add(kind=ModelInstanceGroup.KIND_GPU, count=1)
        if precision == "FP16":
            accelerator = config.optimization.execution_accelerators.gpu_execution_accelerator.add(name="tensorrt")
            accelerator.parameters["precision_mode"] = "FP16"
        repository.add_model(repo, config, artifact.ensure_onnx(pixels=True), labels=artifact.labels())
    artifact.ensure_torchscript(pixels=True)
    with start_server(repo) as server:
        assert all("served on the GPU" in note for note in server.notes), server.notes
        client = httpclient.InferenceServerClient(server.http_address)
        for precision, tolerance in TOLERANCE.items():
            request = httpclient.InferInput(artifact.PIXELS_INPUT_NAME, list(raw.shape), "UINT8")
            request.set_data_from_numpy(raw)
            got = client.infer(f"pixels_{precision.lower()}", [request]).as_numpy(artifact.OUTPUT_NAME)
            print(f"pixels {precision}: largest difference from onnxruntime {np.abs(got - expected).max():.4f}")
            assert np.abs(got - expected).max() < tolerance, precision
            assert [np.argmax(g) for g in got] == [np.argmax(w) for w in expected], precision

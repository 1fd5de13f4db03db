"""triton_course.clients against a real Triton: one client factory for a server or any form of its address, request
tensors from NumPy in every datatype the course sends, and Triton's statistics summed in one place."""

from __future__ import annotations

import json
import os
import uuid

import numpy as np
import pytest
import tritonclient.grpc
import tritonclient.http

from triton_course import CourseError, artifact, ensemble, inference, loadgen, repository, start_server
from triton_course.checks._serving import executions_by_batch_size
from triton_course.clients import (
    address,
    client,
    grpc_retry_channel_args,
    infer_inputs,
    requested_outputs,
    unregister_shared_memory,
)
from triton_course.photos import jpeg_bytes, photo, pixels, preprocess
from triton_course.runtimes import free_port

BAD_ADDRESSES = ["localhost", "127.0.0.1:http", "127.0.0.1:99999", "ftp://127.0.0.1:8000", "127.0.0.1 :8000",
                 ":8000", ""]


@pytest.mark.parametrize("bad", BAD_ADDRESSES)
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_an_address_that_cannot_be_one_is_refused_naming_it(bad, protocol):
    with pytest.raises(ValueError) as refused:
        client(bad, protocol)
    assert repr(bad) in str(refused.value) and "host:port" in str(refused.value)


@pytest.mark.parametrize("url, protocol", [("grpc://127.0.0.1:8001", "http"), ("http://127.0.0.1:8000", "grpc"),
                                           ("https://pod-8000.proxy.runpod.net", "grpc")])
def test_a_url_of_the_other_protocol_is_refused_naming_the_right_address(url, protocol):
    with pytest.raises(ValueError) as refused:
        client(url, protocol)
    assert repr(url) in str(refused.value) and f"server.{protocol}_address" in str(refused.value)


def test_address_forms_and_tls():
    assert address("http://127.0.0.1:8000/", "http") == ("127.0.0.1:8000", False)
    assert address("grpc://127.0.0.1:8001", "grpc") == ("127.0.0.1:8001", False)
    assert address("127.0.0.1:8001", "grpc") == ("127.0.0.1:8001", False)
    # a pod's proxy: TLS on port 443, and a path prefix is kept for HTTP
    assert address("https://pod-8000.proxy.runpod.net", "http") == ("pod-8000.proxy.runpod.net", True)
    assert address("http://127.0.0.1:8000/triton", "http") == ("127.0.0.1:8000/triton", False)
    with pytest.raises(ValueError, match="'grpc://127.0.0.1:8001/v2' is not a Triton grpc address"):
        client("grpc://127.0.0.1:8001/v2", "grpc")  # gRPC has no path
    with pytest.raises(ValueError, match="'http' or 'grpc'"):
        client("127.0.0.1:8000", "rest")
    with pytest.raises(TypeError, match="no http_address"):
        client(8000)


def test_the_request_tensors_carry_the_arrays_datatypes():
    values = {"f": np.zeros((1, 3), np.float32), "u": np.zeros((2,), np.uint8), "s": np.array([b"a"], np.object_)}
    for protocol in ("http", "grpc"):
        made = infer_inputs(values, protocol)
        assert [(i.name(), i.datatype(), i.shape()) for i in made] == [
            ("f", "FP32", [1, 3]), ("u", "UINT8", [2]), ("s", "BYTES", [1])]
        assert [o.name() for o in requested_outputs(["a", "b"], protocol)] == ["a", "b"]



@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    """FP32 in (the course model), UINT8 in (its pixels variant), BYTES in and out (the JPEG ensemble)."""
    repo = tmp_path_factory.mktemp("clients") / "repo"
    ensemble.add_pipeline(repo, artifact.reference_config(), artifact.ensure_onnx(), top_k=3)
    repository.add_model(repo, artifact.reference_config(pixels=True), artifact.ensure_onnx(pixels=True),
                         labels=artifact.labels())
    with start_server(repo) as s:
        yield s


@pytest.fixture(scope="module")
def coffee():
    return photo("coffee")


def _forms(server, protocol: str) -> list:
    host_port = getattr(server, f"{protocol}_address")
    return [server, host_port, f"{protocol}://{host_port}"]


@pytest.mark.server
@pytest.mark.parametrize("protocol, module", [("http", tritonclient.http), ("grpc", tritonclient.grpc)])
def test_the_factory_reaches_the_server_from_the_object_and_every_address_form(srv, protocol, module):
    for form in _forms(srv, protocol):
        with client(form, protocol) as triton:
            assert isinstance(triton, module.InferenceServerClient)
            assert triton.is_server_live() and triton.is_model_ready(artifact.MODEL_NAME), form
    with srv.http_client() as http, srv.grpc_client() as grpc:  # the server's own methods make the same clients
        assert isinstance(http, tritonclient.http.InferenceServerClient) and http.is_server_live()
        assert isinstance(grpc, tritonclient.grpc.InferenceServerClient) and grpc.is_server_live()


@pytest.mark.server
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_request_where_nothing_listens_fails_naming_the_address(protocol):
    where = f"127.0.0.1:{free_port()}"
    with pytest.raises(CourseError) as caught:
        inference.infer(where, np.zeros((1, 3, 224, 224), np.float32), protocol=protocol, timeout=5)
    assert where in str(caught.value)


def _send(server, protocol: str, model: str, values: dict, outputs: list[str]) -> dict:
    with client(server, protocol) as triton:
        result = triton.infer(model, infer_inputs(values, protocol), outputs=requested_outputs(outputs, protocol))
    return {name: result.as_numpy(name) for name in outputs}


@pytest.mark.server
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_fp32_uint8_and_bytes_requests_round_trip_through_real_models(srv, coffee, protocol):
    floats = preprocess(coffee)[None]
    logits = _send(srv, protocol, artifact.MODEL_NAME, {artifact.INPUT_NAME: floats}, [artifact.OUTPUT_NAME])
    logits = logits[artifact.OUTPUT_NAME]
    assert logits.dtype == np.float32 and logits.shape == (1, artifact.NUM_CLASSES)
    assert np.allclose(logits, inference.infer(srv.http_url, floats), atol=1e-5)  # the same over either protocol

    raw = pixels(coffee)[None]
    assert raw.dtype == np.uint8
    from_pixels = _send(srv, protocol, artifact.PIXELS_MODEL_NAME, {artifact.PIXELS_INPUT_NAME: raw},
                        [artifact.OUTPUT_NAME])[artifact.OUTPUT_NAME]
    assert np.abs(from_pixels - logits).max() < 1e-3

    jpegs = ensemble.image_batch([jpeg_bytes(coffee)])
    assert jpegs.dtype == np.object_
    answer = _send(srv, protocol, ensemble.ENSEMBLE, {ensemble.IMAGE_INPUT: jpegs}, ["labels", "scores"])
    assert answer["labels"].dtype == np.object_ and answer["labels"].shape == (1, 3)
    assert answer["labels"][0, 0].decode() == inference.top_k(logits[0], 1)[0][0] == "espresso"


@pytest.mark.server
def test_an_input_in_shared_memory_gives_the_same_answer(srv, coffee):
    import tritonclient.utils.shared_memory as shm

    floats = preprocess(coffee)[None]
    expected = inference.infer(srv.http_url, floats)
    name = f"course_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    handle = shm.create_shared_memory_region(name, f"/{name}", floats.nbytes)
    try:
        shm.set_shared_memory_region(handle, [floats])
        with client(srv, "grpc") as triton:
            triton.register_system_shared_memory(name, f"/{name}", floats.nbytes)
            try:
                made = infer_inputs({artifact.INPUT_NAME: floats}, "grpc", shared_memory={artifact.INPUT_NAME: name})
                got = triton.infer(artifact.MODEL_NAME, made).as_numpy(artifact.OUTPUT_NAME)
            finally:
                unregister_shared_memory(triton, name)
    finally:
        shm.destroy_shared_memory_region(handle)
    assert np.allclose(got, expected, atol=1e-5)


@pytest.mark.server
def test_statistics_are_summed_once_whichever_reader_or_protocol(srv, coffee):
    before = loadgen.server_stats(srv.http_url, artifact.PIXELS_MODEL_NAME)
    raw = pixels(coffee)[None]
    for rows in (2, 2, 2, 1):  # one after the other: each request runs alone, at its own batch size
        inference.infer(srv.http_url, np.repeat(raw, rows, axis=0), model=artifact.PIXELS_MODEL_NAME,
                        input_name=artifact.PIXELS_INPUT_NAME)
    after = loadgen.server_stats(srv.http_url, artifact.PIXELS_MODEL_NAME)
    assert after == loadgen.server_stats(srv.grpc_address, artifact.PIXELS_MODEL_NAME, "grpc")
    assert after["success"] - before["success"] == 4
    assert after["inference_count"] - before["inference_count"] == 7
    assert after["execution_count"] - before["execution_count"] == 4
    assert {k: v - before["batches"].get(k, 0) for k, v in after["batches"].items()} == {1: 1, 2: 3}
    delta = loadgen.server_delta(before, after)
    assert delta["batch_sizes"] == {1: 1, 2: 3} and delta["avg_batch"] == 7 / 4

    with srv.http_client() as triton:
        stats = triton.get_inference_statistics(artifact.PIXELS_MODEL_NAME)
    assert executions_by_batch_size(stats) == loadgen.statistics_totals(stats)["batches"] == after["batches"]
    assert list(after["batches"]) == sorted(after["batches"])


def test_the_grpc_retry_policy_names_tritons_infer_method_and_holds_an_image():
    from tritonclient.grpc import service_pb2

    args = dict(grpc_retry_channel_args())
    (method_config,) = json.loads(args["grpc.service_config"])["methodConfig"]
    (name,) = method_config["name"]
    service = service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert (name["service"], name["method"]) == (service.full_name, service.methods_by_name["ModelInfer"].name)
    assert method_config["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]
    assert args["grpc.per_rpc_retry_buffer_size"] > 3 * 224 * 224 * 4  # gRPC's default, 256 KiB, holds no image
    assert args["grpc.max_receive_message_length"] == -1  # channel_args replaces tritonclient's own limits

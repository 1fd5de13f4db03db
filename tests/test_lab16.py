"""Lab 16's checks: right answers pass; each typical mistake in the streaming client or the token loop gets its
own message (a real server runs the real SmolLM2 model)."""

from __future__ import annotations

import json
import queue

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

import triton_course
from triton_course.checks import lab16


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    serving = triton_course.start_server(tmp_path_factory.mktemp("lab16"), model_control_mode="explicit")
    lab16.serve_model(serving)
    yield serving
    serving.stop()


def make_ask(*, params=lambda stop: {"temperature": 0, "max_tokens": 40, "stop": [stop]}, output="text_output",
             first_only=False, wait_final=True):
    def ask(grpc_address, prompt, stop):
        values = {"text_input": ("BYTES", np.array([prompt.encode()], dtype=np.object_)),
                  "stream": ("BOOL", np.array([True]))}
        if params(stop) is not None:
            values["sampling_parameters"] = ("BYTES", np.array([json.dumps(params(stop)).encode()], dtype=np.object_))
        inputs = []
        for name, (datatype, value) in values.items():
            tensor = grpcclient.InferInput(name, [1, 1], datatype)
            tensor.set_data_from_numpy(value.reshape(1, 1))
            inputs.append(tensor)
        responses = queue.Queue()
        client = grpcclient.InferenceServerClient(grpc_address)
        client.start_stream(callback=lambda result, error: responses.put((result, error)))
        client.async_stream_infer("smollm2", inputs, enable_empty_final_response=True)
        pieces = []
        try:
            while True:
                result, error = responses.get(timeout=200)
                if error is not None:
                    raise error
                response = result.get_response()
                if response.outputs:
                    pieces.append(result.as_numpy(output).reshape(-1)[0].decode())
                    if first_only:
                        return pieces[0]
                if wait_final and response.parameters["triton_final_response"].bool_param:
                    return "".join(pieces)
        finally:
            client.stop_stream()
    return ask


def test_right_client_passes(server):
    verdict = lab16.check_client(make_ask(), server)
    assert verdict.ok, verdict


@pytest.mark.parametrize("ask, words", [
    (make_ask(params=lambda stop: {"temperature": 0, "max_tokens": 40}), "only when sampling_parameters carries it"),
    (make_ask(params=lambda stop: None), "the sampling parameters did not arrive"),
    (make_ask(first_only=True), "the beginning of the answer only"),
    (make_ask(output="TEXT"), "Your function raised"),
    (lambda address, prompt, stop: ["a", "b"], "return the answer as one str"),
])
def test_client_mistakes(server, ask, words):
    verdict = lab16.check_client(ask, server)
    assert not verdict.ok and words in str(verdict), verdict


def test_client_that_ignores_the_final_flag_is_stopped(server, monkeypatch):
    monkeypatch.setattr(lab16, "ANSWER_TIMEOUT_S", 15.0)
    verdict = lab16.check_client(make_ask(wait_final=False), server)
    assert not verdict.ok and "did not return within 15 s" in str(verdict) and "triton_final_response" in str(verdict)


def right_loop(sender, pieces, pb_utils):
    for piece in pieces:
        if sender.is_cancelled():
            break
        sender.send(pb_utils.InferenceResponse(
            output_tensors=[pb_utils.Tensor("text_output", np.array([piece.encode()], dtype=np.object_))]))
    sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)


def no_final_flag(sender, pieces, pb_utils):
    for piece in pieces:
        if sender.is_cancelled():
            break
        sender.send(pb_utils.InferenceResponse(
            output_tensors=[pb_utils.Tensor("text_output", np.array([piece.encode()], dtype=np.object_))]))


def ignores_cancel(sender, pieces, pb_utils):
    for piece in pieces:
        sender.send(pb_utils.InferenceResponse(
            output_tensors=[pb_utils.Tensor("text_output", np.array([piece.encode()], dtype=np.object_))]))
    sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)


def wrong_output_name(sender, pieces, pb_utils):
    for piece in pieces:
        if sender.is_cancelled():
            break
        sender.send(pb_utils.InferenceResponse(
            output_tensors=[pb_utils.Tensor("TOKEN", np.array([piece.encode()], dtype=np.object_))]))
    sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)


def whole_answer_once(sender, pieces, pb_utils):
    text = "".join(pieces)
    sender.send(pb_utils.InferenceResponse(
        output_tensors=[pb_utils.Tensor("text_output", np.array([text.encode()], dtype=np.object_))]),
        flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)


def test_right_loop_passes(server):
    verdict = lab16.check_token_loop(right_loop, server)
    assert verdict.ok, verdict


@pytest.mark.parametrize("loop, words", [
    (no_final_flag, "no final flag"),
    # the python backend accepts sends on a cancelled request: the loop draws every piece for nobody
    (ignores_cancel, "still drew all 24 pieces"),
    (wrong_output_name, "no response held text_output"),
    (whole_answer_once, "One response held the whole answer"),
])
def test_token_loop_mistakes(server, loop, words):
    verdict = lab16.check_token_loop(loop, server)
    assert not verdict.ok and words in str(verdict), verdict


def raises_midway(sender, pieces, pb_utils):
    for number, piece in enumerate(pieces):
        if number == 2:
            raise RuntimeError("my loop broke at piece 2")
        sender.send(pb_utils.InferenceResponse(
            output_tensors=[pb_utils.Tensor("text_output", np.array([piece.encode()], dtype=np.object_))]))


def test_a_loop_that_raises_is_quoted(server):
    verdict = lab16.check_token_loop(raises_midway, server)
    assert not verdict.ok and "your loop raised" in str(verdict) and "my loop broke at piece 2" in str(verdict)

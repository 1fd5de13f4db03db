"""Lab 15's checks: right answers pass; each typical mistake in a decoupled or a stateful execute gets its own
message (a real server streams from the learner's function)."""

from __future__ import annotations

import numpy as np
import pytest

import triton_course
from triton_course.checks import lab15


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    serving = triton_course.start_server(tmp_path_factory.mktemp("lab15"), model_control_mode="explicit")
    yield serving
    serving.stop()


def right_words(requests, pb_utils):
    for request in requests:
        sender = request.get_response_sender()
        text = pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy().reshape(-1)[0].decode()
        for word in text.split():
            sender.send(pb_utils.InferenceResponse([pb_utils.Tensor("WORD", np.array([word.encode()], dtype=object))]))
        sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)


def no_final_flag(requests, pb_utils):
    for request in requests:
        sender = request.get_response_sender()
        text = pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy().reshape(-1)[0].decode()
        for word in text.split():
            sender.send(pb_utils.InferenceResponse([pb_utils.Tensor("WORD", np.array([word.encode()], dtype=object))]))


def whole_text_once(requests, pb_utils):
    for request in requests:
        sender = request.get_response_sender()
        text = pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy().reshape(-1)[0]
        sender.send(pb_utils.InferenceResponse([pb_utils.Tensor("WORD", np.array([text], dtype=object))]),
                    flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)


def reversed_words(requests, pb_utils):
    for request in requests:
        sender = request.get_response_sender()
        text = pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy().reshape(-1)[0].decode()
        for word in reversed(text.split()):
            sender.send(pb_utils.InferenceResponse([pb_utils.Tensor("WORD", np.array([word.encode()], dtype=object))]))
        sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)


def returns_responses(requests, pb_utils):
    return [pb_utils.InferenceResponse([pb_utils.Tensor("WORD", np.array([b"x"], dtype=object))]) for _ in requests]


def wrong_output_name(requests, pb_utils):
    for request in requests:
        sender = request.get_response_sender()
        sender.send(pb_utils.InferenceResponse([pb_utils.Tensor("TOKEN", np.array([b"x"], dtype=object))]),
                    flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)


@pytest.mark.server
def test_a_right_decoupled_execute_passes(server):
    verdict = lab15.check_decoupled(server, right_words)
    assert verdict.ok, verdict
    assert "3 texts streamed word by word, each closed by the final flag (6 responses in all)" in repr(verdict)


@pytest.mark.server
@pytest.mark.parametrize("answer, message", [
    (no_final_flag, "5 response(s) ['tokens', 'arrive', 'one', 'by', 'one'], then nothing for 3 s and no final flag"),
    (whole_text_once, "gave 1 response(s) ['tokens arrive one by one']; it has 5 word(s)"),
    (reversed_words, "gave ['one', 'by', 'one', 'arrive', 'tokens']; expected ['tokens', 'arrive', 'one', 'by', "
                     "'one'], in that order"),
    (returns_responses, "Triton said: Failed to process the request(s) for model 'words_0', message: Python model "
                        "'words_0' is using the decoupled mode and the execute function must return None."),
    (wrong_output_name, ("Streaming 'tokens arrive one by one': the final flag came, but no response held a word.",
                         # on the H200 machine (Ubuntu 24.04, Python 3.12) the python stub died on that response
                         # ("Stub process 'words_0' is not healthy"): the hint names the same mistake
                         "a response whose output is not a pb_utils.Tensor named 'WORD'")),
    ("def execute(requests, pb_utils): ...", "Pass your function, not str."),
], ids=["no_final_flag", "one_response", "wrong_order", "returns_list", "wrong_output", "text"])
def test_decoupled_mistakes_are_named(server, answer, message):
    verdict = lab15.check_decoupled(server, answer)
    messages = (message,) if isinstance(message, str) else message
    assert not verdict.ok and any(m in repr(verdict) for m in messages), repr(verdict)


def right_totals(requests, pb_utils, state):
    responses = []
    for request in requests:
        sequence = request.correlation_id()
        start = pb_utils.get_input_tensor_by_name(request, "START").as_numpy().reshape(-1)[0]
        value = int(pb_utils.get_input_tensor_by_name(request, "VALUE").as_numpy().reshape(-1)[0])
        state[sequence] = value if start else state.get(sequence, 0) + value
        responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("TOTAL", np.array([[state[sequence]]],
                                                                                        dtype=np.int32))]))
    return responses


def one_shared_total(requests, pb_utils, state):
    responses = []
    for request in requests:
        start = pb_utils.get_input_tensor_by_name(request, "START").as_numpy().reshape(-1)[0]
        value = int(pb_utils.get_input_tensor_by_name(request, "VALUE").as_numpy().reshape(-1)[0])
        state["total"] = value if start else state.get("total", 0) + value
        responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("TOTAL", np.array([[state["total"]]],
                                                                                        dtype=np.int32))]))
    return responses


def never_resets(requests, pb_utils, state):
    responses = []
    for request in requests:
        sequence = request.correlation_id()
        value = int(pb_utils.get_input_tensor_by_name(request, "VALUE").as_numpy().reshape(-1)[0])
        state[sequence] = state.get(sequence, 0) + value
        responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("TOTAL", np.array([[state[sequence]]],
                                                                                        dtype=np.int32))]))
    return responses


def flat_output(requests, pb_utils, state):
    return [pb_utils.InferenceResponse([pb_utils.Tensor("TOTAL", np.array([1, 2], dtype=np.int32))]) for _ in requests]


def raises(requests, pb_utils, state):
    return [1 / 0 for _ in requests]


@pytest.mark.server
def test_a_right_stateful_execute_passes(server):
    verdict = lab15.check_stateful(server, right_totals)
    assert verdict.ok, verdict
    assert "totals [1, 10, 3, 30, 6, 60, 5]" in repr(verdict)


@pytest.mark.server
@pytest.mark.parametrize("answer, message", [
    (one_shared_total, "state mixed between sequences: sequence 101 got TOTAL 12, but its own values add up to 3"),
    (never_resets, "sequence 101 was STARTed again, but its TOTAL 11 carries its old state (6): START must reset it."),
    (flat_output, "Sequence 101, value 1: TOTAL has shape [2]; a request of one value needs [1, 1]."),
    (raises, "Sequence 101, value 1: Triton refused the request.\n  Triton said: Failed to process the request(s) for "
             "model 'running_total_0', message: ZeroDivisionError: division by zero"),
    (42, "Pass your function, not int."),
], ids=["shared_state", "no_reset", "bad_shape", "raises", "not_a_function"])
def test_stateful_mistakes_are_named(server, answer, message):
    verdict = lab15.check_stateful(server, answer)
    assert not verdict.ok and message in repr(verdict), repr(verdict)

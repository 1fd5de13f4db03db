"""Checks for lab 15 (streaming and stateful serving): the learner's decoupled `execute` and the
learner's stateful `execute` for the sequence batcher, each served by a real Triton server.

The learner writes a plain function in the notebook; the check saves its source as `answer.py` beside
the course's `answer_model.py` (which calls it from `TritonPythonModel.execute`), loads the model, and
streams from it or sends it two interleaved sequences.
"""

from __future__ import annotations

import inspect
import textwrap
from pathlib import Path

import numpy as np

from ..clients import infer_inputs
from ..errors import CourseError, InferenceError
from ..model_config import ModelConfig, build_config, mc, tensor, to_text
from ..streaming import model_source, stream
from . import Verdict, failed, passed

WORDS, TOTALS = "words", "running_total"
# Exercise 1: each text and the responses it must produce, one word each, then the final flag.
TEXTS = ["tokens arrive one by one", "hello", ""]
# Exercise 2: two camera-like sequences sent interleaved, then sequence 101 started again.
SEQUENCES = [(101, 1, True), (202, 10, True), (101, 2, False), (202, 20, False), (101, 3, False),
             (202, 30, False), (101, 5, True)]
SILENCE_SECONDS = 3.0  # no response for this long after the last one: the final flag is missing
HEADER = "import numpy as np\n\n\n"


def words_config() -> ModelConfig:
    """Exercise 1's model: decoupled, TEXT (one string) in, one WORD response per word."""
    config = build_config(WORDS, backend="python", max_batch_size=0, inputs=[tensor("TEXT", "TYPE_STRING", [1])],
                          outputs=[tensor("WORD", "TYPE_STRING", [1])])
    config.model_transaction_policy.decoupled = True
    config.parameters["function"].string_value = "execute"
    return config


def totals_config() -> ModelConfig:
    """Exercise 2's model: the sequence batcher (oldest strategy: requests of up to 4 sequences batched
    together, no empty-slot requests) with a START control input; VALUE in, TOTAL (the sum of the
    sequence's values so far) out."""
    config = build_config(TOTALS, backend="python", max_batch_size=4, inputs=[tensor("VALUE", "TYPE_INT32", [1])],
                          outputs=[tensor("TOTAL", "TYPE_INT32", [1])])
    batcher = config.sequence_batching
    batcher.max_sequence_idle_microseconds = 5_000_000
    batcher.oldest.max_candidate_sequences = 4
    kinds = mc.ModelSequenceBatching.Control
    batcher.control_input.add(name="START", control=[kinds(kind=kinds.CONTROL_SEQUENCE_START, int32_false_true=[0, 1])])
    config.parameters["function"].string_value = "execute"
    config.parameters["stateful"].string_value = "true"
    return config


def answer_source(function, name: str = "execute") -> str:
    """The learner's function as the text of answer.py (numpy imported), reachable as `name` whatever it is called.
    Lab 16's check saves its token loop the same way."""
    source = textwrap.dedent(inspect.getsource(function))
    if function.__name__ != name:
        source += f"\n\n{name} = {function.__name__}\n"
    return HEADER + source


def _serve(server, config: ModelConfig, function) -> None:
    model_dir = Path(server.repository) / config.name
    (model_dir / "1").mkdir(parents=True, exist_ok=True)
    (model_dir / "1" / "model.py").write_text(model_source("answer_model.py"))
    (model_dir / "1" / "answer.py").write_text(answer_source(function))  # each check serves the answer as it is now
    (model_dir / "config.pbtxt").write_text(to_text(config))
    server.load_model(config.name)


def _collect(server, text: str) -> tuple[list[str], bool, str]:
    """(the words streamed, whether the final flag came, Triton's error or what is wrong with a response)."""
    got: list[str] = []
    try:
        for piece in stream(server.grpc_address, WORDS, {"TEXT": np.array([text.encode()], dtype=np.object_)},
                            timeout=SILENCE_SECONDS, outputs=None):
            if "WORD" in piece.outputs:
                got.append(piece.text("WORD"))
            elif piece.outputs:
                return got, False, f"a response held {sorted(piece.outputs)} but no output 'WORD'"
            if piece.final:
                return got, True, ""
    except InferenceError as error:
        return got, False, error.triton_said or ""
    return got, False, ""


def check_decoupled(server, execute) -> Verdict:
    """Exercise 1: `execute(requests, pb_utils)` of a decoupled model that streams the words of TEXT."""
    exercise = "Exercise 1 (a decoupled execute)"
    if not callable(execute):
        return failed(exercise, f"Pass your function, not {type(execute).__name__}.")
    try:
        _serve(server, words_config(), execute)
    except CourseError as error:
        return failed(exercise, "The model did not load.", triton_said=error.triton_said or str(error),
                      hint="Read the message: it names the line of answer.py (your function) that failed.")
    for text in TEXTS:
        expected = text.split()
        got, final, said = _collect(server, text)
        if said and not final and "sent no response" not in said:
            return failed(exercise, f"Streaming {text!r} ended with an error after {len(got)} word(s).",
                          triton_said=said, hint="An exception in execute, or a response whose output is not a "
                                                 "pb_utils.Tensor named 'WORD' holding an array of bytes.")
        if not final:
            return failed(exercise, f"Streaming {text!r}: {len(got)} response(s) {got}, then nothing for "
                          f"{SILENCE_SECONDS:.0f} s and no final flag. Triton keeps the request open and the client "
                          "never learns it is complete.",
                          hint="After the last word: sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL). "
                               "And return None from execute: a decoupled model answers through its senders.")
        if expected and not got:
            return failed(exercise, f"Streaming {text!r}: the final flag came, but no response held a word.",
                          hint="Send one response per word, each with pb_utils.Tensor('WORD', ...): Triton passes on "
                               "only the outputs the config declares, so a tensor of another name never arrives.")
        if len(got) != len(expected):
            return failed(exercise, f"Streaming {text!r} gave {len(got)} response(s) {got}; it has {len(expected)} "
                          f"word(s) {expected}: one response per word (an empty text: no response, only the final "
                          "flag).", hint="Loop over text.split() and send one InferenceResponse per word.")
        if got != expected:
            return failed(exercise, f"Streaming {text!r} gave {got}; expected {expected}, in that order.",
                          hint="Decode the input bytes (.decode()), split on spaces, send each word encoded.")
    return passed(exercise, f"{len(TEXTS)} texts streamed word by word, each closed by the final flag "
                  f"({sum(len(t.split()) for t in TEXTS)} responses in all).")


def _send(server, sequence: int, value: int, start: bool):
    from tritonclient.utils import InferenceServerException

    with server.http_client() as client:
        try:
            result = client.infer(TOTALS, infer_inputs({"VALUE": np.array([[value]], dtype=np.int32)}, "http"),
                                  sequence_id=sequence, sequence_start=start)
        except InferenceServerException as exc:
            return None, "Triton refused the request", exc.message()
    total = result.as_numpy("TOTAL")
    if total is None:
        return None, "the response has no output 'TOTAL'", ""
    if np.asarray(total).shape != (1, 1):
        return None, f"TOTAL has shape {list(np.asarray(total).shape)}; a request of one value needs [1, 1]", ""
    return int(np.asarray(total).reshape(-1)[0]), "", ""


def check_stateful(server, execute) -> Verdict:
    """Exercise 2: `execute(requests, pb_utils, state)` that answers each request with the running total
    of its own sequence, keeping `state` per correlation ID and starting afresh on START."""
    exercise = "Exercise 2 (state per sequence)"
    if not callable(execute):
        return failed(exercise, f"Pass your function, not {type(execute).__name__}.")
    try:
        _serve(server, totals_config(), execute)
    except CourseError as error:
        return failed(exercise, "The model did not load.", triton_said=error.triton_said or str(error))
    sums: dict[int, int] = {}
    shared = {"reset on START": 0, "never reset": 0}  # what one total shared by every sequence would say
    for sequence, value, start in SEQUENCES:
        expected = value if start else sums[sequence] + value
        shared["reset on START"] = value if start else shared["reset on START"] + value
        shared["never reset"] += value
        total, problem, said = _send(server, sequence, value, start)
        if problem:
            return failed(exercise, f"Sequence {sequence}, value {value}: {problem}.", triton_said=said,
                          hint="Return one pb_utils.InferenceResponse per request, in the requests' order, with a "
                               "TOTAL tensor of shape [1, 1] (INT32).")
        if total == expected:
            sums[sequence] = expected
            continue
        if start and sequence in sums and total == sums[sequence] + value:
            return failed(exercise, f"sequence {sequence} was STARTed again, but its TOTAL {total} carries its old "
                          f"state ({sums[sequence]}): START must reset it.",
                          hint="Read the START control: pb_utils.get_input_tensor_by_name(request, 'START'); "
                               "when it is 1, start from 0.")
        if total in shared.values():
            return failed(exercise, f"state mixed between sequences: sequence {sequence} got TOTAL {total}, but its "
                          f"own values add up to {expected}; the other sequence's values were added in.",
                          hint="Keep one total per sequence: state[request.correlation_id()].")
        return failed(exercise, f"sequence {sequence}, value {value}: TOTAL is {total}, expected {expected} (the "
                      "values of this sequence so far, this one included).")
    return passed(exercise, f"two interleaved sequences kept apart (totals {_expected_totals()}), and a restarted "
                  "sequence began afresh.")


def _expected_totals() -> list[int]:
    sums, out = {}, []
    for sequence, value, start in SEQUENCES:
        sums[sequence] = value if start else sums[sequence] + value
        out.append(sums[sequence])
    return out

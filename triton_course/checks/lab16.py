"""Checks for lab 16 (serving a language model): the learner's streaming client, run against the lesson's
in-flight-batched SmolLM2 model, and the learner's token loop, run inside a real decoupled model
(`streaming_models/lab16_model.py`, which feeds it the real model's pieces)."""

from __future__ import annotations

import functools
import hashlib
import re
import textwrap
import threading
import time
from pathlib import Path

import numpy as np

from .. import clients, llm
from ..errors import CourseError, InferenceError
from ..streaming import stream
from . import Verdict, failed, passed
from .lab15 import answer_source

MODEL, LOOP_MODEL = "smollm2", "token_loop"
# Exercise 1: each question with the stop string the client must send.
QUESTIONS = [("Name the days of the week.", "Friday"), ("Name three colours.", "Blue")]
MAX_TOKENS = 40
ANSWER_TIMEOUT_S = 90.0
SILENCE_S = 10.0  # exercise 2: no response for this long means no final flag
LOOP_MAX_TOKENS = 24  # lab16_model.py's MAX_TOKENS: the most pieces one answer has


def inflight_config() -> str:
    """The lesson's in-flight config (the check serves it; the learner's client talks to it)."""
    return textwrap.dedent("""\
        backend: "python"
        max_batch_size: 8
        model_transaction_policy { decoupled: true }
        input [
          { name: "text_input" data_type: TYPE_STRING dims: [ 1 ] },
          { name: "stream" data_type: TYPE_BOOL dims: [ 1 ] optional: true },
          { name: "sampling_parameters" data_type: TYPE_STRING dims: [ 1 ] optional: true },
          { name: "exclude_input_in_output" data_type: TYPE_BOOL dims: [ 1 ] optional: true }
        ]
        output [ { name: "text_output" data_type: TYPE_STRING dims: [ -1 ] } ]
        sequence_batching {
          iterative_sequence: true
          control_input [
            { name: "correlation_id" control [ { kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_UINT64 } ] },
            { name: "start" control [ { kind: CONTROL_SEQUENCE_START fp32_false_true: [ 0, 1 ] } ] },
            { name: "end" control [ { kind: CONTROL_SEQUENCE_END fp32_false_true: [ 0, 1 ] } ] }
          ]
          oldest { }
          max_sequence_idle_microseconds: 60000000
        }
        instance_group [ { count: 1 kind: KIND_CPU } ]
        """)


def loop_config() -> str:
    return textwrap.dedent(f"""\
        name: "{LOOP_MODEL}"
        backend: "python"
        max_batch_size: 0
        model_transaction_policy {{ decoupled: true }}
        input [ {{ name: "text_input" data_type: TYPE_STRING dims: [ 1 ] }} ]
        output [ {{ name: "text_output" data_type: TYPE_STRING dims: [ 1 ] }} ]
        instance_group [ {{ count: 1 kind: KIND_CPU }} ]
        """)


def serve_model(server) -> None:
    """Exercise 1's model in the server's repository, loaded (again)."""
    llm.add_llm(server.repository, MODEL, inflight_config())
    server.load_model(MODEL)


def chat(question: str) -> str:
    return llm.chat_prompt([{"role": "user", "content": question}])


def _call(function, *args, timeout: float):
    """(value, problem): the learner's function run in a thread with a deadline."""
    box: dict = {}

    def run():
        try:
            box["value"] = function(*args)
        except Exception as exc:  # noqa: BLE001 - the learner's code; say what it raised
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        return None, (f"Your function did not return within {timeout:.0f} s. A streaming client must stop reading "
                      "at the response whose parameters hold triton_final_response = true.")
    if "error" in box:
        exc = box["error"]
        said = exc.message() if hasattr(exc, "message") else str(exc)
        return None, f"Your function raised {type(exc).__name__}: {said}"
    return box["value"], None


@functools.lru_cache(maxsize=16)
def _reference(grpc_address: str, prompt: str, stop: str | None) -> str:
    """The model's answer at temperature 0 (with the stop string, or without), asked once per server."""
    params = {"temperature": 0, "max_tokens": MAX_TOKENS, **({"stop": [stop]} if stop else {})}
    return llm.stream_tokens(grpc_address, MODEL, prompt, params).text


def check_client(ask, server) -> Verdict:
    """Exercise 1: `ask(grpc_address, prompt, stop)` streams the answer over gRPC with temperature 0,
    max_tokens 40 and the stop string, and returns the whole text."""
    exercise = "Exercise 1 (a streaming client)"
    if not callable(ask):
        return failed(exercise, f"Pass your function, not {type(ask).__name__}.")
    for question, stop in QUESTIONS:
        prompt = chat(question)
        expected = _reference(server.grpc_address, prompt, stop)
        unstopped = _reference(server.grpc_address, prompt, None)
        got, problem = _call(ask, server.grpc_address, prompt, stop, timeout=ANSWER_TIMEOUT_S)
        if problem:
            hint = ("The output is named text_output: result.as_numpy('text_output')." if "text_output" not in
                    problem and ("NoneType" in problem or "output" in problem) else
                    "Compare your loop with the lesson's section 3.")
            return failed(exercise, f"Asking {question!r}: {problem}", hint=hint)
        if not isinstance(got, str):
            return failed(exercise, f"Asking {question!r}: your function returned {type(got).__name__}; return the "
                                    "answer as one str (the pieces joined).")
        if got == expected:
            continue
        said = f"Asking {question!r} (stop {stop!r}): you returned {got!r}; expected {expected!r}."
        if got == unstopped or (stop in got and expected and got.startswith(expected)):
            return failed(exercise, said, f"That is the answer without the stop string {stop!r}: the server ends at "
                                          "a stop string only when sampling_parameters carries it.",
                          hint='json.dumps({"temperature": 0, "max_tokens": 40, "stop": [stop]})')
        if got and expected.startswith(got):
            return failed(exercise, said, "That is the beginning of the answer only: each response carries only "
                                          "the new text, and the answer is all of them joined, up to the final "
                                          "flag.", hint="Append every text_output until triton_final_response.")
        if expected and expected in got and got != expected:
            return failed(exercise, said, "The prompt is in front of the answer: with stream true the model sends "
                                          "only the generated text; do not add the prompt yourself.")
        return failed(exercise, said, "At temperature 0 the answer is the same every time; a different one means "
                                      "the sampling parameters did not arrive (the default temperature, 1.0, "
                                      "samples at random) or a different max_tokens.",
                      hint="Send sampling_parameters as a BYTES tensor holding the JSON text, shape [1, 1].")
    return passed(exercise, f"{len(QUESTIONS)} answers streamed and joined, each ended at its stop string.")


# --- Exercise 2: the model's token loop ------------------------------------------------------------

def serve_loop(server, token_loop) -> None:
    version = Path(server.repository) / LOOP_MODEL / "1"
    version.mkdir(parents=True, exist_ok=True)
    (version / "model.py").write_text(llm.model_source("lab16_model.py"))
    (version / "llm_engine.py").write_text(llm.model_source("llm_engine.py"))
    (version / "answer.py").write_text(answer_source(token_loop, "token_loop"))
    link = version / "weights"
    if not link.is_symlink():
        link.symlink_to(llm.ensure_weights(), target_is_directory=True)
    (version.parent / "config.pbtxt").write_text(loop_config())
    server.load_model(LOOP_MODEL)


def _loop_log(server, prompt: str, since: int, timeout: float) -> dict:
    """What lab16_model.py logged when the learner's loop returned for this prompt, among the server-log lines
    after line `since` (earlier checks asked the same prompts); {} if it has not logged yet."""
    key = hashlib.sha1(prompt.encode()).hexdigest()[:12]
    deadline = time.monotonic() + timeout
    while True:
        for line in server.log_text().splitlines()[since:]:
            found = re.search(rf"lab16: prompt {key} drawn (\d+)(?: raised (.*))?$", line.rstrip('"'))
            if found:
                return {"drawn": int(found[1]), "raised": found[2] or ""}
        if time.monotonic() > deadline:
            return {}
        time.sleep(0.1)


@functools.lru_cache(maxsize=4)
def _greedy_answer(prompt: str) -> str:
    """lab16_model.py's answer to `prompt` (greedy, LOOP_MAX_TOKENS), computed here with the same engine."""
    from ..streaming_models.llm_engine import Engine

    engine = Engine(str(llm.ensure_weights()))
    sequence = engine.new_sequence(prompt, dict(temperature=0.0, top_p=1.0, max_tokens=LOOP_MAX_TOKENS, stop=[],
                                                seed=None))
    while sequence.finish_reason is None:
        engine.step([sequence])
    return sequence.text


def check_token_loop(token_loop, server) -> Verdict:
    """Exercise 2: `token_loop(sender, pieces, pb_utils)` sends each piece as text_output, stops when the
    client cancels, and ends with the final flag."""
    exercise = "Exercise 2 (the model's token loop)"
    if not callable(token_loop):
        return failed(exercise, f"Pass your function, not {type(token_loop).__name__}.")
    try:
        serve_loop(server, token_loop)
    except CourseError as error:
        return failed(exercise, "The model did not load.", triton_said=error.triton_said or str(error),
                      hint="Read the message: it names the line of answer.py (your function) that failed.")
    since = len(server.log_text().splitlines())
    prompt = chat("What is the capital of France?")
    text = {"text_input": np.array([prompt.encode()], dtype=np.object_)}
    pieces, final, other = [], False, []
    try:
        for piece in stream(server.grpc_address, LOOP_MODEL, text, timeout=SILENCE_S, outputs=None):
            if "text_output" in piece.outputs:
                pieces.append(piece.text("text_output"))
            elif piece.outputs:
                other.extend(piece.outputs)
            final = piece.final
    except InferenceError as error:
        if "sent no response" not in str(error):
            return failed(exercise, f"The stream ended with an error after {len(pieces)} piece(s).",
                          triton_said=error.triton_said or str(error),
                          hint="An exception in token_loop: read the message.")
    expected = _greedy_answer(prompt)
    if other or (final and not pieces):
        return failed(exercise, f"The final flag came, but no response held text_output (outputs seen: "
                                f"{sorted(set(other)) or 'none'}).",
                      hint="pb_utils.Tensor('text_output', np.array([piece.encode()], dtype=np.object_)): Triton "
                           "passes on only the outputs the config declares.")
    if not final:
        entry = _loop_log(server, prompt, since, timeout=2)
        if entry.get("raised"):
            return failed(exercise, f"{len(pieces)} piece(s) arrived, then your loop raised, so no final flag came:",
                          triton_said=entry["raised"], said_by="your token_loop (in the model's log)",
                          hint="Read the message: it names what went wrong in token_loop.")
        return failed(exercise, f"{len(pieces)} piece(s) arrived, then nothing for {SILENCE_S:.0f} s and no final "
                                "flag: the client never learns the answer is complete.",
                      hint="After the loop: sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL).")
    if len(pieces) == 1 and len(pieces[0].split()) > 1:
        return failed(exercise, f"One response held the whole answer {pieces[0]!r}: send one response per piece, "
                                "as it is drawn (that is what makes it a stream).")
    if "".join(pieces) != expected:
        return failed(exercise, f"The pieces joined give {''.join(pieces)!r}; the model's answer is {expected!r}.",
                      hint="Send every piece, in order, unchanged.")
    # Cancellation: the client cancels after two pieces; the loop must stop drawing.
    cancel_prompt = chat("Write a long story about a robot.")
    arrived: list = []
    grpc = clients.client(server.grpc_address, "grpc")
    grpc.start_stream(callback=lambda result, error: arrived.append(error))
    grpc.async_stream_infer(LOOP_MODEL, clients.infer_inputs(
        {"text_input": np.array([cancel_prompt.encode()], dtype=np.object_)}, "grpc"))
    deadline = time.monotonic() + 60
    while len(arrived) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    grpc.stop_stream(cancel_requests=True)
    grpc.close()
    entry = _loop_log(server, cancel_prompt, since, timeout=30)
    if not entry:
        return failed(exercise, "After the client cancelled, your loop did not return within 30 s.",
                      hint="Check sender.is_cancelled() before sending each piece, and break when it is true.")
    if entry["drawn"] >= LOOP_MAX_TOKENS:
        return failed(exercise, f"The client cancelled after 2 pieces, and your loop still drew all "
                                f"{entry['drawn']} pieces: the model went on generating for nobody.",
                      hint="for piece in pieces: if sender.is_cancelled(): break ... (then still send the final "
                           "flag).")
    return passed(exercise, f"{len(pieces)} pieces streamed, then the final flag; the client cancelled after 2 "
                            f"pieces and your loop stopped drawing (fewer than the {LOOP_MAX_TOKENS} an answer may "
                            "have).")

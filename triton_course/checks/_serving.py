"""What the lab checks share: load a learner's config.pbtxt on the lab's server, read the config
Triton made of it, reload a model, and send a short burst of concurrent requests.

The learner's text is written as it is and loaded by Triton itself, so a mistake is reported in
Triton's own words (a parse error included); the checks then look at the config as the server
reports it, with Triton's defaults filled in.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from ..clients import infer_inputs
from ..errors import ModelLoadError, suggest_fix
from ..loadgen import statistics_totals
from ..model_config import ModelConfig, parse_config, to_text
from . import Verdict, failed


def answer_text(answer) -> str | None:
    """The config text of an answer given as text or as a ModelConfig message; None otherwise."""
    if isinstance(answer, ModelConfig):
        return to_text(answer)
    if isinstance(answer, str) and answer.strip():
        return answer
    return None


def load_answer(server, model: str, answer, exercise: str,
                hints: dict[str, str] | None = None) -> tuple[dict | None, Verdict | None]:
    """Write `answer` as `model`/config.pbtxt in the server's repository and load it.

    Returns (the config as the server reports it, None), or (None, a failed Verdict that quotes
    Triton). `hints` maps a piece of Triton's message to the hint for it (first match wins)."""
    text = answer_text(answer)
    if text is None:
        return None, failed(exercise, f"Your answer is {type(answer).__name__} {answer!r:.60}: write the text of "
                            "config.pbtxt as a Python string (between triple quotes).",
                            hint='CONFIG = """\nname: "..."\n...\n"""')
    model_dir = Path(server.repository) / model
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "config.pbtxt").write_text(text)
    try:
        server.load_model(model)
    except ModelLoadError as error:
        message = error.problems[0].message
        hint = next((h for part, h in (hints or {}).items() if part in message), None) or suggest_fix(message)
        return None, failed(exercise, f"Triton refused to load '{model}' with your config.pbtxt.",
                            triton_said=message, hint=hint)
    with server.http_client() as client:
        return client.get_model_config(model), None


def reload(server, model: str) -> str | None:
    """Load `model` afresh; None, or Triton's message when it fails. Unloaded first: a failed reload
    would leave an earlier good load serving."""
    try:
        server.unload_model(model)
    except Exception:  # noqa: BLE001 - it was not loaded
        pass
    try:
        server.load_model(model)
    except ModelLoadError as error:
        return error.problems[0].message
    return None


def learner_config(answer) -> ModelConfig:
    """The learner's own config (what they wrote, without Triton's defaults). Call only after
    Triton loaded it: it parses then."""
    return parse_config(answer_text(answer))


def burst(server, model: str, inputs: dict, requests: int = 16, clients: int = 8) -> list[str]:
    """`requests` requests from `clients` threads at once (HTTP); Triton's error messages, if any."""
    from tritonclient.utils import InferenceServerException

    errors: list[str] = []
    lock = threading.Lock()
    per_client = [requests // clients + (1 if i < requests % clients else 0) for i in range(clients)]
    start = threading.Barrier(clients)

    def client_thread(count: int) -> None:
        triton = server.http_client()
        try:
            tensors = infer_inputs(inputs, "http")
            start.wait()  # every client sends at the same moment: that is what lets batches form
            for _ in range(count):
                try:
                    triton.infer(model, tensors)
                except InferenceServerException as exc:
                    with lock:
                        errors.append(exc.message())
        finally:
            triton.close()

    threads = [threading.Thread(target=client_thread, args=(n,), daemon=True) for n in per_client]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return errors


def read_until(read, done, timeout: float = 2.0):
    """`read()` again until `done(value)` holds or `timeout` seconds pass; the last value. Triton counts a request
    in its statistics a moment after the client has the answer: a count read at once can miss the last ones."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def statistics(server, model: str) -> dict:
    """Triton's statistics answer for `model` (GET /v2/models/<model>/stats), as the HTTP client gives it."""
    with server.http_client() as client:
        return client.get_inference_statistics(model)


def executions_by_batch_size(stats: dict) -> dict[int, int]:
    """The course's reading of batch_stats: batch size -> how many times the model ran that size."""
    return statistics_totals(stats)["batches"]

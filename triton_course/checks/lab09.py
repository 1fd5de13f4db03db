"""Checks for lab 09 (ensembles): the learner's ensemble config, loaded by the lab's server next to
the three step models and sent JPEG files, the learner's client for it, and a python-backend model
of the learner's own (model.py), loaded by the same server and called."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from .. import clients, ensemble
from ..artifact import INPUT_NAME, NUM_CLASSES, OUTPUT_NAME, labels, reference_config
from ..errors import InferenceError
from ..inference import classify, infer
from ..model_config import ModelConfig, build_config, tensor
from ..photos import jpeg_bytes, photos, preprocess
from ..repository import write_config, write_file
from . import Verdict, failed, passed
from ._serving import load_answer, reload

MODEL = "jpeg_to_labels"  # the ensemble exercise 1 writes
CLASSIFIER = reference_config().name
STEPS = {  # step model -> (its inputs, its outputs): the names a map's keys must use
    ensemble.PREPROCESS: ([ensemble.IMAGE_INPUT], [INPUT_NAME]),
    CLASSIFIER: ([INPUT_NAME], [OUTPUT_NAME]),
    ensemble.POSTPROCESS: ([OUTPUT_NAME], ["labels", "scores"]),
}


def step_models(repository: str | Path) -> list[str]:
    """The three models the ensemble chains (the course model, preprocess, postprocess) in `repository`,
    without the course's own ensemble and BLS model: writing the ensemble is the exercise."""
    repository = Path(repository)
    ensemble.add_pipeline(repository, reference_config(), _onnx(), top_k=5)
    for name in (ensemble.ENSEMBLE, ensemble.BLS):
        shutil.rmtree(repository / name)
    return list(STEPS)


def _onnx() -> Path:
    from ..artifact import ensure_onnx

    return ensure_onnx()


def _names() -> str:
    return "; ".join(f"{model}: inputs {ins}, outputs {outs}" for model, (ins, outs) in STEPS.items())


_LOAD_HINTS = {
    "mapped from non-existing output":
        "In a step's output_map the key is one of that step model's own output names, the value a name you choose "
        f"for the ensemble. The steps' tensors: {_names()}.",
    "non-existing input":
        "In a step's input_map the key is one of that step model's own input names. The steps' tensors: "
        f"{_names()}.",
    "is not connected":
        "Each value in an input_map must be an ensemble input or a value some step's output_map writes: follow "
        "the names from 'image' to 'labels' and 'scores'.",
    "is not used":
        "Every ensemble output must be written by a step: the postprocess step's output_map needs "
        "a key for each of its outputs, with the ensemble output's name as value.",
    "contains models that are not available":
        f"model_name must name a model the server has loaded: {', '.join(STEPS)}.",
    "inconsistent data type":
        "The ensemble's input and outputs must have the steps' datatypes: image TYPE_STRING, labels TYPE_STRING, "
        "scores TYPE_FP32.",
    "inconsistent shape":
        "The ensemble's dims must match the steps': image [1], labels [5], scores [5].",
    "allows maximum batch size":
        "An ensemble's max_batch_size may not exceed any step's: use 8.",
    "at least one version must be available":
        f"An ensemble has no file, but it needs an empty version folder: {MODEL}/1/.",
    "directory name must equal model name":
        f"The name field must be the folder's name, '{MODEL}' (or leave name out).",
    "Expected":
        "Check the syntax at the line:column shown: maps are written input_map { key: \"...\" value: \"...\" }.",
}


def _test_jpegs(names=("coffee", "flower")) -> dict[str, bytes]:
    return {name: jpeg_bytes(photos()[name]) for name in names}


def _classifier_answers(server, jpegs: dict[str, bytes]) -> list[str]:
    """Top-1 of the classifier itself on client-side preprocessed photos: what the ensemble must match."""
    return [top[0][0] for top in classify(list(jpegs.values()), server.http_url, model=CLASSIFIER, k=1)]


def check_ensemble_config(server, answer, model: str = MODEL) -> Verdict:
    """Exercise 1: an ensemble that takes JPEG bytes and returns the top-5 labels and scores, loaded by the
    server and sent two photos."""
    exercise = "Exercise 1 (ensemble config)"
    served, refusal = load_answer(server, model, answer, exercise, _LOAD_HINTS)
    if refusal is not None:
        return refusal
    if served.get("platform") != "ensemble":
        return failed(exercise, f"'{model}' loaded with platform {served.get('platform')!r}, not as an ensemble.",
                      hint='Write platform: "ensemble" and the steps under ensemble_scheduling { step [ ... ] }.')
    jpegs = _test_jpegs()
    try:
        answers = ensemble.classify_bytes(server.http_url, list(jpegs.values()), model=model)
    except InferenceError as error:
        return failed(exercise, f"Triton loaded '{model}', but refused two JPEG files sent to it.",
                      triton_said=error.triton_said,
                      hint="The ensemble's input is 'image' (TYPE_STRING, dims [1]); its outputs 'labels' and "
                           "'scores' (dims [5]).")
    expected = _classifier_answers(server, jpegs)
    got = [top[0][0] for top in answers]
    if got != expected or any(len(top) != 5 for top in answers):
        return failed(exercise, f"For {list(jpegs)} the ensemble answers {got}; the classifier says {expected}.",
                      hint="Check that the steps are chained in order: image -> preprocess -> classifier -> "
                           "postprocess -> labels, scores.")
    shown = ", ".join(f"{name} -> {label}" for name, label in zip(jpegs, got))
    return passed(exercise, f"Triton loaded the ensemble '{model}'; two JPEG files in, labels out ({shown}), as the "
                  "classifier answers them.")


def check_client(server, top_labels, model: str = MODEL) -> Verdict:
    """Exercise 2: `top_labels(url, jpegs)` sends the encoded files to the ensemble in one request and
    returns the most likely label of each, as str."""
    exercise = "Exercise 2 (a client for the ensemble)"
    if not callable(top_labels):
        return failed(exercise, f"Pass your function itself (top_labels), not {type(top_labels).__name__}.")
    with server.http_client() as client:
        if not client.is_model_ready(model):
            return failed(exercise, f"The ensemble '{model}' is not loaded: make exercise 1 pass first.")
    jpegs = _test_jpegs(tuple(photos()))
    expected = [top[0][0] for top in ensemble.classify_bytes(server.http_url, list(jpegs.values()), model=model)]
    from tritonclient.utils import InferenceServerException

    try:
        got = top_labels(server.http_url, list(jpegs.values()))
    except (InferenceServerException, InferenceError) as error:
        said = error.message() if isinstance(error, InferenceServerException) else error.triton_said
        hint = ("Send a [N, 1] BYTES tensor, one row per file: np.array([[data] for data in jpegs], dtype=object)."
                if "unexpected shape" in (said or "") else
                "The input is 'image' with datatype BYTES; ask for the output 'labels'.")
        return failed(exercise, "Triton refused your request.", triton_said=said or "", hint=hint)
    except Exception as exc:  # noqa: BLE001 - the learner's code: report what it raised
        return failed(exercise, f"Your function raised {type(exc).__name__}: {exc}")
    if not isinstance(got, list) or len(got) != len(expected):
        return failed(exercise, f"For {len(jpegs)} files your function returned {got!r:.120}; return a list with one "
                      "label per file, in order.")
    if all(isinstance(g, bytes) for g in got):
        return failed(exercise, f"Your labels are bytes ({got[0]!r}); BYTES outputs arrive as bytes: .decode() them.")
    if any(isinstance(g, (list, tuple)) or hasattr(g, "shape") for g in got):
        return failed(exercise, f"You returned {got[0]!r:.80} for the first file; return only the most likely "
                      "label (the first of the row), as str.")
    if got != expected:
        return failed(exercise, f"Your labels {got} differ from the ensemble's {expected} for {list(jpegs)}.",
                      hint="Keep the files' order; the first label of each row is the most likely one.")
    return passed(exercise, f"your client sent {len(jpegs)} JPEG files in one request and read back the ensemble's "
                  "most likely label for each, in order.")


# Exercise 3: a python-backend model of the learner's own. The check writes the config and labels.txt;
# the learner writes model.py. A batching delay lets two requests sent together reach one execute() call.
TOP_LABEL = "top_label"
BAD_LOGITS_MESSAGE = "logits must be finite numbers"


def top_label_config() -> ModelConfig:
    """The classifier's logits in, the most likely label out (one per row)."""
    config = build_config(TOP_LABEL, backend="python", max_batch_size=8,
                          inputs=[tensor(OUTPUT_NAME, "TYPE_FP32", [NUM_CLASSES])],
                          outputs=[tensor("label", "TYPE_STRING", [1])])
    config.dynamic_batching.max_queue_delay_microseconds = 200_000
    return config


def _install_python_model(server, model_py: str) -> None:
    model_dir = Path(server.repository) / TOP_LABEL
    write_file(model_dir / "1" / "model.py", model_py)
    write_file(model_dir / "labels.txt", "\n".join(labels()) + "\n")
    write_config(model_dir, top_label_config())


def _logits(server, names=("coffee", "flower")) -> tuple[np.ndarray, list[str]]:
    """Real logits of the classifier for two photos, and the label each one's largest logit names."""
    batch = np.stack([preprocess(photos()[name]) for name in names])
    logits = infer(server.http_url, batch, model=CLASSIFIER).astype(np.float32)
    return logits, [labels()[int(i)] for i in logits.argmax(axis=1)]


def _send(triton, logits: np.ndarray):
    return triton.async_infer(TOP_LABEL, clients.infer_inputs({OUTPUT_NAME: logits.astype(np.float32)}, "http"),
                              outputs=clients.requested_outputs(["label"], "http"))


def _said(error: Exception) -> str:
    return error.message() if hasattr(error, "message") and callable(error.message) else str(error)


COUNT_MISMATCH = "do not match the number of InferenceRequest objects"  # the python backend's words


def _execute_hint(said: str) -> str:
    if COUNT_MISMATCH in said:
        return ("execute must return exactly one response per request, in the requests' order: append one "
                "InferenceResponse (outputs, or error=pb_utils.TritonError(...)) for every request, "
                "the refused ones too.")
    return ("Triton's message names what went wrong in your execute; the server log (server.log_text()) has "
            "the traceback.")


def check_python_model(server, model_py) -> Verdict:
    """Exercise 3: the learner's model.py, served by the python backend as 'top_label': two rows of real
    logits in one request give the two labels; a request with NaN logits gets its own error, and a good
    request that runs in the same execute() call is still answered."""
    exercise = "Exercise 3 (a python-backend model)"
    if not isinstance(model_py, str) or "class TritonPythonModel" not in model_py:
        return failed(exercise, f"MODEL_PY is {type(model_py).__name__} {model_py!r:.60}: write the whole model.py "
                      "as a string, with a class named TritonPythonModel.",
                      hint='MODEL_PY = """\nimport numpy as np\nimport triton_python_backend_utils as pb_utils\n\n'
                           'class TritonPythonModel:\n    ...\n"""')
    try:
        compile(model_py, "model.py", "exec")
    except SyntaxError as error:
        return failed(exercise, f"model.py is not valid Python: line {error.lineno}: {error.msg}.",
                      hint="Fix the line shown; Triton would refuse to load the model for the same reason.")
    _install_python_model(server, model_py)
    said = reload(server, TOP_LABEL)
    if said is not None:
        return failed(exercise, f"Triton refused to load '{TOP_LABEL}' with your model.py: initialize (or the "
                      "import of the file) raised.", triton_said=said,
                      hint="Read the exception in Triton's message. labels.txt is in the model's folder, "
                           "args['model_repository'].")
    logits, expected = _logits(server)
    with clients.client(server, "http", concurrency=2) as triton:
        try:
            result = _send(triton, logits).get_result()
        except Exception as error:  # noqa: BLE001 - tritonclient's InferenceServerException
            said = _said(error)
            return failed(exercise, "Triton answered two rows of good logits with an error.", triton_said=said,
                          hint=_execute_hint(said))
        label = result.as_numpy("label")
        if label is None:
            returned = [o["name"] for o in result.get_response().get("outputs", [])]
            return failed(exercise, f"The response has no output 'label' (it has {returned}).",
                          hint="Name the output tensor as the config does: pb_utils.Tensor(\"label\", array).")
        got = [value.decode() if isinstance(value, bytes) else str(value) for value in label.reshape(-1)]
        if label.shape != (2, 1) or got != expected:
            return failed(exercise, f"For two rows of logits your model answered {got} with shape "
                          f"{list(label.shape)}; expected {expected} with shape [2, 1].",
                          hint="One label per row: the label at the index of the row's largest logit, as an object "
                               "array of shape [rows, 1].")
        bad = logits[:1].copy()
        bad[0, 0] = np.nan
        refused, served = _send(triton, bad), _send(triton, logits[1:])  # sent together: one execute() call
        try:
            refused.get_result()
            return failed(exercise, "A request whose logits hold NaN got an answer.",
                          hint="Check each request with np.isfinite(logits).all() and answer a bad one with "
                               f"pb_utils.InferenceResponse(error=pb_utils.TritonError(\"{BAD_LOGITS_MESSAGE} ...\")).")
        except Exception as error:  # noqa: BLE001
            said = _said(error)
        try:
            second = served.get_result().as_numpy("label")
        except Exception as error:  # noqa: BLE001
            said = _said(error)
            if COUNT_MISMATCH in said:
                return failed(exercise, "Your execute() returned fewer responses than it got requests when a NaN "
                              "request and a good one came together, so Triton failed both.", triton_said=said,
                              hint=_execute_hint(said))
            return failed(exercise, "A good request that arrived with the NaN one was refused too: the whole "
                          "execute() call failed.", triton_said=said,
                          hint="Do not raise in execute: give only the bad request an error response, "
                               "pb_utils.InferenceResponse(error=pb_utils.TritonError(...)), and serve the others.")
    if BAD_LOGITS_MESSAGE not in said:
        return failed(exercise, "The NaN request was refused, but not with your own message.", triton_said=said,
                      hint=f"Answer it with pb_utils.TritonError(\"{BAD_LOGITS_MESSAGE} ...\").")
    return passed(exercise, f"Triton loaded your model.py; two rows of logits gave {expected}; the NaN request was "
                  f"refused with your message while a request sent with it got '{second.reshape(-1)[0].decode()}'.")

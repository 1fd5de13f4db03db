"""Checks of lab 03 (config.pbtxt and the first inference): a config loaded on a real server, and a
client function compared with the model's real answers."""

from __future__ import annotations

import math

from tritonclient.grpc import model_config_pb2 as mc

from .. import artifact, inference, photos, repository
from ..errors import ConfigError, suggest_fix
from ..model_config import parse_config
from . import Verdict, failed, passed
from ._serving import reload

LAB_MODEL = "lab03_classifier"
MAX_BATCH_SIZE = 4
ITEM_DIMS = {artifact.INPUT_NAME: [3, artifact.IMAGE_SIZE, artifact.IMAGE_SIZE],
             artifact.OUTPUT_NAME: [artifact.NUM_CLASSES]}
PHOTOS = ("coffee", "flower", "chelsea")  # the answers the client function is compared on


def _datatype(value: int) -> str:
    return mc.DataType.Name(value)


def _tensor_problems(kind: str, tensors, config, expected_name: str) -> list[str]:
    problems = []
    names = [t.name for t in tensors]
    if len(tensors) != 1:
        problems.append(f"the config has {len(tensors)} {kind} blocks ({', '.join(names) or 'none'}); "
                        f"the model has exactly one {kind}, '{expected_name}'")
    tensor = next((t for t in tensors if t.name == expected_name), None)
    if tensor is None:
        if len(tensors) == 1:
            problems.append(f"{kind} '{tensors[0].name}' is not a tensor of the model: its {kind} is called "
                            f"'{expected_name}'")
        return problems
    if tensor.data_type != mc.TYPE_FP32:
        problems.append(f"{kind} '{expected_name}' has data_type {_datatype(tensor.data_type)}; the model's "
                        "tensor is float32, which Triton calls TYPE_FP32")
    dims, item = list(tensor.dims), ITEM_DIMS[expected_name]
    if dims != item:
        if config.max_batch_size > 0 and dims[1:] == item:
            problems.append(f"{kind} '{expected_name}' has dims {dims}: with max_batch_size > 0 Triton adds the batch "
                            f"dimension itself, so dims is one image's shape, {item}")
        else:
            problems.append(f"{kind} '{expected_name}' has dims {dims}; one item of it is {item}")
    if kind == "output" and tensor.label_filename != "labels.txt":
        problems.append(f"output '{expected_name}' has label_filename {tensor.label_filename!r}; "
                        "the class names are in 'labels.txt'")
    return problems


def config_problems(config) -> list[str]:
    """What differs from the exercise's config, one line per field."""
    problems = []
    if config.name not in ("", LAB_MODEL):
        problems.append(f"name is '{config.name}', but the model's folder (and so its name) is '{LAB_MODEL}'")
    if not (config.platform == "onnxruntime_onnx" or config.backend == "onnxruntime"):
        said = f"platform {config.platform!r}" if config.platform else f"backend {config.backend!r}"
        problems.append(f"{said}: the ONNX file is served by platform \"onnxruntime_onnx\" "
                        "(or backend \"onnxruntime\")")
    if config.max_batch_size != MAX_BATCH_SIZE:
        problems.append(f"max_batch_size is {config.max_batch_size}; the exercise asks for batches of up to "
                        f"{MAX_BATCH_SIZE} images")
    problems += _tensor_problems("input", config.input, config, artifact.INPUT_NAME)
    problems += _tensor_problems("output", config.output, config, artifact.OUTPUT_NAME)
    return problems


def _install(repository_path, config_text: str):
    """The lab model's folder with the learner's config, the model file and the labels."""
    model_dir = repository_path / LAB_MODEL
    repository.add_version(repository_path, LAB_MODEL, 1, artifact.ensure_onnx())
    repository.write_file(model_dir / "labels.txt", "\n".join(artifact.labels()) + "\n")
    (model_dir / "config.pbtxt").write_text(config_text)
    return model_dir


def check_config(config_text: str, server) -> Verdict:
    """Exercise 1: the config text parses, says what the exercise asks, and Triton loads it and
    serves a batch of MAX_BATCH_SIZE images (the server runs in explicit model-control mode)."""
    exercise = "Exercise 1"
    try:
        config = parse_config(config_text)
    except ConfigError as error:
        return failed(exercise, "config_text does not parse as a Triton ModelConfig", triton_said=error.triton_said,
                      hint=error.fix)
    problems = config_problems(config)
    _install(server.repository, config_text)
    said = reload(server, LAB_MODEL)
    if said is not None:
        return failed(exercise, *(problems or ["Triton refused to load it"]), triton_said=said,
                      hint=suggest_fix(said))
    if problems:
        return failed(exercise, *problems, hint="Triton loaded it, but it is not the config the exercise asks for.")
    images = [photos.photo(name) for name in ("coffee", "flower", "china", "rocket")][:MAX_BATCH_SIZE]
    answers = inference.classify(images, server.http_url, model=LAB_MODEL, k=1, max_batch_size=MAX_BATCH_SIZE)
    first = answers[0][0][0]
    return passed(exercise, f"Triton loaded '{LAB_MODEL}' and answered a batch of {len(images)} images "
                            f"({first} for the coffee).")


def _is_pair(item) -> bool:
    return isinstance(item, (tuple, list)) and len(item) == 2


def check_top5(top5, server, protocol: str = "http") -> Verdict:
    """Exercise 2 (and the stretch, over gRPC): `top5(address, image)` returns the model's five most
    likely (label, probability) pairs for one PIL image, most likely first."""
    exercise = "Exercise 2" if protocol == "http" else "Stretch exercise"
    address = server.http_address if protocol == "http" else server.grpc_address
    truths = inference.classify([photos.photo(n) for n in PHOTOS], server.http_url, k=5)
    for name, truth in zip(PHOTOS, truths):
        try:
            answer = top5(address, photos.photo(name))
        except Exception as error:  # noqa: BLE001 - the learner's code may raise anything
            return _raised(exercise, name, error)
        verdict = _compare(exercise, name, answer, truth)
        if verdict is not None:
            return verdict
    protocol_name = {"http": "HTTP", "grpc": "gRPC"}[protocol]
    return passed(exercise, f"your {protocol_name} client gives the model's own top 5 for "
                            f"{', '.join(PHOTOS)} ({truths[0][0][0]} first for the coffee).")


def _raised(exercise: str, name: str, error: Exception) -> Verdict:
    """What the learner's function raised: Triton's refusal, the client's, or something else."""
    message = error.message() if hasattr(error, "message") and callable(error.message) else str(error)
    problem = f"top5(address, photo '{name}') raised {type(error).__name__}"
    if "data-type is" in message or "unexpected datatype" in message:
        hint = ("Send float32 data and declare it \"FP32\": "
                "InferInput('input', list(x.shape), 'FP32') with x = photos.preprocess(image)[np.newaxis].")
    else:
        hint = suggest_fix(message)
    if "InferenceServer" not in type(error).__name__:
        return failed(exercise, f"{problem}: {message}", hint="Run your function by itself on "
                      "photos.photo('coffee') and read the traceback.")
    if message.startswith("got unexpected"):  # tritonclient refused it before sending anything
        return failed(exercise, f"{problem}: tritonclient refused it before sending: {message}", hint=hint)
    return failed(exercise, problem, triton_said=message, hint=hint)


def _compare(exercise: str, name: str, answer, truth) -> Verdict | None:
    if not isinstance(answer, (list, tuple)) or not all(_is_pair(item) for item in answer):
        return failed(exercise, f"for '{name}' it returned {str(answer)[:80]!r}, not a list of (label, probability) "
                                "pairs", hint="Return inference.top_k(logits[0], k=5).")
    if len(answer) != 5:
        return failed(exercise, f"for '{name}' it returned {len(answer)} pairs, not 5", hint="Ask top_k for k=5.")
    labels, values = [a[0] for a in answer], [a[1] for a in answer]
    true_labels, true_values = [t[0] for t in truth], [t[1] for t in truth]
    if not all(isinstance(label, str) for label in labels):
        return failed(exercise, f"for '{name}' the labels are {labels}, not class names",
                      hint="Map each class index to its name (artifact.labels(), or inference.top_k does it).")
    if labels == true_labels[::-1]:
        return failed(exercise, f"for '{name}' the most likely class comes last",
                      hint="Sort from most to least likely.")
    if labels != true_labels:
        said = (f"it says {labels[0]!r} first; the model says {true_labels[0]!r}" if labels[0] != true_labels[0]
                else f"its top 5 is {', '.join(labels)}")
        return failed(exercise, f"for '{name}' {said} (the model's top 5: {', '.join(true_labels)})",
                      hint="Send exactly photos.preprocess(image): Triton does not preprocess.")
    if not all(isinstance(v, (int, float)) and 0 <= v <= 1 for v in values) or sum(values) > 1 + 1e-6:
        return failed(exercise, f"for '{name}' the scores {[round(float(v), 2) for v in values]} are not "
                                "probabilities: those are the raw logits",
                      hint="Apply the softmax over all 1000 logits (inference.top_k does it).")
    if not all(math.isclose(v, t, abs_tol=1e-3) for v, t in zip(values, true_values)):
        return failed(exercise, f"for '{name}' the probabilities {[round(v, 3) for v in values]} differ from the "
                                f"model's {[round(t, 3) for t in true_values]}",
                      hint="Take the softmax over all 1000 logits, not over the five best.")
    return None

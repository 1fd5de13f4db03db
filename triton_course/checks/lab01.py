"""Checks of lab 01 (the model artifact): reading an ONNX model's interface, and preprocessing by hand,
judged by what the real model served by Triton answers."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from .. import artifact, inference, photos
from . import Verdict, failed, passed

TOLERANCE = 1e-4  # float32 rounding; anything larger is a different picture


def _interface(path: Path) -> dict:
    """The truth: tensor name -> (ONNX element type name, dims with symbolic ones by name)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    result = {}
    for value in [*model.graph.input, *model.graph.output]:
        tensor = value.type.tensor_type
        dims = [d.dim_param if d.HasField("dim_param") else d.dim_value for d in tensor.shape.dim]
        result[value.name] = (onnx.TensorProto.DataType.Name(tensor.elem_type), dims)
    return result


def _second_model(folder: Path) -> Path:
    """A small real ONNX model with another interface, so that typed-in answers do not pass:
    uint8 pixels [n, 224, 224, 3] -> float scores [n, 10] (mean colour times a weight matrix)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(np.linspace(-1, 1, 30, dtype=np.float32).reshape(3, 10), "weights")
    graph = helper.make_graph(
        [helper.make_node("Cast", ["pixels"], ["as_float"], to=TensorProto.FLOAT),
         helper.make_node("ReduceMean", ["as_float"], ["colour"], axes=[1, 2], keepdims=0),
         helper.make_node("MatMul", ["colour", "weights"], ["scores"])],
        "lab01_second_model",
        [helper.make_tensor_value_info("pixels", TensorProto.UINT8, ["n", 224, 224, 3])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["n", 10])],
        initializer=[weights])
    # IR version 8: onnxruntime reads up to 11, and onnx would write its newest.
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    path = folder / "second.onnx"
    onnx.save(model, str(path))
    return path


def check_interface(model_interface) -> Verdict:
    """Exercise 1: `model_interface(path)` returns {tensor name: (element type name, dims)} for every
    input and output, symbolic dimensions by their name; tried on the course model and on another one."""
    exercise = "Exercise 1"
    with tempfile.TemporaryDirectory(prefix="lab01-") as folder:
        for path in (artifact.ensure_onnx(), _second_model(Path(folder))):
            truth = _interface(path)
            which = "the course model" if path.name == "model.onnx" else "a second model (uint8 pixels -> scores)"
            try:
                answer = model_interface(path)
            except Exception as error:  # noqa: BLE001 - the learner's code may raise anything
                return failed(exercise, f"on {which} it raised {type(error).__name__}: {error}")
            problems = _interface_problems(answer, truth, which)
            if problems:
                return failed(exercise, *problems[:4], hint=_interface_hint(problems))
    course = _interface(artifact.ensure_onnx())
    return passed(exercise, "right for the course model ("
                  + ", ".join(f"{name} {kind} {dims}" for name, (kind, dims) in course.items())
                  + ") and for a second model.")


def _interface_problems(answer, truth: dict, which: str) -> list[str]:
    if not isinstance(answer, dict):
        return [f"on {which} it returned {type(answer).__name__}, not a dict"]
    problems = []
    missing = [name for name in truth if name not in answer]
    extra = [name for name in answer if name not in truth]
    if missing:
        problems.append(f"on {which} the tensors {missing} are missing (the model has {list(truth)}: inputs and "
                        "outputs)")
    if extra:
        problems.append(f"on {which} {extra} are not tensors of the model")
    for name in truth:
        if name not in answer:
            continue
        kind, dims = truth[name]
        given = answer[name]
        if not isinstance(given, (tuple, list)) or len(given) != 2:
            problems.append(f"on {which} '{name}' is {given!r}, not an (element type, dims) pair")
            continue
        given_kind, given_dims = given
        if given_kind != kind:
            problems.append(f"on {which} '{name}' has element type {given_kind!r}; ONNX calls it {kind!r}")
        if list(given_dims) != dims:
            problems.append(f"on {which} '{name}' has dims {list(given_dims)}; the model says {dims}")
    return problems


def _interface_hint(problems: list[str]) -> str:
    text = " ".join(problems)
    if "dims [0," in text:
        return ("A symbolic dimension has no dim_value (it reads 0): use d.dim_param when d.HasField('dim_param'), "
                "else d.dim_value.")
    if "element type" in text:
        return "Turn the number elem_type into its name with onnx.TensorProto.DataType.Name(elem_type)."
    if "missing" in text or "not tensors" in text:
        return "Go through model.graph.input and model.graph.output, and read everything from the file."
    return "Read names, element types and dims from the file with onnx.load(path).graph."


# --- exercise 2 ---------------------------------------------------------------------------------

def _variants(image: Image.Image) -> dict[str, np.ndarray]:
    """Tensors made with the mistakes people make, to name the one the learner made."""
    image = image.convert("RGB")
    reference = photos.preprocess(image)

    def scaled(array):
        return ((np.asarray(array, dtype=np.float32) - 127.0) / 128.0).transpose(2, 0, 1)

    def cropped(resample, box=None):
        width, height = image.size
        scale = 256 / min(width, height)
        big = image.resize((round(width * scale), round(height * scale)), resample)
        w, h = big.size
        left, top = ((w - 224) // 2, (h - 224) // 2) if box is None else box
        return big.crop((left, top, left + 224, top + 224))

    return {
        "the photo squashed straight to 224x224, without keeping its proportions":
            scaled(image.resize((224, 224), Image.BICUBIC)),
        "a crop from the top-left corner instead of the centre": scaled(cropped(Image.BICUBIC, (0, 0))),
        "bilinear resizing instead of bicubic": scaled(cropped(Image.BILINEAR)),
        "the photo reshaped to 3x224x224 without moving the colour axis first":
            np.ascontiguousarray(reference.transpose(1, 2, 0)).reshape(3, 224, 224),
        "the colour channels in BGR order instead of RGB": reference[::-1].copy(),
    }


def _tensor_problem(name: str, x) -> tuple[str, str] | None:
    """(problem, hint) for a tensor of the wrong kind, or None."""
    if not isinstance(x, np.ndarray):
        return f"for '{name}' it returned {type(x).__name__}, not a NumPy array", "Return a np.ndarray."
    if x.shape == (224, 224, 3):
        return (f"for '{name}' the shape is (224, 224, 3): height x width x colour",
                "The model wants colour first: x.transpose(2, 0, 1).")
    if x.shape == (1, 3, 224, 224):
        return (f"for '{name}' the shape is (1, 3, 224, 224)",
                "Return one image, (3, 224, 224); the check stacks the photos into a batch itself.")
    if x.shape != (3, 224, 224):
        return (f"for '{name}' the shape is {x.shape}, not (3, 224, 224)",
                "Short side to 256, then a centre crop of 224.")
    if x.dtype != np.float32:
        return (f"for '{name}' the dtype is {x.dtype}; the model's input is float32",
                "Convert with .astype(np.float32): Triton refuses any other type for this input.")
    if float(x.max()) > 2:
        return (f"for '{name}' the values go up to {float(x.max()):.0f}: the pixels are not scaled",
                "Scale every pixel as (x - 127) / 128.")
    if float(x.min()) >= 0 and float(x.max()) <= 1:
        return (f"for '{name}' the values lie between 0 and 1 (pixels / 255?)",
                "This model was trained with (x - 127) / 128, values from about -1 to 1.")
    return None


def check_preprocess(preprocess, server) -> Verdict:
    """Exercise 2: `preprocess(image)` makes the tensor the model was trained on, for every course photo;
    the photos, prepared by it, are sent to the real model on `server` and its answers compared."""
    exercise = "Exercise 2"
    names = list(photos.PHOTOS)
    tensors = []
    for name in names:
        image = photos.photo(name)
        try:
            x = preprocess(image)
        except Exception as error:  # noqa: BLE001 - the learner's code may raise anything
            return failed(exercise, f"preprocess(photo '{name}') raised {type(error).__name__}: {error}")
        problem = _tensor_problem(name, x)
        if problem:
            return failed(exercise, problem[0], hint=problem[1])
        tensors.append(x)
    references = [photos.preprocess(photos.photo(name)) for name in names]
    theirs = inference.infer(server.http_url, np.stack(tensors))
    ours = inference.infer(server.http_url, np.stack(references))
    answers = [(name, inference.top_k(a, 1)[0][0], inference.top_k(b, 1)[0][0])
               for name, a, b in zip(names, theirs, ours)]
    for name, x, reference in zip(names, tensors, references):
        difference = float(np.abs(x - reference).max())
        if difference > TOLERANCE:
            variants = _variants(photos.photo(name))
            closest = min(variants, key=lambda v: float(np.abs(variants[v] - x).mean()))
            named = float(np.abs(variants[closest] - x).max()) <= TOLERANCE
            changed = [f"{n}: {mine} (should be {right})" for n, mine, right in answers if mine != right]
            said = (f"the model's top-1 changed for {'; '.join(changed)}" if changed
                    else "the model's top-1 is still right for every photo, but its scores are not the ones "
                         "it was trained to give")
            problem = (f"for '{name}' the tensor differs from the model's preprocessing by up to {difference:.2f}"
                       + (f": it looks like {closest}" if named else ""))
            return failed(exercise, problem, said,
                          hint="Short side to 256 with bicubic resizing, centre crop 224x224, RGB, "
                               "(x - 127) / 128, colour first.")
    return passed(exercise, "your tensors are the model's own preprocessing; Triton answers "
                  + ", ".join(f"{name}: {mine}" for name, mine, _ in answers) + ".")

"""A JPEG in, labels out: preprocessing, the classifier and postprocessing chained inside Triton.

Three models and an ensemble that connects them, built on Triton's ModelConfig protobuf:

    image (BYTES) -> preprocess -> input (FP32 3x224x224) -> classifier -> logits -> postprocess -> labels, scores

and a BLS model that calls the first two itself and adds a rule (below a confidence threshold the
answer is "unsure"), for the logic an ensemble's fixed graph cannot express.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np

from .artifact import INPUT_NAME, NUM_CLASSES, OUTPUT_NAME, labels
from .model_config import ModelConfig, build_config, tensor
from .paths import MODEL_NAME
from .repository import add_model, write_config, write_file

PREPROCESS, POSTPROCESS, ENSEMBLE, BLS = "preprocess", "postprocess", "classify_image", "classify_bls"
IMAGE_INPUT = "image"
DEFAULT_MAX_PIXELS = 40_000_000


def preprocess_config(max_batch_size: int = 8, max_pixels: int = DEFAULT_MAX_PIXELS) -> ModelConfig:
    """Encoded image bytes in (one per row), the classifier's input tensor out."""
    config = build_config(PREPROCESS, backend="python", max_batch_size=max_batch_size,
                          inputs=[tensor(IMAGE_INPUT, "TYPE_STRING", [1])],
                          outputs=[tensor(INPUT_NAME, "TYPE_FP32", [3, 224, 224])])
    config.parameters["max_pixels"].string_value = str(max_pixels)
    return config


def postprocess_config(top_k: int = 5, max_batch_size: int = 8) -> ModelConfig:
    """The classifier's logits in, the top-k labels and their probabilities out."""
    return build_config(POSTPROCESS, backend="python", max_batch_size=max_batch_size,
                        inputs=[tensor(OUTPUT_NAME, "TYPE_FP32", [NUM_CLASSES])],
                        outputs=[tensor("labels", "TYPE_STRING", [top_k]), tensor("scores", "TYPE_FP32", [top_k])])


def ensemble_config(classifier: str = MODEL_NAME, top_k: int = 5, max_batch_size: int = 8) -> ModelConfig:
    """platform "ensemble": the client sends `image`, Triton runs the three steps and returns
    `labels` and `scores`. Each map says which step tensor (key) reads or writes which ensemble
    tensor (value); the names in the middle ("pixels", "logits") exist only inside the ensemble."""
    config = build_config(ENSEMBLE, platform="ensemble", max_batch_size=max_batch_size,
                          inputs=[tensor(IMAGE_INPUT, "TYPE_STRING", [1])],
                          outputs=[tensor("labels", "TYPE_STRING", [top_k]), tensor("scores", "TYPE_FP32", [top_k])])
    steps = config.ensemble_scheduling.step
    steps.add(model_name=PREPROCESS, model_version=-1, input_map={IMAGE_INPUT: IMAGE_INPUT},
              output_map={INPUT_NAME: "pixels"})
    steps.add(model_name=classifier, model_version=-1, input_map={INPUT_NAME: "pixels"},
              output_map={OUTPUT_NAME: "logits"})
    steps.add(model_name=POSTPROCESS, model_version=-1, input_map={OUTPUT_NAME: "logits"},
              output_map={"labels": "labels", "scores": "scores"})
    return config


def bls_config(classifier: str = MODEL_NAME, threshold: float = 0.5, max_batch_size: int = 8) -> ModelConfig:
    config = build_config(BLS, backend="python", max_batch_size=max_batch_size,
                          inputs=[tensor(IMAGE_INPUT, "TYPE_STRING", [1])],
                          outputs=[tensor("label", "TYPE_STRING", [1]), tensor("score", "TYPE_FP32", [1])])
    for key, value in (("preprocess_model", PREPROCESS), ("classifier_model", classifier), ("threshold", threshold)):
        config.parameters[key].string_value = str(value)
    return config


def _python_model(repository: Path, config: ModelConfig, runner: str, with_labels: bool = False) -> Path:
    model_dir = Path(repository) / config.name
    write_file(model_dir / "1" / "model.py", resources.files("triton_course.runner").joinpath(runner).read_text())
    if with_labels:
        write_file(model_dir / "labels.txt", "\n".join(labels()) + "\n")
    write_config(model_dir, config)
    return model_dir


def add_pipeline(repository: str | Path, classifier: ModelConfig, onnx_path: str | Path, *, top_k: int = 5,
                 max_pixels: int = DEFAULT_MAX_PIXELS, bls_threshold: float = 0.5) -> list[str]:
    """The classifier, preprocess, postprocess, the ensemble and the BLS model, in one repository.
    Returns the model names in the order to load them (an ensemble's steps first)."""
    repository = Path(repository)
    add_model(repository, classifier, onnx_path, labels=labels(), filename="model.onnx")
    _python_model(repository, preprocess_config(classifier.max_batch_size, max_pixels), "preprocess_model.py")
    _python_model(repository, postprocess_config(top_k, classifier.max_batch_size), "postprocess_model.py",
                  with_labels=True)
    _python_model(repository, bls_config(classifier.name, bls_threshold, classifier.max_batch_size),
                  "bls_model.py", with_labels=True)
    ensemble_dir = repository / ENSEMBLE
    (ensemble_dir / "1").mkdir(parents=True, exist_ok=True)  # an ensemble has no file, but needs a version
    write_config(ensemble_dir, ensemble_config(classifier.name, top_k, classifier.max_batch_size))
    return [classifier.name, PREPROCESS, POSTPROCESS, ENSEMBLE, BLS]


def image_batch(images: list[bytes]) -> np.ndarray:
    """Encoded images as the [N, 1] BYTES tensor the pipeline takes."""
    return np.array([[image] for image in images], dtype=np.object_)


def classify_bytes(url: str, images: list[bytes], *, model: str = ENSEMBLE, protocol: str = "http",
                   timeout: float = 30.0) -> list[list[tuple[str, float]]]:
    """Send encoded images to the ensemble; top-k (label, probability) per image."""
    from .inference import infer_outputs

    outputs = infer_outputs(url, {IMAGE_INPUT: image_batch(images)}, ["labels", "scores"], model=model,
                            protocol=protocol, timeout=timeout)
    return [[(label.decode(), float(score)) for label, score in zip(row_labels, row_scores)]
            for row_labels, row_scores in zip(outputs["labels"], outputs["scores"])]

"""Sending the course model requests: tritonclient over HTTP or gRPC, and the raw JSON body."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .artifact import INPUT_NAME, OUTPUT_NAME, labels
from .clients import client, infer_inputs, requested_outputs  # their home; the lessons may take them from here
from .errors import InferenceError, ServerStartError
from .paths import MODEL_NAME
from .photos import batch as preprocess_batch


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


@lru_cache(maxsize=1)
def _labels() -> tuple[str, ...]:
    return tuple(labels())


def top_k(logits: np.ndarray, k: int = 5) -> list[tuple[str, float]]:
    """The k most likely ImageNet classes of one row of logits, with softmax probabilities."""
    probs = softmax(np.asarray(logits, dtype=np.float64))
    order = np.argsort(-probs)[:k]
    return [(_labels()[i], float(probs[i])) for i in order]


def infer(url: str, inputs: np.ndarray, *, model: str = MODEL_NAME, protocol: str = "http",
          input_name: str = INPUT_NAME, output_name: str = OUTPUT_NAME, timeout: float = 30.0) -> np.ndarray:
    """Send one batch, return the output as a NumPy array; errors quote Triton and say what to do."""
    return infer_outputs(url, {input_name: inputs}, [output_name], model=model, protocol=protocol,
                         timeout=timeout)[output_name]


def infer_outputs(url: str, inputs: dict[str, np.ndarray], output_names: list[str], *, model: str = MODEL_NAME,
                  protocol: str = "http", timeout: float = 30.0) -> dict[str, np.ndarray]:
    """One request with several named inputs (BYTES ones as object arrays); the outputs by name."""
    from tritonclient.utils import InferenceServerException

    triton = client(url, protocol, timeout=timeout)
    try:
        kwargs = {"client_timeout": timeout} if protocol == "grpc" else {}
        result = triton.infer(model, infer_inputs(inputs, protocol), outputs=requested_outputs(output_names, protocol),
                              **kwargs)
    except InferenceServerException as exc:
        raise InferenceError(f"Triton refused the request to model '{model}' at {url}.",
                             triton_said=exc.message()) from None
    except (ConnectionError, OSError) as exc:
        raise ServerStartError(f"No Triton server answers at {url} ({exc}).",
                               fix="Start one (`triton-course serve`) and pass the URL it prints.") from None
    finally:
        triton.close()
    return {name: result.as_numpy(name) for name in output_names}


def classify(images, url: str, *, model: str = MODEL_NAME, protocol: str = "http", k: int = 5,
             max_batch_size: int = 8) -> list[list[tuple[str, float]]]:
    """Top-k (label, probability) for each image (path, bytes or PIL image), sent in batches."""
    images = list(images)
    results = []
    for start in range(0, len(images), max_batch_size):
        logits = infer(url, preprocess_batch(images[start:start + max_batch_size]), model=model, protocol=protocol)
        results.extend(top_k(row, k) for row in logits)
    return results


def json_request(inputs: np.ndarray, input_name: str = INPUT_NAME, output_name: str = OUTPUT_NAME,
                 class_count: int = 0) -> dict:
    """The KServe v2 JSON body for POST /v2/models/NAME/infer: shape, datatype, flat data."""
    output = {"name": output_name}
    if class_count:
        output["parameters"] = {"classification": class_count}
    return {
        "inputs": [{"name": input_name, "shape": list(inputs.shape), "datatype": "FP32",
                    "data": inputs.astype(np.float32).ravel().tolist()}],
        "outputs": [output],
    }


def request_bytes(inputs: np.ndarray, input_name: str = INPUT_NAME, output_name: str = OUTPUT_NAME) -> int:
    """Bytes of the HTTP body tritonclient sends for `inputs` (its binary tensor extension: a JSON header,
    then the tensor's raw bytes); a gRPC request carries the same raw bytes."""
    import tritonclient.http as httpclient

    body, _ = httpclient.InferenceServerClient.generate_request_body(
        infer_inputs({input_name: inputs}, "http"), outputs=requested_outputs([output_name], "http"))
    return len(body)

"""Making the ONNX model faster on a CPU: onnxruntime's graph optimizations and INT8 quantization.

The CPU counterpart of TensorRT: the same ideas (fuse layers, compute in fewer bits), with
onnxruntime's own tools, measured by serving each variant from Triton.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import numpy as np

from .errors import ConfigError


def optimize_graph(src: str | Path, dst: str | Path, level: str = "extended") -> Path:
    """Save the model as onnxruntime optimizes it at `level` (basic or extended): the work every
    session otherwise does at load time. 'all' adds layout changes for this CPU only, which
    onnxruntime advises against saving, so it is refused here."""
    import onnxruntime as ort

    levels = {"basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
              "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED}
    if level not in levels:
        raise ValueError(f"level '{level}': save 'basic' or 'extended' optimizations ('all' is for this CPU only; "
                         "Triton applies it at load time by default)")
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    options = ort.SessionOptions()
    options.graph_optimization_level = levels[level]
    options.optimized_model_filepath = str(dst)
    ort.InferenceSession(str(src), options, providers=["CPUExecutionProvider"])
    return dst


def _prepared(src: Path, work: Path) -> Path:
    """Shape inference and graph clean-up that onnxruntime's quantizer expects before it runs."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = work / f"{src.stem}.prepared.onnx"
    quant_pre_process(str(src), str(prepared))
    return prepared


def quantize_dynamic_int8(src: str | Path, dst: str | Path) -> Path:
    """INT8 weights; activations are quantized on the fly in every request (no calibration data).

    onnxruntime has no ConvInteger kernel for signed 8-bit weights, so a convolutional model gets
    unsigned ones (QUInt8)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src, dst = Path(src), Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with _quiet():
        quantize_dynamic(str(_prepared(src, dst.parent)), str(dst), weight_type=QuantType.QUInt8)
    return dst


def quantize_static_int8(src: str | Path, dst: str | Path, calibration: np.ndarray, input_name: str = "input",
                         batch_size: int = 1) -> Path:
    """INT8 weights and activations in QDQ form; the activations' ranges are measured on the
    `calibration` inputs, which must look like real requests (preprocessed photos)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    if len(calibration) == 0:
        raise ConfigError("Static quantization needs calibration inputs: none were given.",
                          fix="Pass a few dozen preprocessed images that look like the requests the model serves.")

    class Batches(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(calibration[i:i + batch_size] for i in range(0, len(calibration), batch_size))

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {input_name: batch}

    src, dst = Path(src), Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with _quiet():
        quantize_static(str(_prepared(src, dst.parent)), str(dst), Batches(), quant_format=QuantFormat.QDQ,
                        per_channel=True, weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8)
    return dst


@contextlib.contextmanager
def _quiet():
    """The quantizer logs advice at INFO/WARNING on every run; keep the notebook's output to results."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def size_mb(path: str | Path) -> float:
    return Path(path).stat().st_size / 1e6


def top1_agreement(reference: np.ndarray, other: np.ndarray) -> float:
    """The share of inputs whose top-1 class is the same in both [N, classes] score arrays."""
    if reference.shape != other.shape:
        raise ValueError(f"score arrays differ in shape: {reference.shape} vs {other.shape}")
    return float(np.mean(reference.argmax(axis=1) == other.argmax(axis=1)))


def served_scores(url: str, model: str, inputs: np.ndarray, batch_size: int = 8, protocol: str = "grpc") -> np.ndarray:
    """The model's output for every input row, as Triton serves it, sent in batches."""
    from .inference import infer

    return np.concatenate([infer(url, inputs[i:i + batch_size], model=model, protocol=protocol)
                           for i in range(0, len(inputs), batch_size)])


def verdict(rows: list[dict], reference: str) -> list[str]:
    """Plain statements about measured comparison rows (keys: variant, MB, infer/s, p99 ms,
    top-1 agreement), each against the `reference` variant."""
    base = next(r for r in rows if r["variant"] == reference)
    lines = []
    for row in rows:
        if row is base:
            continue
        speed = row["infer/s"] / base["infer/s"]
        size = row["MB"] / base["MB"]
        agreement = row["top-1 agreement"]
        if speed >= 1.1:
            pays = f"x{speed:.2f} the throughput of {reference}: faster on this CPU, it pays"
        elif speed > 0.9:
            pays = f"x{speed:.2f} the throughput of {reference}: no measurable difference here"
        else:
            pays = f"x{speed:.2f} the throughput of {reference}: slower on this CPU, it does not pay here"
        lines.append(f"{row['variant']}: {pays}, p99 {row['p99 ms']:.1f} ms vs {base['p99 ms']:.1f} ms, "
                     f"file x{size:.2f}, same top-1 as {reference} on {agreement:.0%} of the images.")
    return lines

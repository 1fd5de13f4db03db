"""Making the ONNX model faster on a CPU: onnxruntime's graph optimizations and INT8 quantization.

The CPU counterpart of TensorRT: the same ideas (fuse layers, compute in fewer bits), with
onnxruntime's own tools, measured by serving each variant from Triton.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
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


def verdict(rows: list[dict], reference: str, throughputs: dict[str, Sequence[float]],
            stable: dict[str, bool] | None = None) -> list[str]:
    """Plain statements about measured comparison rows (keys: variant, MB, p99 ms, top-1 agreement), each
    against the `reference` variant. `throughputs` holds every variant's repeated throughputs, measured in
    alternation (verdicts.alternate): a variant is called faster or slower only when all its runs fall on one
    side of all the reference's runs (verdicts.compare); overlapping runs are "within the noise". `stable`
    (per variant: did every run settle?) adds "(measurement not stable)" where one did not."""
    from . import verdicts

    base = next(r for r in rows if r["variant"] == reference)
    stable = stable or {}
    lines = []
    for row in rows:
        if row is base:
            continue
        name = row["variant"]
        judged = verdicts.compare(throughputs[reference], throughputs[name], a_name=reference, b_name=name)
        pays = {verdicts.RAISED: "faster on this CPU, it pays",
                verdicts.LOWERED: "slower on this CPU, it does not pay here",
                verdicts.NOISE: "within the noise (the runs overlap): no gain to count on here"}.get(
                    judged.verdict, "too few runs to tell a difference from the noise")
        shaky = [n for n in (name, reference) if not stable.get(n, True)]
        if shaky:
            pays += f" (measurement not stable: {', '.join(shaky)})"
        size = row["MB"] / base["MB"]
        a, b = judged.a, judged.b
        lines.append(f"{name}: x{judged.ratio:.2f} the throughput of {reference} (medians of {len(b.values)} runs, "
                     f"{b.median:.0f} infer/s in {b.low:.0f}..{b.high:.0f} against {a.median:.0f} in "
                     f"{a.low:.0f}..{a.high:.0f}): {pays}; p99 {row['p99 ms']:.1f} ms vs {base['p99 ms']:.1f} ms, "
                     f"file x{size:.2f}, same top-1 as {reference} on {row['top-1 agreement']:.0%} of the images.")
    return lines

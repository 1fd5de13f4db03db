"""The model with no server in between: the ceiling a served configuration is measured against.

Triton adds work around every inference (receiving the tensor, scheduling, copying it to the
backend, sending the answer back); comparing served throughput with these figures, taken on
the same machine, says how much of the model's own speed a configuration keeps.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .artifact import IMAGE_SIZE, INPUT_NAME


@dataclass
class Limit:
    """Inferences per second the model reached at one batch size, in this process."""

    engine: str
    device: str
    batch_size: int
    throughput: float
    ms_per_batch: float


def _timed(run, batch_size: int, seconds: float, warmup: int, sync=lambda: None) -> tuple[float, float]:
    for _ in range(warmup):
        run()
    sync()
    calls, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        run()
        calls += 1
    sync()
    elapsed = time.perf_counter() - started
    return calls * batch_size / elapsed, elapsed / calls * 1000


def onnx_limits(onnx_path: str | Path, batch_sizes=(1, 4, 8), seconds: float = 2.0, warmup: int = 5,
                threads: int = 0) -> list[Limit]:
    """onnxruntime on the CPU, one session with its default threads (one per core) unless told."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    limits = []
    for b in batch_sizes:
        x = np.random.default_rng(0).random((b, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
        rate, ms = _timed(lambda x=x: session.run(None, {INPUT_NAME: x}), b, seconds, warmup)
        limits.append(Limit("onnxruntime", "CPU", b, rate, ms))
    return limits


def torch_limits(model, device: str = "cuda", batch_sizes=(1, 8, 32), seconds: float = 2.0,
                 warmup: int = 10) -> list[Limit]:
    """A PyTorch (or TorchScript) module on `device`, input copied from host memory each call as
    a server must, output copied back."""
    import torch

    model = model.to(device).eval()
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    limits = []
    for b in batch_sizes:
        host = torch.from_numpy(np.random.default_rng(0).random((b, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32))

        def run(host=host):
            with torch.inference_mode(), torch.jit.optimized_execution(False):  # as the course's runner runs it
                model(host.to(device)).cpu()

        rate, ms = _timed(run, b, seconds, warmup, sync)
        limits.append(Limit("pytorch", device, b, rate, ms))
    return limits


def ceiling(gpu: str | None, batch_sizes=(1, 4, 8), seconds: float = 2.0) -> list[Limit]:
    """The in-process figures a served model is held against, on the device that serves it: the
    TorchScript export with PyTorch on the GPU where the server runs the model there (`gpu`, as
    `server.gpu_for(model)` says), else the ONNX file with onnxruntime on the CPU."""
    from .artifact import ensure_onnx, ensure_torchscript

    if gpu:
        import torch

        return torch_limits(torch.jit.load(str(ensure_torchscript())), "cuda", batch_sizes, seconds)
    return onnx_limits(ensure_onnx(), batch_sizes, seconds)


def best(limits: list[Limit]) -> Limit:
    return max(limits, key=lambda limit: limit.throughput)

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

GRAPH_FROM_HOST = "CUDA graph"  # input copied in from pinned host memory and the output back, as a server must
GRAPH_ON_GPU = "CUDA graph, GPU only"  # the input already on the GPU: the network's own speed


@dataclass
class Limit:
    """Inferences per second the model reached at one batch size, in this process."""

    engine: str
    device: str
    batch_size: int
    throughput: float
    ms_per_batch: float
    precision: str = "FP32"
    method: str = "eager"  # or GRAPH_FROM_HOST, GRAPH_ON_GPU: see triton_course/runner/torch_graphs.py
    card: str = ""  # the GPU's name: a ratio to a GPU's ceiling holds for that card only

    def describe(self) -> str:
        how = "" if self.device == "CPU" else f" {self.precision} {self.method}"
        return (f"{self.engine} on {self.card or self.device}{how}, batch {self.batch_size:>3}: "
                f"{self.throughput:9.1f} infer/s ({self.ms_per_batch:.2f} ms per batch)")

    def where(self) -> str:
        """Where this ceiling ran, as the served-vs-ceiling lines name it."""
        if self.device == "CPU":
            return "onnxruntime on the CPU"
        return f"{self.precision} CUDA graph on this GPU, {self.card or self.device}"


def _card(device: str) -> str:
    from .gpu import torch_device_name  # the course's one GPU probe

    return (torch_device_name() or device) if device.startswith("cuda") else device


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
        limits.append(Limit("pytorch", device, b, rate, ms, "FP32", "eager", _card(device)))
    return limits


def graph_limits(torchscript: str | Path, device: str = "cuda", batch_sizes=(1, 8, 32),
                 precisions=("FP32", "TF32", "FP16"), seconds: float = 2.0) -> list[Limit]:
    """The TorchScript model on the GPU the way an engineer measures it before serving it: at each
    precision, channels-last, replayed from a CUDA graph per batch size, twice: on input already on the
    GPU (the network's own speed), and fed from host memory as a server must (the batch gathered into
    pinned memory, copied in, the output copied back). The course's PyTorch runner runs this same code
    (triton_course/runner/torch_graphs.py)."""
    import torch

    from .runner.torch_graphs import GraphedModel, set_tf32

    limits = []
    try:
        for precision in precisions:
            graphed = GraphedModel(torch.jit.load(str(torchscript)), device, precision,
                                   [((3, IMAGE_SIZE, IMAGE_SIZE), np.float32)], [np.float32], batch_sizes)
            for b in batch_sizes:
                x = np.random.default_rng(0).random((b, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
                rate, ms = _timed(lambda b=b, replay=graphed.replay: replay(b), b, seconds, warmup=3)
                limits.append(Limit("pytorch", device, b, rate, ms, precision, GRAPH_ON_GPU, _card(device)))
                rate, ms = _timed(lambda x=x, run=graphed.run: run([[x]]), b, seconds, warmup=3)
                limits.append(Limit("pytorch", device, b, rate, ms, precision, GRAPH_FROM_HOST, _card(device)))
            del graphed
            torch.cuda.empty_cache()
    finally:
        set_tf32(False)
    return limits


def ceiling(gpu: str | None, batch_sizes=(1, 4, 8), seconds: float = 2.0, precision: str = "FP32") -> list[Limit]:
    """The in-process figures a served model is held against, on the device that serves it: the
    TorchScript export with PyTorch on the GPU where the server runs the model there (`gpu`, as
    `server.gpu_for(model)` says), at the precision it serves and with CUDA graphs as the course's
    runner runs it; else the ONNX file with onnxruntime on the CPU."""
    from .artifact import ensure_onnx, ensure_torchscript

    if gpu:
        return graph_limits(ensure_torchscript(), "cuda", batch_sizes, (precision,), seconds)
    return onnx_limits(ensure_onnx(), batch_sizes, seconds)


def at_batch_size(limits: list[Limit], batch_size: int, precision: str | None = None) -> Limit:
    """The limit measured at `batch_size` (and `precision`), to compare a served figure like with like."""
    for limit in limits:
        if limit.batch_size == batch_size and precision in (None, limit.precision):
            return limit
    raise KeyError(f"no in-process figure at batch size {batch_size}" + (f", {precision}" if precision else ""))


def best(limits: list[Limit]) -> Limit:
    return max(limits, key=lambda limit: limit.throughput)


def at_formed_batch(limits: list[Limit], formed: float, precision: str = "FP32") -> Limit:
    """The ceiling for batches of `formed` requests on average (as Triton's statistics report them): the
    limit at the smallest measured batch size that holds them (the largest measured if none does), at
    `precision`; on a GPU the network's own speed (GRAPH_ON_GPU)."""
    method = "eager" if all(i.device == "CPU" for i in limits) else GRAPH_ON_GPU
    candidates = [i for i in limits if i.precision == precision and i.method == method]
    if not candidates:
        raise KeyError(f"no in-process figure at {precision}")
    return min((i for i in candidates if i.batch_size >= formed - 1e-9), key=lambda i: i.batch_size,
               default=max(candidates, key=lambda i: i.batch_size))


def served_vs_ceiling(label: str, served: float, formed: float, limits: list[Limit], precision: str = "FP32") -> str:
    """One line: a served throughput as a share of the ceiling at the batch size Triton formed, same precision."""
    limit = at_formed_batch(limits, formed, precision)
    return (f"{label}: served {served:.0f} infer/s in batches of {formed:.1f} = {served / limit.throughput:.2f} of "
            f"the ceiling at batch {limit.batch_size} ({limit.where()}: {limit.throughput:.0f} infer/s)")


def ceiling_runs(gpu: str | None, batch_sizes=(1, 4, 8), seconds: float = 1.0, repeats: int = 3,
                 between=None) -> list[list[Limit]]:
    """`ceiling` measured `repeats` times (its run-to-run spread is what a served figure is judged against);
    `between`, if given, is called after each run (e.g. one served measurement, to alternate the two)."""
    runs = []
    for _ in range(repeats):
        runs.append(ceiling(gpu, batch_sizes, seconds))
        if between is not None:
            between()
    return runs


def served_vs_ceiling_runs(label: str, served: list[float], formed: float, runs: list[list[Limit]],
                           precision: str = "FP32"):
    """Served throughputs (one per run) against the ceiling's runs at the batch size Triton formed, same
    precision: a `verdicts.Verdict` whose sentence says "below" or "above" only when the ranges do not overlap,
    and "within the noise" otherwise."""
    from . import verdicts

    limits = [at_formed_batch(run, formed, precision) for run in runs]
    where = limits[0].where()
    return verdicts.compare([limit.throughput for limit in limits], served,
                            a_name=f"the model on its own at batch {limits[0].batch_size} ({where})",
                            b_name=f"{label} (batches of {formed:.1f})",
                            words=("served more than {a_name}", "served less than {a_name}"), min_repeats=1)

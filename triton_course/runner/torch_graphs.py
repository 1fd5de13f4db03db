"""A TorchScript model run on a GPU the way a compiled engine runs: at the precision asked for,
with channels-last memory, and replayed from one CUDA graph per batch-size bucket, its input and
output going through pinned host buffers.

Why each step matters for a small convolutional network such as EfficientNet-Lite0:
- A CUDA graph records the model's few hundred kernel launches once and replays them with one
  launch: eager PyTorch spends more time launching kernels from Python than the GPU spends
  running them at small batch sizes. (A TensorRT engine is one fused program for the same reason.)
- FP16 halves the bytes every layer reads and uses the tensor cores; TensorRT's FP16 mode does the same.
- Channels-last is the layout the GPU's convolution kernels are fastest with.
- Pinned (page-locked) host memory is what the GPU copies from at full speed; ordinary numpy
  memory is first staged through a pinned buffer by the driver.

The course's PyTorch runner (torch_model.py, in Triton's python backend) copies this file beside
its model.py; `triton_course.inprocess` uses it for the ceiling, so both run the same code.
It needs only torch and numpy.
"""

import numpy as np
import torch

# The precisions `prepare` knows (a served config asks for FP32 or FP16: see requested_precision).
PRECISIONS = {"FP32": torch.float32, "TF32": torch.float32, "FP16": torch.float16}


def requested_precision(config):
    """FP32 or FP16: what the config's TensorRT accelerator asks for (FP32 without one). Any other
    precision or accelerator is refused with what the runner supports."""
    accelerators = ((config.get("optimization") or {}).get("execution_accelerators") or {})
    precision = "FP32"
    for accelerator in accelerators.get("gpu_execution_accelerator") or []:
        name = accelerator.get("name", "")
        if name == "tensorrt":
            precision = (accelerator.get("parameters") or {}).get("precision_mode", "FP32").upper()
            if precision not in ("FP32", "FP16"):
                raise ValueError(f"precision_mode '{precision}' is not served by the course's PyTorch runner: "
                                 "use \"FP32\" or \"FP16\" (INT8 needs a calibrated TensorRT engine)")
        elif name != "cuda":
            raise ValueError(f"gpu_execution_accelerator '{name}' is not one the course's PyTorch runner knows: "
                             "use \"tensorrt\" (with precision_mode FP32 or FP16) or \"cuda\"")
    return precision


def set_tf32(enabled: bool) -> None:
    """TF32 rounds FP32 matrix and convolution inputs to 10 mantissa bits: faster on the tensor cores,
    answers a little different from full FP32 (process-wide setting)."""
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


def prepare(model, device, precision: str):
    """The model on `device` at `precision`, its 4-D weights channels-last."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision '{precision}' is not one this runner serves: use one of {', '.join(PRECISIONS)}")
    set_tf32(precision == "TF32")
    torch.backends.cudnn.benchmark = True  # picks the fastest convolution kernels once per shape
    model = model.to(device).eval()
    if PRECISIONS[precision] is torch.float16:
        model = model.half()
    return model.to(memory_format=torch.channels_last)


def buckets(max_batch_size: int) -> list[int]:
    """Batch sizes that get a graph: powers of two up to max_batch_size, and max_batch_size itself.
    A batch of n runs in the smallest bucket >= n (the rows beyond n are ignored)."""
    sizes, size = [], 1
    while size < max_batch_size:
        sizes.append(size)
        size *= 2
    return sizes + [max_batch_size]


class GraphedModel:
    """`model` replayed from CUDA graphs: `run(pieces)` takes numpy arrays of n rows in all (n <= the
    largest bucket) and returns numpy arrays of n rows, copied through pinned host buffers."""

    def __init__(self, model, device, precision: str, inputs, output_dtypes, bucket_sizes, warmup: int = 3):
        """`inputs`: (shape without the batch dimension, numpy dtype) per input; `output_dtypes`:
        numpy dtype per output; `bucket_sizes`: the batch sizes to capture."""
        self.device = torch.device(device)
        if self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(self.device)
        self.precision = precision
        self.model = prepare(model, self.device, precision)
        self.compute_dtype = PRECISIONS[precision]
        self.output_dtypes = [np.dtype(d) for d in output_dtypes]
        self.graphs = {}
        for size in sorted(set(bucket_sizes)):
            self.graphs[size] = self._capture(size, inputs, warmup)
        self.largest = max(self.graphs)

    def _forward(self, *xs):
        feeds = []
        for x in xs:
            if x.is_floating_point():  # an image as uint8 stays uint8: the network converts it itself
                x = x.to(self.compute_dtype)
                x = x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x
            feeds.append(x)
        outputs = self.model(*feeds)
        outputs = outputs if isinstance(outputs, (tuple, list)) else [outputs]
        return [o.to(getattr(torch, d.name)) for o, d in zip(outputs, self.output_dtypes)]

    def _capture(self, size, inputs, warmup):
        host_in = [torch.zeros((size, *shape), dtype=getattr(torch, np.dtype(dtype).name)).pin_memory()
                   for shape, dtype in inputs]
        static_in = [h.to(self.device) for h in host_in]
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.inference_mode(), torch.jit.optimized_execution(False), torch.cuda.stream(side):
            for _ in range(warmup):  # cuDNN picks its kernels and allocations settle before capture
                self._forward(*static_in)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.jit.optimized_execution(False), torch.cuda.graph(graph):
            static_out = self._forward(*static_in)
        host_out = [torch.empty(o.shape, dtype=o.dtype).pin_memory() for o in static_out]
        return graph, host_in, static_in, static_out, host_out

    def bucket_for(self, n: int) -> int:
        if n > self.largest:
            raise ValueError(f"a batch of {n} is larger than the largest captured batch size ({self.largest})")
        return min(size for size in self.graphs if size >= n)

    def replay(self, n: int) -> None:
        """The model alone on the GPU: the graph of n's bucket replayed on the input already there."""
        self.graphs[self.bucket_for(n)][0].replay()
        torch.cuda.current_stream(self.device).synchronize()

    def run(self, pieces) -> list:
        """`pieces[i]`: the arrays that make up input i, in order (one per request); they are
        concatenated straight into the pinned buffer."""
        n = sum(piece.shape[0] for piece in pieces[0])
        graph, host_in, static_in, static_out, host_out = self.graphs[self.bucket_for(n)]
        stream = torch.cuda.current_stream(self.device)
        for parts, host, static in zip(pieces, host_in, static_in):
            np.concatenate(parts, out=host.numpy()[:n])
            static.copy_(host, non_blocking=True)
        graph.replay()
        for out, host in zip(static_out, host_out):
            host.copy_(out, non_blocking=True)
        stream.synchronize()
        return [host.numpy()[:n].copy() for host in host_out]

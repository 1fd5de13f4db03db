"""config.pbtxt made and checked with Triton's own ModelConfig protobuf, never with string templates."""

from __future__ import annotations

import difflib
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from .errors import GENERIC_FIX, ConfigError, suggest_fix

ModelConfig = mc.ModelConfig
ModelInstanceGroup = mc.ModelInstanceGroup

# ONNX element types -> Triton datatypes (the ModelConfig DataType enum). runner/onnx_model.py keeps
# its own copy: it runs inside Triton's python stub and imports nothing from the course.
ONNX_TO_TRITON = {
    "tensor(float)": "TYPE_FP32", "tensor(float16)": "TYPE_FP16", "tensor(double)": "TYPE_FP64",
    "tensor(bfloat16)": "TYPE_BF16", "tensor(int8)": "TYPE_INT8", "tensor(int16)": "TYPE_INT16",
    "tensor(int32)": "TYPE_INT32", "tensor(int64)": "TYPE_INT64", "tensor(uint8)": "TYPE_UINT8",
    "tensor(uint16)": "TYPE_UINT16", "tensor(uint32)": "TYPE_UINT32", "tensor(uint64)": "TYPE_UINT64",
    "tensor(bool)": "TYPE_BOOL", "tensor(string)": "TYPE_STRING",
}


def tensor(name: str, data_type: str, dims: list[int], label_filename: str = "") -> dict:
    """A tensor description (usable as input or output: the fields we set are shared)."""
    return {"name": name, "data_type": mc.DataType.Value(data_type), "dims": list(dims),
            **({"label_filename": label_filename} if label_filename else {})}


def build_config(
    name: str,
    *,
    inputs: list[dict],
    outputs: list[dict],
    max_batch_size: int = 0,
    platform: str = "",
    backend: str = "",
    instance_count: int | None = None,
    instance_kind: str = "KIND_AUTO",
    dynamic_batching: bool = False,
    max_queue_delay_microseconds: int = 0,
) -> ModelConfig:
    """A ModelConfig message; the schema rejects unknown fields and datatypes as it is built."""
    config = ModelConfig(name=name, platform=platform, backend=backend, max_batch_size=max_batch_size)
    for spec in inputs:
        config.input.add(**{k: v for k, v in spec.items() if k != "label_filename"})
    for spec in outputs:
        config.output.add(**spec)
    if instance_count is not None:
        config.instance_group.add(count=instance_count, kind=mc.ModelInstanceGroup.Kind.Value(instance_kind))
    if dynamic_batching:
        config.dynamic_batching.max_queue_delay_microseconds = max_queue_delay_microseconds
    return config


def copy_config(config: ModelConfig, name: str | None = None) -> ModelConfig:
    """A copy to change without touching the original, renamed when `name` is given."""
    copy = ModelConfig()
    copy.CopyFrom(config)
    if name:
        copy.name = name
    return copy


def to_text(config: ModelConfig) -> str:
    """config.pbtxt text, as Triton reads it."""
    return text_format.MessageToString(config, use_short_repeated_primitives=True)


def parse_config(text: str, source: str = "config.pbtxt") -> ModelConfig:
    """Parse config.pbtxt text; a ConfigError says where it breaks and how to fix it."""
    try:
        return text_format.Parse(text, ModelConfig())
    except text_format.ParseError as exc:
        raise ConfigError(f"{source} does not parse as a Triton ModelConfig.",
                          triton_said=f"Error parsing text-format inference.ModelConfig: {exc}",
                          fix=_parse_fix(str(exc))) from None


def _parse_fix(detail: str) -> str:
    fix = suggest_fix(detail)
    return suggest_fix("failed to read text proto") if fix == GENERIC_FIX else fix


def read_config(path: str | Path) -> ModelConfig:
    path = Path(path)
    return parse_config(path.read_text(), source=str(path))


def config_from_onnx(onnx_path: str | Path, name: str, max_batch_size: int = 8, **kwargs) -> ModelConfig:
    """A config whose tensors are read from the ONNX model itself (names, types, dims)."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    initializers = {i.name for i in model.graph.initializer}

    def describe(values):
        specs = []
        for value in values:
            if value.name in initializers:
                continue
            t = value.type.tensor_type
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
            if max_batch_size > 0:
                dims = dims[1:]  # Triton adds the batch dimension itself
            data_type = ONNX_TO_TRITON.get(f"tensor({onnx.TensorProto.DataType.Name(t.elem_type).lower()})")
            if data_type is None:
                raise ConfigError(f"{onnx_path}: tensor '{value.name}' has a type Triton has no name for.")
            specs.append(tensor(value.name, data_type, dims))
        return specs

    return build_config(name, inputs=describe(model.graph.input), outputs=describe(model.graph.output),
                        max_batch_size=max_batch_size, **kwargs)


def python_runner_config(config: ModelConfig, onnx_filename: str = "model.onnx") -> ModelConfig:
    """The same model served by the course's python-backend ONNX runner instead of onnxruntime.

    Only the serving fields change: backend instead of platform, and the ONNX file's name as a
    parameter (for the python backend, default_model_filename names model.py).
    """
    runner = ModelConfig()
    runner.CopyFrom(config)
    runner.platform = ""
    runner.backend = "python"
    runner.runtime = ""
    runner.default_model_filename = ""
    runner.parameters["onnx_model_filename"].string_value = config.default_model_filename or onnx_filename
    return runner


def torch_runner_config(config: ModelConfig, torchscript_filename: str = "model.pt") -> ModelConfig:
    """The model served from TorchScript by the course's python-backend PyTorch runner
    (on the GPU with a KIND_GPU instance group)."""
    runner = python_runner_config(config)
    del runner.parameters["onnx_model_filename"]
    runner.parameters["torchscript_filename"].string_value = torchscript_filename
    return runner


def diff(a: ModelConfig, b: ModelConfig, a_name: str = "onnxruntime", b_name: str = "python runner") -> str:
    """A unified diff of two configs' text: what a learner must change between them."""
    lines = difflib.unified_diff(to_text(a).splitlines(), to_text(b).splitlines(),
                                 fromfile=a_name, tofile=b_name, lineterm="", n=1)
    return "\n".join(lines)


def serves_onnx(config: ModelConfig) -> bool:
    return config.platform == "onnxruntime_onnx" or config.backend == "onnxruntime"

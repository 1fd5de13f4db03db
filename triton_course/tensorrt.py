"""TensorRT in Triton, the two ways, with configs built on Triton's ModelConfig protobuf.

1. onnxruntime's TensorRT execution accelerator: the ONNX model stays as it is, and the
   onnxruntime backend hands the parts TensorRT supports to TensorRT when the model loads
   (or at the first request, unless a warm-up moves that cost to load time).
2. A serialized engine (model.plan), built beforehand with trtexec or TensorRT's Python API,
   served by the tensorrt backend (platform "tensorrt_plan").

Both need an NVIDIA GPU and a Triton with those backends (the NGC container, or a pod started
from it). The engine's optimization profile is derived from the config's max_batch_size, so
that the engine and the config cannot disagree.
"""

from __future__ import annotations

import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError, CourseError
from .gpu import DEVICE_VARIABLE, torch_device_name, wants_cpu
from .model_config import ModelConfig, ModelInstanceGroup, copy_config, mc, serves_onnx

PRECISIONS = ("FP32", "FP16", "INT8")
TRTEXEC_PATHS = ("/usr/src/tensorrt/bin/trtexec",)  # where NVIDIA's containers keep it
# The TensorRT container of a release carries trtexec and the same TensorRT as the Triton
# container of that release (nvcr.io/nvidia/tritonserver:24.10-py3 <-> tensorrt:24.10-py3): a plain
# engine loads only in the TensorRT that built it (a version-compatible one also in later versions).
TENSORRT_IMAGE = "nvcr.io/nvidia/tensorrt:{release}-py3"


class TensorRTUnavailable(CourseError):
    """TensorRT or a GPU is missing here; the message says which and what to do."""

    source = "TensorRT"


@dataclass(frozen=True)
class Profile:
    """One TensorRT optimization profile: the smallest, the tuned-for, and the largest shape of
    every input (batch dimension first when the model batches)."""

    min: dict[str, tuple[int, ...]]
    opt: dict[str, tuple[int, ...]]
    max: dict[str, tuple[int, ...]]

    @property
    def max_batch(self) -> int:
        """The largest batch every input accepts: what Triton reads from an engine."""
        return min(shape[0] for shape in self.max.values())

    def shapes(self, which: str) -> str:
        """'input:1x3x224x224,...': the form trtexec and onnxruntime's TensorRT options take."""
        shapes = getattr(self, which)
        return ",".join(f"{name}:{'x'.join(map(str, shape))}" for name, shape in shapes.items())


def profile_for(config: ModelConfig, opt_batch: int | None = None) -> Profile:
    """The profile that matches `config`: batch 1 to max_batch_size, tuned for `opt_batch`
    (default: max_batch_size, the size the dynamic batcher aims for). Dims must be fixed
    (no -1 besides the batch): a variable dimension needs its own range, which the config
    cannot tell."""
    if not config.input:
        raise ConfigError(f"model '{config.name}' has no inputs to build a TensorRT profile for.")
    batching = config.max_batch_size > 0
    if opt_batch is None:
        opt_batch = config.max_batch_size
    if batching and not 1 <= opt_batch <= config.max_batch_size:
        raise ConfigError(f"model '{config.name}': opt_batch {opt_batch} is outside 1..max_batch_size "
                          f"({config.max_batch_size}).",
                          fix="Choose an opt_batch between 1 and max_batch_size (the batch the engine is tuned for).")
    low, opt, high = {}, {}, {}
    for tensor in config.input:
        dims = tuple(int(d) for d in tensor.dims)
        if not dims or any(d < 1 for d in dims):
            raise ConfigError(
                f"model '{config.name}', input '{tensor.name}': dims {list(dims)} are not all fixed sizes.",
                fix="Give every dimension after the batch a size, or write the profile's min/opt/max shapes "
                    "yourself for the variable ones (trtexec --minShapes/--optShapes/--maxShapes).")
        if batching:
            low[tensor.name], opt[tensor.name], high[tensor.name] = (
                (1, *dims), (opt_batch, *dims), (config.max_batch_size, *dims))
        else:
            low[tensor.name] = opt[tensor.name] = high[tensor.name] = dims
    return Profile(low, opt, high)


def check_engine_batch(config: ModelConfig, engine_max_batch: int) -> None:
    """The tensorrt backend's own rule: the config may not ask for a larger batch than the engine's
    profile allows. Raises the error Triton gives, with the fix."""
    if config.max_batch_size > engine_max_batch:
        raise ConfigError(
            f"model '{config.name}': config.pbtxt and the TensorRT engine disagree on the batch size.",
            triton_said=(f"autofill failed for model '{config.name}': configuration specified max-batch "
                         f"{config.max_batch_size} but TensorRT engine only supports max-batch {engine_max_batch}"))


def _on_gpu(config: ModelConfig, gpus: tuple[int, ...]) -> None:
    """TensorRT runs on GPUs only: one KIND_GPU group unless the config has GPU groups already."""
    if any(g.kind == ModelInstanceGroup.KIND_CPU for g in config.instance_group):
        raise ConfigError(f"model '{config.name}' has a KIND_CPU instance group: TensorRT runs on GPUs only.",
                          fix="Use kind: KIND_GPU (or leave instance_group out) for a TensorRT model.")
    if not config.instance_group:
        config.instance_group.add(count=1, kind=ModelInstanceGroup.KIND_GPU, gpus=list(gpus))


def _precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ConfigError(f"precision '{precision}' is not one TensorRT builds: choose from {', '.join(PRECISIONS)}.")
    return precision


def add_warmup(config: ModelConfig, batch_sizes: tuple[int, ...] | None = None) -> ModelConfig:
    """model_warmup entries with random data for every input: Triton runs them before it reports
    the model ready, so an engine build happens at load time rather than in a client's request."""
    if batch_sizes is None:
        batch_sizes = (1, config.max_batch_size) if config.max_batch_size > 1 else (max(config.max_batch_size, 1),)
    del config.model_warmup[:]
    for size in dict.fromkeys(batch_sizes):
        warmup = config.model_warmup.add(name=f"random_batch_{size}", batch_size=size)
        for tensor in config.input:
            warmup.inputs[tensor.name].CopyFrom(
                mc.ModelWarmup.Input(data_type=tensor.data_type, dims=list(tensor.dims), random_data=True))
    return config


def ort_tensorrt_config(config: ModelConfig, *, precision: str = "FP16", workspace_bytes: int = 1 << 30,
                        engine_cache_path: str | None = None, opt_batch: int | None = None,
                        warmup: bool = True, gpus: tuple[int, ...] = (), name: str | None = None) -> ModelConfig:
    """The ONNX model's config with onnxruntime's TensorRT accelerator (onnxruntime backend).

    The profile options give TensorRT the batch range up front; without them onnxruntime builds an
    engine for the first shape it sees and builds again whenever a larger batch arrives."""
    if not serves_onnx(config):
        raise ConfigError(f"model '{config.name}' is not served by the onnxruntime backend: the TensorRT "
                          "accelerator is one of that backend's options.",
                          fix='Set platform: "onnxruntime_onnx" (an ONNX model), or serve an engine with '
                              'platform: "tensorrt_plan" (plan_config).')
    config = copy_config(config, name)
    _on_gpu(config, gpus)
    accelerator = config.optimization.execution_accelerators.gpu_execution_accelerator.add(name="tensorrt")
    accelerator.parameters["precision_mode"] = _precision(precision)
    accelerator.parameters["max_workspace_size_bytes"] = str(workspace_bytes)
    if engine_cache_path:
        accelerator.parameters["trt_engine_cache_enable"] = "1"
        accelerator.parameters["trt_engine_cache_path"] = engine_cache_path
    if config.max_batch_size > 0:
        profile = profile_for(config, opt_batch)
        for which in ("min", "opt", "max"):
            accelerator.parameters[f"trt_profile_{which}_shapes"] = profile.shapes(which)
    return add_warmup(config) if warmup else config


def plan_config(config: ModelConfig, *, gpus: tuple[int, ...] = (), warmup: bool = False,
                name: str | None = None) -> ModelConfig:
    """The same tensors served from a TensorRT engine: platform tensorrt_plan, NAME/<v>/model.plan.
    The engine keeps the ONNX model's tensor names, so inputs and outputs stay as they are."""
    config = copy_config(config, name)
    config.platform, config.backend, config.runtime, config.default_model_filename = "tensorrt_plan", "", "", ""
    config.ClearField("optimization")
    config.ClearField("parameters")
    _on_gpu(config, gpus)
    return add_warmup(config) if warmup else config


def trtexec_command(onnx_path: str | Path, plan_path: str | Path, config: ModelConfig, *,
                    precision: str = "FP16", opt_batch: int | None = None, workspace_mib: int = 1024,
                    tensorrt_major: int = 10, trtexec: str = "trtexec") -> list[str]:
    """The trtexec command line that builds an engine matching `config`.

    TensorRT 10 (Triton 24.xx and 25.xx containers) takes --fp16 and --int8. TensorRT 11 builds
    strongly typed networks only: its precision comes from the ONNX model (convert it first with
    ModelOpt AutoCast), so there is no precision flag to give."""
    precision = _precision(precision)
    if precision == "INT8":
        raise ConfigError("An INT8 engine needs calibration data (or a model with Q/DQ nodes): the course "
                          "builds FP32 and FP16 engines.",
                          fix="Build FP16; or make a calibration cache from a few hundred representative inputs "
                              "(a calibrator in TensorRT's Python API, or Polygraphy) and pass it to trtexec --int8 "
                              "--calib=CACHE on TensorRT 10 (trtexec only reads the cache); or quantize the model "
                              "with NVIDIA ModelOpt (Q/DQ nodes, the only way on TensorRT 11).")
    profile = profile_for(config, opt_batch)
    command = [trtexec, f"--onnx={onnx_path}", f"--saveEngine={plan_path}"]
    if config.max_batch_size > 0:
        command += [f"--minShapes={profile.shapes('min')}", f"--optShapes={profile.shapes('opt')}",
                    f"--maxShapes={profile.shapes('max')}"]
    command.append(f"--memPoolSize=workspace:{workspace_mib}M")
    if precision == "FP16":
        if tensorrt_major >= 11:
            raise ConfigError("TensorRT 11 has no --fp16: networks are strongly typed.",
                              fix="Convert the ONNX model to FP16 first (python -m modelopt.onnx.autocast "
                                  "--onnx_path model.onnx), then build it with precision='FP32'.")
        command.append("--fp16")
    return command


def container_command(command: list[str], model_dir: str | Path, release: str = "24.10") -> str:
    """`command` (a trtexec_command with paths inside `model_dir`) run in NVIDIA's TensorRT container
    of the same release as the Triton container that will serve the engine, as one shell line.
    The engine is only valid on that GPU model, and for that TensorRT version unless it is built
    version-compatible (trtexec --versionCompatible; Triton then needs
    --backend-config=tensorrt,version-compatible=true)."""
    model_dir = Path(model_dir).resolve()
    inside = [part.replace(str(model_dir), "/models") for part in command]
    inside[0] = "trtexec"
    return shlex.join(["docker", "run", "--rm", "--gpus", "all", "-v", f"{model_dir}:/models",
                       TENSORRT_IMAGE.format(release=release), *inside])


def find_trtexec() -> str | None:
    """trtexec on PATH or where NVIDIA's containers keep it."""
    found = shutil.which("trtexec")
    if found:
        return found
    return next((p for p in TRTEXEC_PATHS if Path(p).exists()), None)


def unavailable_reason() -> str | None:
    """None when TensorRT's Python API and a CUDA GPU are both here; otherwise why not, in one line."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return ("TensorRT's Python package is not installed (pip's tensorrt downloads its libraries from "
                "pypi.nvidia.com; NVIDIA's TensorRT and Triton containers ship it)")
    return _no_gpu_reason()


def _no_gpu_reason() -> str | None:
    if wants_cpu():
        return f"{DEVICE_VARIABLE}=cpu asks the course for the CPU (TensorRT runs on an NVIDIA GPU only)"
    return None if torch_device_name() else "no CUDA GPU is visible (TensorRT runs on an NVIDIA GPU only)"


def serving_unavailable_reason(server, backend: str) -> str | None:
    """None when `server` can serve a TensorRT model through `backend` ('onnxruntime' for the
    accelerator, 'tensorrt' for a plan); otherwise why not, in one line."""
    if backend not in server.backends:
        return (f"this Triton ({server.runtime} runtime) has no {backend} backend; the NGC Triton container "
                "and a pod started from it have it")
    return _no_gpu_reason()


def build_engine(onnx_path: str | Path, plan_path: str | Path, config: ModelConfig, *, precision: str = "FP16",
                 opt_batch: int | None = None, workspace_mib: int = 1024) -> Path:
    """Build model.plan from the ONNX model with TensorRT's Python API, with the profile that
    matches `config`, then check the engine against the config as Triton will."""
    reason = unavailable_reason()
    if reason:
        raise TensorRTUnavailable(f"Cannot build a TensorRT engine here: {reason}.",
                                  fix="Build it where TensorRT runs, with the command from trtexec_command "
                                      "(container_command wraps it in NVIDIA's TensorRT container).")
    import tensorrt as trt

    precision = _precision(precision)
    major = int(trt.__version__.split(".")[0])
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10+: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ConfigError(f"TensorRT could not parse {onnx_path}.", triton_said=errors,
                          fix="Export the model again with a supported opset (see lesson 1), or simplify it.")
    builder_config = builder.create_builder_config()
    builder_config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
    if precision == "FP16":
        if major >= 11:
            raise ConfigError(f"TensorRT {trt.__version__} builds strongly typed networks: it has no FP16 flag.",
                              fix="Convert the ONNX model to FP16 first (python -m modelopt.onnx.autocast), "
                                  "then build with precision='FP32'.")
        builder_config.set_flag(trt.BuilderFlag.FP16)
    elif precision == "INT8":
        raise ConfigError("An INT8 engine needs calibration data: the course builds FP32 and FP16 engines.")
    profile = profile_for(config, opt_batch)
    if config.max_batch_size > 0:
        trt_profile = builder.create_optimization_profile()
        for name in profile.min:
            trt_profile.set_shape(name, profile.min[name], profile.opt[name], profile.max[name])
        builder_config.add_optimization_profile(trt_profile)
    serialized = builder.build_serialized_network(network, builder_config)
    if serialized is None:
        raise ConfigError(f"TensorRT could not build an engine from {onnx_path} (its log above says why).")
    plan_path = Path(plan_path)
    plan_path.parent.mkdir(parents=True, exist_ok=True)
    plan_path.write_bytes(bytes(serialized))
    check_engine_batch(config, engine_max_batch(plan_path))
    return plan_path


def engine_max_batch(plan_path: str | Path) -> int:
    """The largest batch an engine's first profile accepts, read from the engine (Triton's way)."""
    import tensorrt as trt

    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(Path(plan_path).read_bytes())
    if engine is None:
        raise ConfigError(f"{plan_path} is not an engine this TensorRT ({trt.__version__}) can load.",
                          fix="Build the engine with the TensorRT of the Triton that serves it (same release), "
                              "or build it version-compatible (trtexec --versionCompatible) for a later TensorRT.")
    inputs = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)
              if engine.get_tensor_mode(engine.get_tensor_name(i)) == trt.TensorIOMode.INPUT]
    return min(engine.get_tensor_profile_shape(name, 0)[2][0] for name in inputs)

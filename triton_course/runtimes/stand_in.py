"""The course's stand-in for the backends the embedded Triton lacks.

The embedded server (the Triton binary in the nvidia-pytriton wheel) has only the python backend. To serve
an ONNX model there, the course serves a copy of the learner's repository in which each ONNX model runs in
the course's python-backend runner (triton_course/runner/): onnxruntime on the CPU, or on a GPU the same
network's TorchScript export in the course's PyTorch runner. Every other file is a link to the learner's own,
so permissions and edits still apply, and each adapted model gets a note that says which component serves it.
"""

from __future__ import annotations

import functools
import hashlib
import shutil
from importlib import resources
from pathlib import Path

from .. import gpu as gpu_probe
from ..artifact import onnx_path, torchscript_path
from ..errors import ConfigError
from ..model_config import (
    ModelConfig,
    ModelInstanceGroup,
    config_from_onnx,
    python_runner_config,
    read_config,
    serves_onnx,
    to_text,
    torch_runner_config,
)
from ..permissions import readable_by_server

RUNNER_SOURCE = "onnx_model.py"
TORCH_RUNNER_SOURCE = "torch_model.py"
TORCH_GRAPHS_SOURCE = "torch_graphs.py"  # the PyTorch runner's CUDA-graph code, copied beside it
# Settings only onnxruntime understands: a model that has them is not moved to the PyTorch runner.
ONNXRUNTIME_PARAMETERS = {"intra_op_thread_count", "inter_op_thread_count"}


def runner_source(filename: str) -> str:
    """The source of one of the course's runner files (triton_course/runner/), to be written as model.py."""
    return resources.files("triton_course.runner").joinpath(filename).read_text()


def served_copy(repository: str | Path, backends: list[str], dest: str | Path) -> tuple[Path, list[str]]:
    """A copy of `repository` that this server can serve, and one note per model it adapted.

    Where the server has no onnxruntime backend, an ONNX model is served by the course's
    python-backend runner: its config gets `backend: "python"` and the runner becomes model.py;
    every other file is a symbolic link to the learner's own, so permissions still apply.
    Models that need no change are linked whole: Triton sees and reports on the originals.
    """
    repository, dest = Path(repository).resolve(), Path(dest)
    # Emptied, not replaced: a container keeps the folder it was given mounted.
    dest.mkdir(parents=True, exist_ok=True)
    for child in dest.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
    notes = []
    for model_dir in sorted(p for p in repository.iterdir() if p.is_dir()):
        config = _adaptable_config(model_dir, backends)
        if config is None:
            (dest / model_dir.name).symlink_to(model_dir, target_is_directory=True)
            continue
        gpu, torchscripts = _gpu_for(model_dir, config)
        _adapt(model_dir, dest / model_dir.name, config, gpu, torchscripts)
        if gpu and torchscripts:
            notes.append(f"{model_dir.name}: no onnxruntime backend here; model.onnx is the course's reference "
                         "network, so its TorchScript export (the reference repository's model.pt, the same "
                         f"weights) is served on the GPU ({gpu}) by the course's PyTorch runner{_gpu_how(config)}")
        elif gpu:
            notes.append(f"{model_dir.name}: no onnxruntime backend here, so model.pt (the same network, exported "
                         f"to TorchScript) is served on the GPU ({gpu}) by the course's PyTorch runner"
                         f"{_gpu_how(config)}")
        else:
            notes.append(f"{model_dir.name}: no onnxruntime backend here, so model.onnx is served by "
                         "the course's python-backend runner (same tensors, same checks)")
    return dest, notes


def _gpu_how(config: ModelConfig) -> str:
    """How the PyTorch runner will run this model on the GPU, in words (its log says it again)."""
    from google.protobuf import json_format

    from ..runner.torch_graphs import requested_precision

    try:
        precision = requested_precision(json_format.MessageToDict(config, preserving_proto_field_name=True))
    except ValueError as exc:
        return f" (it will refuse to load: {exc})"
    asked = " as the config asks TensorRT (precision_mode)" if precision == "FP16" else ""
    graphs = "; batches replayed from CUDA graphs" if config.max_batch_size > 0 else ""
    return f", at {precision}{asked}{graphs}"


def _gpu_for(model_dir: Path, config: ModelConfig) -> tuple[str | None, dict[str, Path]]:
    """The GPU on which the PyTorch runner serves this ONNX model instead of the ONNX runner (or None),
    and the TorchScript file to link into each version folder that has no model.pt of its own.

    Only where every version folder holds model.pt (the TorchScript export of the same network; the
    reference repository has both) or holds the course's reference model.onnx byte for byte (its
    model.pt is then used), the config does not ask for CPU instances, and PyTorch sees a GPU:
    the python backend has no CUDA onnxruntime to use. A config with onnxruntime's own settings
    (thread counts, a graph optimization level) stays with the ONNX runner, which honours them."""
    if any(group.kind == ModelInstanceGroup.KIND_CPU for group in config.instance_group):
        return None, {}
    if set(config.parameters) & ONNXRUNTIME_PARAMETERS or config.optimization.HasField("graph"):
        return None, {}
    gpu = gpu_probe.torch_device_name()
    versions = [v for v in model_dir.iterdir() if v.is_dir() and v.name.isdigit()]
    if gpu is None or not versions:
        return None, {}
    torchscripts = {}
    for version in versions:
        if (version / "model.pt").exists():
            if not readable_by_server(version / "model.pt"):
                return None, {}
            continue
        reference = _reference_torchscript(version / (config.default_model_filename or "model.onnx"))
        if reference is None:
            return None, {}
        torchscripts[version.name] = reference
    return gpu, torchscripts


def _reference_torchscript(onnx_file: Path) -> Path | None:
    """The course's model.pt when `onnx_file` is one of the course's model.onnx files (the reference,
    or its uint8 pixels variant: same bytes)."""
    if not (onnx_file.exists() and readable_by_server(onnx_file)):
        return None
    for pixels in (False, True):
        reference, torchscript = onnx_path(pixels=pixels), torchscript_path(pixels=pixels)
        if not (torchscript.exists() and reference.exists()) or onnx_file.stat().st_size != reference.stat().st_size:
            continue
        if _digest(onnx_file) == _digest(reference):
            return torchscript
    return None


def _digest(path: Path) -> str:
    st = path.stat()
    return _cached_digest(str(path.resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _cached_digest(path: str, size: int, mtime_ns: int) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _adaptable_config(model_dir: Path, backends: list[str]) -> ModelConfig | None:
    if "onnxruntime" in backends:
        return None
    config_path = model_dir / "config.pbtxt"
    if config_path.exists():
        if not readable_by_server(config_path):
            return None  # let Triton report the permission problem itself
        try:
            config = read_config(config_path)
        except (ConfigError, UnicodeDecodeError):
            return None  # let Triton report the parse error itself
        if not serves_onnx(config) and not (not config.platform and not config.backend
                                            and _has_onnx_file(model_dir, config)):
            return None  # served as it is (python models, other backends)
        if not config.name:
            config.name = model_dir.name
        if not config.input and not config.output:
            config = _autocomplete(model_dir, config)
        return config
    # No config at all: the onnxruntime backend would fill one in from a model.onnx.
    if _has_onnx_file(model_dir, ModelConfig()):
        return _autocomplete(model_dir, ModelConfig(name=model_dir.name, platform="onnxruntime_onnx"))
    return None


def _has_onnx_file(model_dir: Path, config: ModelConfig) -> bool:
    """Whether a version folder holds the ONNX file (Triton then picks the onnxruntime backend)."""
    name = config.default_model_filename or "model.onnx"
    return any((v / name).exists() for v in model_dir.iterdir() if v.is_dir() and v.name.isdigit())


def _autocomplete(model_dir: Path, config: ModelConfig) -> ModelConfig:
    """Fill inputs, outputs and max_batch_size from the model file, as the onnxruntime backend does."""
    versions = sorted((v for v in model_dir.iterdir() if v.name.isdigit()), key=lambda v: int(v.name))
    onnx_files = [v / (config.default_model_filename or "model.onnx") for v in versions]
    onnx_files = [f for f in onnx_files if f.exists() and readable_by_server(f)]
    if not onnx_files:
        return config
    probe = config_from_onnx(onnx_files[-1], config.name, max_batch_size=0)
    batchable = all(t.dims and t.dims[0] == -1 for t in list(probe.input) + list(probe.output))
    filled = config_from_onnx(onnx_files[-1], config.name, max_batch_size=4 if batchable else 0)
    merged = ModelConfig()
    merged.CopyFrom(config)
    merged.max_batch_size = merged.max_batch_size or filled.max_batch_size
    merged.input.extend(filled.input)
    merged.output.extend(filled.output)
    return merged


def _adapt(model_dir: Path, target: Path, config: ModelConfig, gpu: str | None = None,
           torchscripts: dict[str, Path] | None = None) -> None:
    target.mkdir()
    onnx_runner = runner_source(RUNNER_SOURCE)
    runner = runner_source(TORCH_RUNNER_SOURCE) if gpu else onnx_runner
    for item in model_dir.iterdir():
        if item.name == "config.pbtxt" or item.name.endswith(".bak"):
            continue
        if item.is_dir() and item.name.isdigit():
            version = target / item.name
            version.mkdir()
            if readable_by_server(item):
                for f in item.iterdir():
                    (version / f.name).symlink_to(f)
            else:
                version.rmdir()
                version.symlink_to(item, target_is_directory=True)  # Triton reports the permission error
                continue
            if gpu and item.name in (torchscripts or {}):
                (version / "model.pt").symlink_to(torchscripts[item.name])
            if not (version / "model.py").exists():
                (version / "model.py").write_text(runner)
                if gpu:  # the PyTorch runner checks the config against model.onnx with the ONNX runner's code
                    (version / RUNNER_SOURCE).write_text(onnx_runner)
                    (version / TORCH_GRAPHS_SOURCE).write_text(runner_source(TORCH_GRAPHS_SOURCE))
        else:
            (target / item.name).symlink_to(item)
    (target / "config.pbtxt").write_text(to_text(runner_config(config, gpu=bool(gpu))))


def runner_config(config: ModelConfig, gpu: bool) -> ModelConfig:
    """The config of an ONNX model as the course's runner serves it: the PyTorch runner on the GPU
    (one KIND_GPU instance unless the config says otherwise), or the ONNX runner."""
    if not gpu:
        return python_runner_config(config)
    served = torch_runner_config(config)
    # The config was written for model.onnx: the PyTorch runner checks it against that file.
    served.parameters["onnx_model_filename"].string_value = config.default_model_filename or "model.onnx"
    if not served.instance_group:
        served.instance_group.add(kind=ModelInstanceGroup.KIND_GPU, count=1)
    return served


def served_on_gpu(served_model_dir: Path) -> bool:
    """Whether the served copy of a model runs the PyTorch runner (the GPU path of `served_copy`)."""
    config_path = served_model_dir / "config.pbtxt"
    try:
        return config_path.exists() and "torchscript_filename" in read_config(config_path).parameters
    except (ConfigError, OSError, UnicodeDecodeError):
        return False

"""A model repository with one broken model per classic mistake, for the debugging lab.

Every model is the course's EfficientNet-Lite0 (or an ensemble around it) with exactly one thing
wrong, the way newcomers really get it wrong. Starting Triton on the repository and loading a model
shows Triton's own message for that mistake; the lab's checks (`triton_course.checks.debugging`)
load the learner's fix on a real server.

Three mistakes are not in the repository: a TensorRT engine whose profile is smaller than the config's
max_batch_size needs TensorRT to build the engine (`engine_scenario`), loading a model on a
server started in poll mode is a mistake in how the server is started, not in a model, and
JupyterLab's checkpoint folders (`add_checkpoint_folders`) stop only a server that loads every model
at start, not the lab's explicit-mode one.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from .artifact import INPUT_NAME, OUTPUT_NAME, ensure_onnx, labels, reference_config
from .ensemble import POSTPROCESS, postprocess_config
from .model_config import ModelConfig, build_config, copy_config, tensor, to_text
from .paths import MODEL_NAME
from .repository import add_model, write_config, write_file
from .runtimes.stand_in import runner_source

CLASSIFIER = MODEL_NAME  # the good model the ensemble calls


@dataclass(frozen=True)
class Mistake:
    """One broken model: its folder in the repository and what is wrong with it, in one line."""

    letter: str
    model: str
    what: str


MISTAKES = [
    Mistake("a", "batch_in_dims", "dims include the batch dimension although max_batch_size is 8"),
    Mistake("b", "wrong_tensor_name", "the input is called 'image' in config.pbtxt, but 'input' in the ONNX model"),
    Mistake("c", "no_version_folder", "model.onnx sits next to config.pbtxt instead of in a version folder"),
    Mistake("d", "does_not_parse", "config.pbtxt has a typo in a field name"),
    Mistake("e", "unreadable_file", "model.onnx cannot be read by the user that runs Triton"),
    Mistake("f", "broken_ensemble", "the ensemble's steps do not connect: a tensor is written under one name "
                                    "and read under another"),
]
# Mistake (i): JupyterLab keeps a copy of each file it saves in this folder beside the file (jupyter_server's
# FileCheckpoints.checkpoint_dir). Seen on the embedded Triton 2.51: at the top of a repository Triton takes it for
# a model ("at least one version must be available ..."), inside a model folder it only warns ("ignore version
# directory '.ipynb_checkpoints' which fails to convert to integral number").
CHECKPOINTS = ".ipynb_checkpoints"
ENGINE_MODEL = "engine_too_small"  # mistake (g), built by engine_scenario where TensorRT exists
ENGINE_MAX_BATCH = 4  # the profile the broken engine was built with; its config asks for 8


def mistake(model: str) -> Mistake:
    for m in MISTAKES:
        if m.model == model:
            return m
    raise KeyError(model)


def classifier_config(name: str, max_batch_size: int = 8) -> ModelConfig:
    """The course model's config (as the NGC container serves it) under another name."""
    return copy_config(reference_config(max_batch_size), name)


def build(repository: str | Path) -> Path:
    """Empty `repository` and fill it with the good models and one broken model per mistake."""
    repository = Path(repository)
    remove(repository)
    repository.mkdir(parents=True)
    # The good models the ensemble calls.
    add_model(repository, classifier_config(CLASSIFIER), ensure_onnx(), labels=labels())
    write_file(repository / POSTPROCESS / "1" / "model.py", runner_source("postprocess_model.py"))
    write_file(repository / POSTPROCESS / "labels.txt", "\n".join(labels()) + "\n")
    write_config(repository / POSTPROCESS, postprocess_config(top_k=3))
    for m in MISTAKES:
        add_broken(repository, m.model)
    return repository


def add_broken(repository: str | Path, model: str) -> Path:
    """Put the broken model `model` (one of MISTAKES) into `repository`; returns its folder."""
    repository, onnx, names = Path(repository), ensure_onnx(), labels()
    folder = repository / model
    if model == "batch_in_dims":  # (a) the batch dimension written into dims, although Triton adds it itself
        config = classifier_config(model)
        config.input[0].dims[:] = [-1, 3, 224, 224]
        add_model(repository, config, onnx, labels=names)
    elif model == "wrong_tensor_name":  # (b) a tensor name that is not the model's
        config = classifier_config(model)
        config.input[0].name = "image"
        add_model(repository, config, onnx, labels=names)
    elif model == "no_version_folder":  # (c) the model file next to the config, no numbered version folder
        write_config(folder, classifier_config(model))
        write_file(folder / "labels.txt", "\n".join(names) + "\n")
        shutil.copyfile(onnx, folder / "model.onnx")
    elif model == "does_not_parse":  # (d) a typo in a field name: the text no longer parses
        add_model(repository, classifier_config(model), onnx, labels=names)
        (folder / "config.pbtxt").write_text(to_text(classifier_config(model)).replace("  dims: [1000]",
                                                                                       "  dim: [1000]"))
    elif model == "unreadable_file":  # (e) a model file nobody may read (as one copied from another account)
        add_model(repository, classifier_config(model), onnx, labels=names)
        (folder / "1" / "model.onnx").chmod(0)
    elif model == "broken_ensemble":  # (f) step 1 writes "class_logits", step 2 reads "logits"
        (folder / "1").mkdir(parents=True)  # an ensemble has no model file, but needs a version folder
        write_config(folder, ensemble_config(model, classifier_writes="class_logits", postprocess_reads="logits"))
    else:
        raise KeyError(f"'{model}' is not one of the broken models: {', '.join(m.model for m in MISTAKES)}")
    return folder


def add_checkpoint_folders(repository: str | Path, model: str = CLASSIFIER) -> list[Path]:
    """Mistake (i): what JupyterLab leaves in `repository` after a learner saved `model`'s config.pbtxt and a
    notes file at the repository's top in its editor: a .ipynb_checkpoints folder beside each file. Returns
    the two folders (the model's, the top one)."""
    repository = Path(repository)
    inside, top = repository / model / CHECKPOINTS, repository / CHECKPOINTS
    write_file(inside / "config-checkpoint.pbtxt", (repository / model / "config.pbtxt").read_text())
    notes = "Notes: the classifier's config is in efficientnet_lite0/config.pbtxt.\n"
    write_file(repository / "notes.md", notes)
    write_file(top / "notes-checkpoint.md", notes)
    return [inside, top]


def ensemble_config(name: str, *, classifier_writes: str = "logits", postprocess_reads: str = "logits",
                    top_k: int = 3) -> ModelConfig:
    """Pixels in, the top-k labels and scores out: the classifier, then postprocess.

    In each map the key is the step model's own tensor and the value the ensemble's tensor; two steps
    connect when one writes the ensemble tensor the other reads."""
    config = build_config(name, platform="ensemble", max_batch_size=8,
                          inputs=[tensor("pixels", "TYPE_FP32", [3, 224, 224])],
                          outputs=[tensor("labels", "TYPE_STRING", [top_k]), tensor("scores", "TYPE_FP32", [top_k])])
    steps = config.ensemble_scheduling.step
    steps.add(model_name=CLASSIFIER, model_version=-1, input_map={INPUT_NAME: "pixels"},
              output_map={OUTPUT_NAME: classifier_writes})
    steps.add(model_name=POSTPROCESS, model_version=-1, input_map={OUTPUT_NAME: postprocess_reads},
              output_map={"labels": "labels", "scores": "scores"})
    return config


def remove(folder: str | Path) -> None:
    """Delete `folder` (a lab's workspace), even where a previous run took permissions away."""
    folder = Path(folder)
    if folder.exists():
        _make_removable(folder)
        shutil.rmtree(folder)


def _make_removable(repository: Path) -> None:
    """Give back the permissions a previous run took away, so that the folder can be replaced."""
    for root, dirs, files in os.walk(repository):
        for name in dirs:
            if not os.path.islink(os.path.join(root, name)):  # never change what a link points to
                os.chmod(os.path.join(root, name), 0o755)
        for name in files:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                os.chmod(path, 0o644)


@dataclass
class EngineScenario:
    """Mistake (g): a TensorRT engine built for batches up to `engine_max_batch`, served with a config
    that asks for `config.max_batch_size`. `live` says whether a real engine was built here (then
    `model_dir` holds it); otherwise `reason` says why not."""

    config: ModelConfig
    engine_max_batch: int
    live: bool
    reason: str | None
    model_dir: Path | None


def engine_scenario(repository: str | Path) -> EngineScenario:
    """Build mistake (g) where TensorRT runs (a real model.plan with a profile of max batch
    ENGINE_MAX_BATCH and a config asking for 8); elsewhere only the config and the engine's batch."""
    from . import tensorrt

    config = tensorrt.plan_config(classifier_config(ENGINE_MODEL, max_batch_size=8))
    reason = tensorrt.unavailable_reason()
    if reason:
        return EngineScenario(config, ENGINE_MAX_BATCH, False, reason, None)
    model_dir = Path(repository) / ENGINE_MODEL
    built_for = classifier_config(ENGINE_MODEL, max_batch_size=ENGINE_MAX_BATCH)
    tensorrt.build_engine(ensure_onnx(), model_dir / "1" / "model.plan", built_for, precision="FP32")
    write_file(model_dir / "labels.txt", "\n".join(labels()) + "\n")
    write_config(model_dir, config)
    return EngineScenario(config, tensorrt.engine_max_batch(model_dir / "1" / "model.plan"), True, None, model_dir)

"""config.pbtxt through Triton's ModelConfig protobuf, and the repository builder (no server needed)."""

from __future__ import annotations

import pytest

from triton_course import ConfigError, artifact, gpu, models_dir
from triton_course.model_config import (
    ModelInstanceGroup,
    build_config,
    config_from_onnx,
    diff,
    parse_config,
    python_runner_config,
    read_config,
    tensor,
    to_text,
)
from triton_course.paths import MODEL_NAME
from triton_course.permissions import readable_by_server
from triton_course.repository import add_model, add_version, write_config, write_file
from triton_course.runtimes.stand_in import served_copy


def test_committed_reference_config_is_what_the_code_builds():
    committed = read_config(models_dir() / MODEL_NAME / "config.pbtxt")
    assert committed == artifact.reference_config()
    assert committed.platform == "onnxruntime_onnx"
    assert list(committed.input[0].dims) == [3, 224, 224]


def test_text_round_trips_and_uses_list_syntax():
    config = build_config("m", max_batch_size=4, inputs=[tensor("x", "TYPE_FP32", [3])],
                          outputs=[tensor("y", "TYPE_INT64", [1])], dynamic_batching=True,
                          max_queue_delay_microseconds=100, instance_count=2, instance_kind="KIND_CPU")
    text = to_text(config)
    assert "dims: [3]" in text
    assert "max_queue_delay_microseconds: 100" in text
    assert parse_config(text) == config


def test_unknown_datatype_is_refused_while_building():
    with pytest.raises(ValueError):
        tensor("x", "TYPE_FLOAT32", [3])


def test_parse_error_gives_line_and_column():
    with pytest.raises(ConfigError) as err:
        parse_config('name: "m"\nmax_batch_size 8\n')
    assert "2:16" in err.value.triton_said
    assert "line:column" in err.value.fix


def test_unknown_enum_value_gets_the_datatype_fix():
    with pytest.raises(ConfigError) as err:
        parse_config('input { name: "x" data_type: TYPE_FLOAT32 dims: [1] }')
    assert "TYPE_FLOAT32" in err.value.triton_said
    assert "is not a Triton datatype" in err.value.fix


def test_config_from_onnx_reads_the_model(reference_repo):
    config = config_from_onnx(artifact.onnx_path(reference_repo), "x", max_batch_size=8)
    assert [(t.name, list(t.dims)) for t in config.input] == [("input", [3, 224, 224])]
    assert [(t.name, list(t.dims)) for t in config.output] == [("logits", [1000])]
    unbatched = config_from_onnx(artifact.onnx_path(reference_repo), "x", max_batch_size=0)
    assert list(unbatched.input[0].dims) == [-1, 3, 224, 224]


def test_python_runner_config_changes_only_how_it_is_served():
    reference = artifact.reference_config()
    runner = python_runner_config(reference)
    assert runner.backend == "python" and runner.platform == ""
    assert runner.parameters["onnx_model_filename"].string_value == "model.onnx"
    assert runner.input == reference.input and runner.output == reference.output
    changed = [line for line in diff(reference, runner).splitlines()
               if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    assert sorted(changed) == sorted([
        '-platform: "onnxruntime_onnx"', '+backend: "python"', '+parameters {',
        '+  key: "onnx_model_filename"', '+  value {', '+    string_value: "model.onnx"', '+  }', '+}'])


def test_write_file_keeps_a_backup_of_an_edited_file(tmp_path, capsys):
    target = tmp_path / "config.pbtxt"
    assert write_file(target, "a") is None
    assert write_file(target, "a") is None  # same content: nothing to keep
    backup = write_file(target, "b")
    assert backup is not None and backup.read_text() == "a"
    assert target.read_text() == "b"
    assert "Kept your previous config.pbtxt" in capsys.readouterr().out


def test_add_model_lays_out_a_repository(tmp_path, reference_repo):
    model_dir = add_model(tmp_path, artifact.reference_config(), artifact.onnx_path(reference_repo),
                          labels=["a", "b"])
    add_version(tmp_path, MODEL_NAME, 2, artifact.onnx_path(reference_repo))
    assert (model_dir / "1" / "model.onnx").exists() and (model_dir / "2" / "model.onnx").exists()
    assert (model_dir / "labels.txt").read_text() == "a\nb\n"
    assert read_config(model_dir / "config.pbtxt").name == MODEL_NAME


def test_served_copy_adapts_onnx_models_and_links_the_rest(tmp_path, reference_repo):
    repo = tmp_path / "repo"
    add_model(repo, artifact.reference_config(), artifact.onnx_path(reference_repo), labels=["a"])
    python_model = repo / "pymodel"
    (python_model / "1").mkdir(parents=True)
    (python_model / "config.pbtxt").write_text('backend: "python"\n')
    served, notes = served_copy(repo, ["python"], tmp_path / "served" / "x")
    adapted = served / MODEL_NAME
    assert read_config(adapted / "config.pbtxt").backend == "python"
    assert (adapted / "1" / "model.py").read_text().startswith('"""Triton python-backend model')
    assert (adapted / "1" / "model.onnx").resolve() == (repo / MODEL_NAME / "1" / "model.onnx").resolve()
    assert (adapted / "labels.txt").is_symlink()
    assert (served / "pymodel").is_symlink()
    assert len(notes) == 1 and MODEL_NAME in notes[0]
    # A server with the onnxruntime backend gets the repository as it is.
    served, notes = served_copy(repo, ["onnxruntime", "python"], tmp_path / "served" / "y")
    assert (served / MODEL_NAME).is_symlink() and notes == []


def test_config_without_platform_next_to_model_onnx_is_served_as_onnx(tmp_path, reference_repo):
    # Triton picks the onnxruntime backend for such a model; the embedded server needs the runner.
    config = config_from_onnx(artifact.onnx_path(reference_repo), "derived", max_batch_size=8)
    assert not config.platform and not config.backend
    repo = tmp_path / "repo"
    add_model(repo, config, artifact.onnx_path(reference_repo))
    served, notes = served_copy(repo, ["python"], tmp_path / "served" / "z")
    assert read_config(served / "derived" / "config.pbtxt").backend == "python"
    assert notes and "derived" in notes[0]


def test_readable_by_server_follows_permission_bits(tmp_path):
    f = tmp_path / "f"
    f.write_text("x")
    f.chmod(0o644)
    assert readable_by_server(f)
    f.chmod(0)
    assert not readable_by_server(f)


@pytest.mark.parametrize("instance_kind, expect_gpu", [(None, True), ("KIND_GPU", True), ("KIND_CPU", False)])
def test_a_gpu_serves_model_pt_with_the_pytorch_runner(tmp_path, reference_repo, monkeypatch, instance_kind,
                                                        expect_gpu):
    # Pretend PyTorch sees a GPU: the choice is made from the files and the config, and said in the notes.
    monkeypatch.setattr(gpu, "torch_device_name", lambda: "Test GPU")
    config = artifact.reference_config()
    if instance_kind:
        config.instance_group.add(kind=ModelInstanceGroup.Kind.Value(instance_kind), count=2)
    repo = tmp_path / "repo"
    model_dir = add_model(repo, config, artifact.onnx_path(reference_repo))
    (model_dir / "1" / "model.pt").symlink_to(artifact.torchscript_path(reference_repo))
    served, notes = served_copy(repo, ["python"], tmp_path / "served")
    served_config = read_config(served / MODEL_NAME / "config.pbtxt")
    runner = (served / MODEL_NAME / "1" / "model.py").read_text()
    if expect_gpu:
        assert "torchscript_filename" in served_config.parameters and "import torch" in runner
        assert [(g.kind, g.count) for g in served_config.instance_group] == [
            (ModelInstanceGroup.KIND_GPU, 2 if instance_kind else 1)]
        assert "served on the GPU (Test GPU) by the course's PyTorch runner" in notes[0]
    else:  # the learner asked for CPU instances: the ONNX runner, as everywhere
        assert "onnx_model_filename" in served_config.parameters and "onnxruntime" in runner
        assert "python-backend runner" in notes[0]


def test_without_model_pt_in_every_version_the_onnx_runner_serves(tmp_path, reference_repo, monkeypatch):
    monkeypatch.setattr(gpu, "torch_device_name", lambda: "Test GPU")
    repo = tmp_path / "repo"
    model_dir = add_model(repo, artifact.reference_config(), artifact.onnx_path(reference_repo))
    (model_dir / "1" / "model.pt").symlink_to(artifact.torchscript_path(reference_repo))
    other = tmp_path / "other.onnx"  # a new release with other weights, ONNX only
    other.write_bytes(artifact.onnx_path(reference_repo).read_bytes() + b"\0")
    add_version(repo, MODEL_NAME, 2, other, filename="model.onnx")
    served, notes = served_copy(repo, ["python"], tmp_path / "served")
    assert "onnx_model_filename" in read_config(served / MODEL_NAME / "config.pbtxt").parameters
    assert "python-backend runner" in notes[0]


def test_the_reference_onnx_alone_is_served_from_its_torchscript_on_a_gpu(tmp_path, reference_repo, monkeypatch):
    # Lessons copy only model.onnx; byte for byte the reference network, so the reference model.pt serves it.
    monkeypatch.setattr(gpu, "torch_device_name", lambda: "Test GPU")
    repo = tmp_path / "repo"
    add_model(repo, artifact.reference_config(), artifact.onnx_path(reference_repo))
    add_version(repo, MODEL_NAME, 2, artifact.onnx_path(reference_repo))
    served, notes = served_copy(repo, ["python"], tmp_path / "served")
    assert "torchscript_filename" in read_config(served / MODEL_NAME / "config.pbtxt").parameters
    for version in ("1", "2"):
        assert (served / MODEL_NAME / version / "model.pt").resolve() == artifact.torchscript_path().resolve()
    assert not (repo / MODEL_NAME / "1" / "model.pt").exists()  # the learner's folder is left as it was
    assert "reference network" in notes[0] and "on the GPU (Test GPU)" in notes[0]
    threads = artifact.reference_config()  # onnxruntime's own settings: only the ONNX runner honours them
    threads.parameters["intra_op_thread_count"].string_value = "1"
    write_config(repo / MODEL_NAME, threads)
    served, notes = served_copy(repo, ["python"], tmp_path / "served")
    assert "onnx_model_filename" in read_config(served / MODEL_NAME / "config.pbtxt").parameters
    monkeypatch.setattr(gpu, "torch_device_name", lambda: None)  # no GPU: the ONNX runner, no model.pt
    served, notes = served_copy(repo, ["python"], tmp_path / "served")
    assert "onnx_model_filename" in read_config(served / MODEL_NAME / "config.pbtxt").parameters
    assert not (served / MODEL_NAME / "1" / "model.pt").exists() and "python-backend runner" in notes[0]

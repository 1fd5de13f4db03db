"""Lab 02's checks: a hand-built repository, looked at as Triton does and loaded on a real server."""

import os
import shutil

import pytest

import triton_course
from triton_course import artifact, model_config, models_dir, repository
from triton_course.checks import lab02

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def server(reference_repo, tmp_path_factory):
    repo = tmp_path_factory.mktemp("lab02") / "model_repository"
    repo.mkdir()
    with triton_course.server(repo, model_control_mode="explicit") as running:
        yield running


@pytest.fixture
def model_dir(server):
    """An empty repository for each test; the model's folder to build in it."""
    for child in server.repository.iterdir():
        shutil.rmtree(child)
    return server.repository / "efficientnet_lite0"


def build(model_dir, *, versions=(1,), file_name="model.onnx", labels=True, config_name="config.pbtxt"):
    model_dir.mkdir()
    shutil.copyfile(models_dir() / "efficientnet_lite0" / "config.pbtxt", model_dir / config_name)
    if labels:
        shutil.copyfile(models_dir() / "efficientnet_lite0" / "labels.txt", model_dir / "labels.txt")
    for version in versions:
        (model_dir / str(version)).mkdir()
        shutil.copyfile(artifact.ensure_onnx(), model_dir / str(version) / file_name)


def test_right_repository_passes(server, model_dir):
    build(model_dir)
    verdict = lab02.check_repository(server)
    assert verdict.ok, verdict
    assert "espresso" in repr(verdict)


def flat(model_dir):
    build(model_dir, versions=())
    shutil.copyfile(artifact.ensure_onnx(), model_dir / "model.onnx")


def unreadable_file(model_dir):
    build(model_dir)
    os.chmod(model_dir / "1" / "model.onnx", 0o600 if os.geteuid() else 0)


def folder_without_x(model_dir):
    build(model_dir)
    os.chmod(model_dir / "1", 0o644)


def wrong_model_folder(model_dir):
    build(model_dir.with_name("efficientnet-lite0"))


@pytest.mark.parametrize("make, expected", [
    (lambda d: build(d, versions=()), ["there is no version folder efficientnet_lite0/1/",
                                       "Triton said: at least one version must be available"]),
    (flat, ["a .onnx file lies directly in efficientnet_lite0/", "at least one version must be available"]),
    (lambda d: build(d, versions=("v1",)), ["efficientnet_lite0/v1/ is not a version",
                                            "at least one version must be available"]),
    (lambda d: build(d, file_name="efficientnet_lite0.onnx"),
     ["efficientnet_lite0/1/ holds efficientnet_lite0.onnx, not model.onnx",
      "The course's ONNX runner (standing in for the onnxruntime backend) said:",
      "unable to find", "1/model.onnx"]),
    (unreadable_file, ["model_repository/efficientnet_lite0/1/model.onnx has mode", "needs r (644)",
                       "Permission denied", "chmod a+r"]),
    (folder_without_x, ["the folder model_repository/efficientnet_lite0/1 has mode drw-r--r--",
                        "needs r and x (755)", "os.chmod(folder, 0o755)"]),
    (lambda d: build(d, labels=False), ["efficientnet_lite0/labels.txt is missing",
                                        "failed to open text file for read", "labels.txt"]),
    (lambda d: build(d, config_name="config.txt"), ["config.pbtxt is missing (found config.txt",
                                                    "Triton loaded it, but fix the layout above"]),
    (wrong_model_folder, ["there is no folder efficientnet_lite0/ in the repository (found: efficientnet-lite0)",
                          "Triton said:"]),
], ids=["no_version_folder", "file_next_to_config", "version_named_v1", "wrong_file_name", "unreadable_file",
        "folder_without_x", "no_labels", "config_misnamed", "model_folder_misnamed"])
def test_repository_mistakes_get_their_message(server, model_dir, make, expected):
    make(model_dir)
    verdict = lab02.check_repository(server)
    assert not verdict.ok
    text = repr(verdict)
    for part in expected:
        assert part in text


def with_policy(model_dir):
    config = model_config.read_config(model_dir / "config.pbtxt")
    config.version_policy.all.SetInParent()
    repository.write_config(model_dir, config)


def test_versions_right_and_wrong(server, model_dir):
    build(model_dir, versions=(1, 2))
    verdict = lab02.check_versions(server)
    assert not verdict.ok
    assert "only version 2 is ready: the config's version policy is the default, latest 1" in repr(verdict)
    assert "version_policy: { all {} }" in repr(verdict)
    with_policy(model_dir)
    verdict = lab02.check_versions(server)
    assert verdict.ok, verdict
    os.rename(model_dir / "2", model_dir / "v2")
    verdict = lab02.check_versions(server)
    assert not verdict.ok
    assert "efficientnet_lite0/v2/ is not a version" in repr(verdict)
    assert "there is no version folder efficientnet_lite0/2/" in repr(verdict)

"""The debugging lab: each broken model gets Triton's real error, each fix passes its check, and the
wrong fixes newcomers try get a specific message. Against one real server (explicit model control)."""

from __future__ import annotations

import shutil

import pytest

from triton_course import ModelLoadError, broken_models, start_server
from triton_course.checks import debugging
from triton_course.model_config import copy_config, read_config, to_text
from triton_course.repository import write_config

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repo = broken_models.build(tmp_path_factory.mktemp("debugging") / "broken")
    with start_server(repo, model_control_mode="explicit") as s:
        yield s


def triton_error(server, model: str) -> str:
    with pytest.raises(ModelLoadError) as caught:
        server.load_model(model)
    return caught.value.problem(model).message


def edit_config(server, model: str, change) -> None:
    config = read_config(server.repository / model / "config.pbtxt")
    change(config)
    write_config(server.repository / model, config)


def test_every_mistake_has_a_model_and_a_check(server):
    for m in broken_models.MISTAKES:
        assert (server.repository / m.model).is_dir(), m.model
        assert callable(getattr(debugging, "check_" + m.model.replace("broken_", ""), None)), m.model


def test_batch_in_dims(server):
    said = triton_error(server, "batch_in_dims")
    assert "the model expects 4 dimensions" in said and "an initial batch dimension because max_batch_size > 0" in said
    verdict = debugging.check_batch_in_dims(server)
    assert not verdict and "dims [-1, 3, 224, 224] still include the batch dimension" in str(verdict)
    # The words are the course's runner's (the onnxruntime backend's wording), not Triton's: the verdict says so.
    assert said.startswith("Internal: course ONNX runner: model 'batch_in_dims', tensor 'input':")
    assert "ValueError" not in said
    assert ("The course's ONNX runner (standing in for the onnxruntime backend) said: model 'batch_in_dims'"
            in str(verdict)) and "Triton said:" not in str(verdict)
    assert "5 dimensions" in verdict.triton_said

    # Turning batching off loads, but not what the task asks; with the output left short it does not even load.
    edit_config(server, "batch_in_dims", lambda c: setattr(c, "max_batch_size", 0))
    verdict = debugging.check_batch_in_dims(server)
    assert not verdict and "output 'logits' dims [1000] lack the batch dimension" in str(verdict)
    assert "max_batch_size is 0; the task keeps it at 8" in str(verdict)
    assert "'logits'" in verdict.triton_said and "expects 2 dimensions" in verdict.triton_said

    def right(c):
        c.max_batch_size = 8
        c.input[0].dims[:] = [3, 224, 224]
    edit_config(server, "batch_in_dims", right)
    verdict = debugging.check_batch_in_dims(server)
    assert verdict, verdict
    assert "answered the coffee photo with 'espresso'" in str(verdict)


def test_wrong_tensor_name(server):
    said = triton_error(server, "wrong_tensor_name")
    assert "unexpected inference input 'image'" in said and "allowed inputs are: input" in said
    edit_config(server, "wrong_tensor_name", lambda c: setattr(c.input[0], "name", "INPUT"))
    verdict = debugging.check_wrong_tensor_name(server)
    assert not verdict
    assert "input 'INPUT' is not a tensor of the ONNX model: its inputs are named 'input' (names are case-sensitive)" \
        in str(verdict)
    assert "unexpected inference input 'INPUT'" in verdict.triton_said
    edit_config(server, "wrong_tensor_name", lambda c: setattr(c.input[0], "name", "input"))
    assert debugging.check_wrong_tensor_name(server)


def test_no_version_folder(server):
    said = triton_error(server, "no_version_folder")
    assert said == "at least one version must be available under the version policy of model 'no_version_folder'"
    folder = server.repository / "no_version_folder"

    (folder / "v1").mkdir()
    shutil.move(folder / "model.onnx", folder / "v1" / "model.onnx")
    verdict = debugging.check_no_version_folder(server)
    assert not verdict and "the folder 'v1' is not a version folder" in str(verdict)
    assert "at least one version must be available" in verdict.triton_said

    (folder / "1").mkdir()
    verdict = debugging.check_no_version_folder(server)
    assert not verdict and "the version folder '1' holds no model.onnx (it holds: nothing)" in str(verdict)
    assert "unable to find" in verdict.triton_said and "model.onnx" in verdict.triton_said

    shutil.move(folder / "v1" / "model.onnx", folder / "1" / "model.onnx")
    (folder / "v1").rmdir()
    assert debugging.check_no_version_folder(server)


def test_does_not_parse(server):
    said = triton_error(server, "does_not_parse")
    assert "failed to read text proto" in said
    assert 'Message type "inference.ModelOutput" has no field named "dim"' in said
    path = server.repository / "does_not_parse" / "config.pbtxt"
    broken = path.read_text()

    path.write_text(broken.replace("  dim: [1000]", "  dims: [1000"))
    verdict = debugging.check_does_not_parse(server)
    assert not verdict and "config.pbtxt does not parse as a ModelConfig" in str(verdict)
    assert "does not parse as a ModelConfig: line 13, column 3: Expected \",\"." in str(verdict)
    assert verdict.triton_said.startswith("failed to read text proto from ")  # the live server's own words

    path.write_text(broken.replace("  dim: [1000]\n", ""))  # deleting the line parses, but Triton refuses it
    verdict = debugging.check_does_not_parse(server)
    assert not verdict and "output 'logits' has no dims any more" in str(verdict)

    path.write_text(broken.replace("  dim: [1000]", "  dims: [1000]"))
    assert debugging.check_does_not_parse(server)


def test_unreadable_file(server):
    said = triton_error(server, "unreadable_file")
    assert said.startswith("Internal: course ONNX runner: unable to open '") and said.endswith(
        "for model 'unreadable_file': Permission denied")
    model_file = server.repository / "unreadable_file" / "1" / "model.onnx"
    verdict = debugging.check_unreadable_file(server)
    assert not verdict and "---------- unreadable_file/1/model.onnx: the user that runs Triton cannot read it" \
        in str(verdict)

    model_file.chmod(0o600)  # loads here (the server runs as the owner), not for a container's user
    verdict = debugging.check_unreadable_file(server)
    assert not verdict and "only its owner (or group) may read it" in str(verdict)
    assert "docker run --user" in str(verdict)

    model_file.chmod(0o644)
    (model_file.parent).chmod(0o700)
    verdict = debugging.check_unreadable_file(server)
    assert not verdict and "drwx------ unreadable_file/1: only its owner" in str(verdict)

    (model_file.parent).chmod(0o755)
    assert debugging.check_unreadable_file(server)


def test_broken_ensemble(server):
    said = triton_error(server, "broken_ensemble")
    assert said == ("output 'labels' for ensemble 'broken_ensemble' is not written: at least one of its depending "
                    "tensors, 'logits', is not connected")
    verdict = debugging.check_ensemble(server)
    assert not verdict
    assert "step 2 (postprocess) reads the ensemble tensor 'logits' (into its 'logits'), but no earlier step writes it"\
        in str(verdict)

    swapped = broken_models.ensemble_config("broken_ensemble")
    swapped.ensemble_scheduling.step[0].input_map.clear()
    swapped.ensemble_scheduling.step[0].input_map["pixels"] = "input"
    write_config(server.repository / "broken_ensemble", swapped)
    verdict = debugging.check_ensemble(server)
    assert not verdict and "input_map key 'pixels' is not a tensor of efficientnet_lite0 (its inputs: input)" \
        in str(verdict)
    assert "ensemble input 'pixels' for ensemble broken_ensemble' is not used" in verdict.triton_said

    write_config(server.repository / "broken_ensemble", broken_models.ensemble_config("broken_ensemble"))
    verdict = debugging.check_ensemble(server)
    assert verdict and "labelled the coffee photo 'espresso'" in str(verdict)


def test_engine_batch_rule_or_live():
    scenario = broken_models.engine_scenario(None)
    if scenario.live:
        pytest.skip("TensorRT is here: the live path is exercised on a GPU machine")
    assert scenario.reason and scenario.config.max_batch_size == 8 and scenario.engine_max_batch == 4
    verdict = debugging.check_engine_batch(copy_config(scenario.config), scenario)
    assert not verdict
    assert verdict.triton_said.startswith("autofill failed for model 'engine_too_small': configuration specified "
                                          "max-batch 8 but TensorRT engine only supports max-batch 4")
    # Named as what wrote it: the course's copy of the backend's rule, not Triton.
    assert verdict.said_by == "the course's copy of the tensorrt backend's rule (no live server here)"
    assert ("The course's copy of the tensorrt backend's rule (no live server here) said: autofill failed"
            in str(verdict))
    assert "Triton said" not in str(verdict)

    zero = copy_config(scenario.config)
    zero.max_batch_size = 0
    assert "max_batch_size 0 turns batching off" in str(debugging.check_engine_batch(zero, scenario))
    small = copy_config(scenario.config)
    small.max_batch_size = 2
    assert "wastes the engine" in str(debugging.check_engine_batch(small, scenario))
    assert "not a ModelConfig" in str(debugging.check_engine_batch(to_text(small), scenario))

    right = copy_config(scenario.config)
    right.max_batch_size = 4
    verdict = debugging.check_engine_batch(right, scenario)
    assert verdict and "no TensorRT here, so no live server checked it" in str(verdict)


def test_engine_mistake_is_shown_live_or_labelled_as_the_courses_copy(server):
    scenario = broken_models.engine_scenario(server.repository)
    text = debugging.show_engine_mistake(scenario, server)
    if scenario.live and "tensorrt" in server.backends:
        assert "configuration specified max-batch 8 but TensorRT engine only supports max-batch 4" in text
        return
    assert text.startswith("No live Triton can show this mistake here: ")
    assert "What follows is NOT from a server: it is the course's copy of the tensorrt backend's rule" in text
    assert ("The tensorrt backend would say (reproduced, not from a server): autofill failed for model "
            "'engine_too_small': configuration specified max-batch 8 but TensorRT engine only supports max-batch 4"
            ) in text


def test_rebuild_command():
    from triton_course import artifact, tensorrt

    scenario = broken_models.engine_scenario(None)
    right = tensorrt.trtexec_command(artifact.ensure_onnx(), "/x/model.plan", scenario.config)
    assert debugging.check_rebuild_command(right, scenario)
    as_built = copy_config(scenario.config)
    as_built.max_batch_size = 4
    verdict = debugging.check_rebuild_command(
        tensorrt.trtexec_command(artifact.ensure_onnx(), "/x/model.plan", as_built), scenario)
    assert not verdict and "--maxShapes starts the shape of 'input' with 4; it must be 8" in str(verdict)
    verdict = debugging.check_rebuild_command([part.replace("input:", "images:") for part in right], scenario)
    assert not verdict and "--minShapes names the tensor 'images'; the model's input is 'input'" in str(verdict)
    verdict = debugging.check_rebuild_command([], scenario)
    assert not verdict and "the command has no --maxShapes" in str(verdict) and "no --saveEngine" in str(verdict)


def test_control_mode(server, tmp_path):
    repo = tmp_path / "one_model"
    repo.mkdir()
    shutil.copytree(server.repository / broken_models.CLASSIFIER, repo / broken_models.CLASSIFIER)
    empty = tmp_path / "empty"
    empty.mkdir()
    with start_server(empty, model_control_mode="poll") as polling:  # refused whatever the repository holds
        with pytest.raises(ModelLoadError) as caught:
            polling.load_model(broken_models.CLASSIFIER)
    assert "explicit model load / unload is not allowed if polling is enabled" in str(caught.value)

    verdict = debugging.check_control_mode("none", repo)
    assert not verdict and "model-control mode 'none' refused the load" in str(verdict)
    assert verdict.triton_said == "explicit model load / unload is not allowed if polling is enabled"
    verdict = debugging.check_control_mode("explict", repo)
    assert not verdict and "did not start with model-control mode 'explict'" in str(verdict)
    assert verdict.triton_said == 'Bad option: "--model-control-mode". invalid argument for --model-control-mode'
    verdict = debugging.check_control_mode("poll", repo)
    assert not verdict and "'poll' is the mode whose server refused the load above" in str(verdict)
    assert not verdict.triton_said  # no server answered this one: nothing is quoted
    verdict = debugging.check_control_mode("explicit", repo)
    assert verdict and "answered 'espresso'" in str(verdict)


def test_checkpoint_folders_stop_only_a_server_that_loads_everything(tmp_path):
    repo = tmp_path / "jupyter"
    good = broken_models.build(tmp_path / "broken") / broken_models.CLASSIFIER
    shutil.copytree(good, repo / broken_models.CLASSIFIER)
    _, top = broken_models.add_checkpoint_folders(repo)
    said = debugging.try_start(repo)
    assert "Triton did not start" in said
    assert "at least one version must be available under the version policy of model '.ipynb_checkpoints'" in said
    assert "JupyterLab made it" in said  # the course's fix names the cause
    verdict = debugging.check_checkpoints(repo)
    assert not verdict and f"{top} is still there" in str(verdict)

    shutil.rmtree(top)  # the one inside the model folder stays: Triton only warns
    said = debugging.try_start(repo)
    assert said.startswith(f"Triton started and loaded {broken_models.CLASSIFIER}.")
    assert "ignore version directory '.ipynb_checkpoints' which fails to convert to integral number" in said
    verdict = debugging.check_checkpoints(repo)
    assert verdict and "may stay" in str(verdict)

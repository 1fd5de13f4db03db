"""The config editor: checks as you type, Triton's verdict from a real server, saving with a backup.
The widgets are driven as a learner would: set the text box's value, click the buttons."""

from __future__ import annotations

import pytest

from triton_course import CourseError, broken_models
from triton_course.config_editor import ConfigEditor, parse_problem
from triton_course.model_config import to_text

FIXED = to_text(broken_models.classifier_config("batch_in_dims"))


def test_parse_problem_points_at_line_and_column():
    problem = parse_problem('name: "m"\nmax_batch_size 8\n')
    assert problem.startswith('line 2, column 16: Expected ":".')
    assert "\n  max_batch_size 8\n" + " " * 17 + "^\n" in problem
    assert "Fix: config.pbtxt is not valid protobuf text" in problem
    enum = parse_problem('input { name: "x" data_type: TYPE_FLOAT32 dims: [1] }')
    assert "has no value named TYPE_FLOAT32" in enum and "TYPE_FP32 for float32 tensors" in enum
    assert parse_problem(FIXED) is None


@pytest.fixture
def broken_dir(tmp_path):
    return broken_models.add_broken(tmp_path / "repo", "batch_in_dims")


def test_checks_as_you_type(broken_dir, tmp_path):
    editor = ConfigEditor(broken_dir, scratch=tmp_path / "scratch")
    assert len(editor.problems) == 1
    assert "input 'input' dims [-1, 3, 224, 224] still include the batch dimension" in editor.problems[0]
    assert "Problems:" in editor.checks.value

    editor.text.value = FIXED.replace("  dims: [1000]", "  dim: [1000]")
    assert editor.problems[0].startswith("Does not parse as a ModelConfig: line 12, column 3: Message type "
                                         '"inference.ModelOutput" has no field named "dim".')
    editor.text.value = FIXED.replace('name: "input"', 'name: "image"').replace('"batch_in_dims"', '"other"')
    assert any("name 'other' differs from the model's folder 'batch_in_dims': Triton refuses" in p
               for p in editor.problems)
    assert any("input 'image' is not a tensor of the ONNX model: its inputs are named 'input'" in p
               for p in editor.problems)
    editor.text.value = FIXED.replace("max_batch_size: 8", "max_batch_size: 0")
    assert any("output 'logits' dims [1000] lack the batch dimension" in p for p in editor.problems)
    editor.text.value = FIXED
    assert editor.problems == [] and "Parses as a ModelConfig" in editor.checks.value
    assert editor.server is None  # typing never starts a server


@pytest.mark.server
def test_try_loading_shows_tritons_verdict_and_leaves_the_file_alone(broken_dir, tmp_path):
    original = (broken_dir / "config.pbtxt").read_text()
    with ConfigEditor(broken_dir, scratch=tmp_path / "scratch") as editor:
        editor.try_button.click()
        # the dims rule is the onnxruntime backend's, here applied by the course's runner: named as its writer
        assert editor.verdict.startswith("Triton did not load 'batch_in_dims'.\n  The course's ONNX runner "
                                         "(standing in for the onnxruntime backend) said: ")
        assert "the model expects 4 dimensions" in editor.verdict and "making complete shape [-1,-1,3,224,224]" \
            in editor.verdict
        assert "Fix: With max_batch_size > 0 Triton adds the batch dimension itself" in editor.verdict
        assert "Triton did not load" in editor.result.value and not editor.try_button.disabled

        editor.text.value = FIXED
        editor.try_button.click()
        assert editor.verdict == ("Triton loaded 'batch_in_dims' (version 1) from this text. Its metadata:\n"
                                  "  input  input        FP32   [-1, 3, 224, 224]\n"
                                  "  output logits       FP32   [-1, 1000]")
        server = editor.server
        assert server.is_running and server.model_control_mode == "explicit"

        editor.text.value = FIXED.replace("  dims: [1000]", "  dim: [1000]")
        editor.try_button.click()
        assert "failed to read text proto from the editor's text (12:6: " in editor.verdict
        assert 'has no field named "dim"' in editor.verdict
        assert (broken_dir / "config.pbtxt").read_text() == original  # trying never writes the learner's file
    assert not server.is_running  # closing the editor stops its server


@pytest.mark.server
def test_try_loading_keeps_the_models_permissions_and_tritons_naming_rule(tmp_path):
    unreadable = broken_models.add_broken(tmp_path / "repo", "unreadable_file")
    with ConfigEditor(unreadable, scratch=tmp_path / "scratch") as editor:
        editor.try_button.click()
        assert f"unable to open '{unreadable}/1/model.onnx'" in editor.verdict  # the learner's path, not scratch
        assert "Permission denied" in editor.verdict
        assert "Fix: The server cannot read a file of the model: run `chmod a+r FILE`" in editor.verdict

        (unreadable / "1" / "model.onnx").chmod(0o644)
        editor.text.value = editor.text.value.replace('name: "unreadable_file"', 'name: "other"')
        editor.try_button.click()
        assert ("Triton said: unexpected directory name 'unreadable_file' for model 'other', directory name must "
                "equal model name") in editor.verdict
        editor.text.value = editor.text.value.replace('name: "other"', 'name: "unreadable_file"')
        editor.try_button.click()
        assert editor.verdict.startswith("Triton loaded 'unreadable_file' (version 1)")


def test_save_keeps_a_backup_and_refuses_text_that_does_not_parse(broken_dir, tmp_path):
    original = (broken_dir / "config.pbtxt").read_text()
    editor = ConfigEditor(broken_dir, scratch=tmp_path / "scratch")
    editor.text.value = "max_batch_size 8"
    editor.save_button.click()
    assert editor.verdict.startswith("Not saved: the text does not parse.\nline 1, column 16")
    assert (broken_dir / "config.pbtxt").read_text() == original

    editor.text.value = FIXED
    editor.save_button.click()
    assert (broken_dir / "config.pbtxt").read_text() == FIXED
    backups = list(broken_dir.glob("config.pbtxt.*.bak"))
    assert len(backups) == 1 and backups[0].read_text() == original
    assert f"Your previous file is kept as {backups[0].name}." in editor.verdict
    editor.save_button.click()
    assert "(It had the same text already.)" in editor.verdict and len(list(broken_dir.glob("*.bak"))) == 1


def test_a_folder_that_is_not_there_is_named(tmp_path):
    with pytest.raises(CourseError, match="is not a model folder"):
        ConfigEditor(tmp_path / "nope")


def test_an_ensemble_needs_a_version_folder_and_parses(tmp_path):
    folder = tmp_path / "repo" / "pipeline"
    folder.mkdir(parents=True)
    editor = ConfigEditor(folder, scratch=tmp_path / "scratch",
                          text=to_text(broken_models.ensemble_config("pipeline")))
    assert editor.problems == ["the model's folder has no numbered version folder (1/, 2/, ...): Triton would "
                               "find no version to load. An ensemble needs one too, empty."]
    (folder / "1").mkdir()
    editor.validate()
    assert editor.problems == []  # no model file to compare tensors with
    editor.text.value = editor.text.value.replace("model_version: -1", "model_version: latest", 1)
    assert editor.problems[0].startswith("Does not parse as a ModelConfig: line ")
    assert "model_version: latest" in editor.problems[0]

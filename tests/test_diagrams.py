"""The lessons' diagrams: each is a PNG at GitHub's notebook width, and the ensemble's comes from its config."""

import pytest
from PIL import Image

from triton_course import diagrams, ensemble
from triton_course.errors import ConfigError
from triton_course.model_config import copy_config, tensor


def _check_png(path, name):
    assert path.name == name and path.exists()
    with Image.open(path) as image:
        assert image.format == "PNG"
        width, height = image.size
    assert width == 900, "GitHub shows notebook images at about 900 px: wider ones shrink and their text with them"
    assert 300 <= height <= 900
    assert path.stat().st_size > 10_000  # something was drawn


@pytest.mark.parametrize("draw, name", [
    (diagrams.request_path, "02_request_path.png"),
    (diagrams.batcher_queue, "05_batcher_queue.png"),
    (lambda folder: diagrams.ensemble_graph(ensemble.ensemble_config(), folder), "09_ensemble_graph.png"),
    (diagrams.scaled_deployment, "14_scaled_deployment.png"),
])
def test_each_diagram_is_a_png_at_notebook_width(tmp_path, draw, name):
    _check_png(draw(tmp_path / "figures"), name)


def test_scaled_deployment_draws_the_servers_it_is_given(tmp_path):
    two = diagrams.scaled_deployment(tmp_path / "two", servers=2).read_bytes()
    four = diagrams.scaled_deployment(tmp_path / "four", servers=4).read_bytes()
    assert two != four
    with pytest.raises(ValueError, match="at least 1"):
        diagrams.scaled_deployment(tmp_path, servers=0)


def test_batcher_sends_a_batch_when_full_or_when_the_delay_runs_out():
    # one instance busy 2 ms per batch, at most 4 per batch, 1 ms delay
    batches = diagrams._batches([0.0, 0.1, 0.2, 0.3, 0.4, 5.0, 9.0], max_batch_size=4, delay_ms=1.0, run_ms=2.0)
    assert [(start, members, full) for start, members, full in batches] == [
        (0.3, [0, 1, 2, 3], True),  # full as soon as the 4th arrives
        (2.3, [4], False),          # its delay ran out at 1.4, but the instance was busy until 2.3
        (6.0, [5], False),          # alone: sent when its delay ran out
        (10.0, [6], False),
    ]


def test_ensemble_edges_come_from_lesson_09s_config():
    edges = diagrams.ensemble_edges(ensemble.ensemble_config())
    assert [(e.source, e.target, e.tensor) for e in edges] == [
        ("input: image", "step 1: preprocess", "image"),
        ("step 1: preprocess", "step 2: efficientnet_lite0", "pixels"),
        ("step 2: efficientnet_lite0", "step 3: postprocess", "logits"),
        ("step 3: postprocess", "output: labels", "labels"),
        ("step 3: postprocess", "output: scores", "scores"),
    ]


def test_a_changed_config_draws_a_changed_graph(tmp_path):
    config = copy_config(ensemble.ensemble_config())
    # a second branch: the logits also go out as they are, and a tensor is renamed
    config.output.add(**tensor("raw_logits", "TYPE_FP32", [1000]))
    config.ensemble_scheduling.step[1].output_map["logits"] = "raw_logits"
    config.ensemble_scheduling.step[2].input_map["logits"] = "raw_logits"
    edges = {(e.source, e.target, e.tensor) for e in diagrams.ensemble_edges(config)}
    assert ("step 2: efficientnet_lite0", "step 3: postprocess", "raw_logits") in edges
    assert ("step 2: efficientnet_lite0", "output: raw_logits", "raw_logits") in edges
    assert not any(tensor == "logits" for _, _, tensor in edges)
    before = diagrams.ensemble_graph(ensemble.ensemble_config(), tmp_path / "a").read_bytes()
    after = diagrams.ensemble_graph(config, tmp_path / "b").read_bytes()
    assert before != after


def test_a_step_reading_a_tensor_nobody_writes_is_named():
    config = copy_config(ensemble.ensemble_config())
    config.ensemble_scheduling.step[1].input_map["input"] = "pixel"  # a typo of "pixels"
    with pytest.raises(ConfigError) as raised:
        diagrams.ensemble_edges(config)
    message = str(raised.value)
    assert "step 2: efficientnet_lite0" in message and "'pixel'" in message and "Fix:" in message


def test_an_output_no_step_writes_is_named():
    config = copy_config(ensemble.ensemble_config())
    del config.ensemble_scheduling.step[2].output_map["scores"]
    with pytest.raises(ConfigError, match="output 'scores' is written by no step"):
        diagrams.ensemble_edges(config)


def test_a_cycle_is_refused():
    config = copy_config(ensemble.ensemble_config())
    config.ensemble_scheduling.step[0].input_map["extra"] = "logits"  # step 1 reads what step 2 writes
    with pytest.raises(ConfigError, match="cycle"):
        diagrams.ensemble_edges(config)


def test_a_model_that_is_not_an_ensemble_is_refused():
    with pytest.raises(ConfigError, match="'preprocess' is not an ensemble"):
        diagrams.ensemble_edges(ensemble.preprocess_config())


def test_the_committed_figures_are_what_the_code_draws(tmp_path):
    """The notebooks show PNGs from notebooks/figures/: redraw each and compare, so a change to this module that
    is not followed by running the lessons (or draw_all) fails here instead of showing an old picture."""
    import numpy as np

    from triton_course.paths import course_root

    committed = course_root() / "notebooks" / "figures"
    for path in diagrams.draw_all(tmp_path):
        with Image.open(path) as new, Image.open(committed / path.name) as old:
            assert new.size == old.size, path.name
            changed = np.any(np.asarray(new.convert("RGB")) != np.asarray(old.convert("RGB")), axis=-1).mean()
        # a few anti-aliased pixels may differ between machines; a changed drawing moves far more
        assert changed < 0.005, (f"notebooks/figures/{path.name} is out of date: "
                                 "run diagrams.draw_all('notebooks/figures')")


def test_a_branching_ensemble_puts_parallel_steps_in_one_column(tmp_path):
    # one preprocessing step feeding two models, as in architecture.md's "Ensemble Models" example
    config = copy_config(ensemble.ensemble_config())
    del config.output[:]
    config.output.add(**tensor("classes", "TYPE_FP32", [1000]))
    config.output.add(**tensor("mask", "TYPE_FP32", [3, 224, 224]))
    del config.ensemble_scheduling.step[1:]
    config.ensemble_scheduling.step.add(model_name="classifier", input_map={"x": "pixels"}, output_map={"y": "classes"})
    config.ensemble_scheduling.step.add(model_name="segmenter", input_map={"x": "pixels"}, output_map={"y": "mask"})
    columns = diagrams._columns(diagrams.ensemble_edges(config))
    assert columns["step 2: classifier"] == columns["step 3: segmenter"] == columns["step 1: preprocess"] + 1
    assert columns["output: classes"] == columns["output: mask"] == 3
    assert diagrams.ensemble_graph(config, tmp_path).exists()

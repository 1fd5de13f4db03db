"""Lab 05 checks against a real server: the right config passes, each typical mistake gets its message."""

from __future__ import annotations

import pytest

import triton_course
from triton_course import artifact, model_config, repository, tuning
from triton_course.checks import lab05
from triton_course.checks._serving import executions_by_batch_size

RIGHT = """
name: "batched"
platform: "onnxruntime_onnx"
max_batch_size: 8
input { name: "input" data_type: TYPE_FP32 dims: [3, 224, 224] }
output { name: "logits" data_type: TYPE_FP32 dims: [1000] label_filename: "labels.txt" }
dynamic_batching { max_queue_delay_microseconds: 1000 }
"""


@pytest.fixture(scope="module")
def server(reference_repo, tmp_path_factory):
    repo = tmp_path_factory.mktemp("lab05") / "model_repository"
    repository.add_version(repo, lab05.MODEL, 1, artifact.ensure_onnx())
    repository.write_file(repo / lab05.MODEL / "labels.txt", "\n".join(artifact.labels()) + "\n")
    with triton_course.start_server(repo, model_control_mode="explicit") as s:
        yield s


def test_right_config_passes_and_batches_form(server):
    verdict = lab05.check_batching_config(server, RIGHT)
    assert verdict.ok, verdict
    assert "more than one request" in verdict.confirmation


def test_a_modelconfig_message_is_accepted(server):
    config = tuning.batching_config(artifact.reference_config(), 1000, name="batched")
    assert lab05.check_batching_config(server, config).ok


def test_delay_in_milliseconds(server):
    verdict = lab05.check_batching_config(server, RIGHT.replace("delay_microseconds: 1000", "delay_microseconds: 1"))
    assert not verdict.ok
    assert "max_queue_delay_microseconds is 1 (the field counts microseconds" in str(verdict)


def test_no_dynamic_batching_block(server):
    text = RIGHT.replace("dynamic_batching { max_queue_delay_microseconds: 1000 }", "")
    verdict = lab05.check_batching_config(server, text)
    assert "There is no dynamic_batching block" in str(verdict)
    assert "Add dynamic_batching" in verdict.hint


def test_max_batch_size_zero(server):
    text = (RIGHT.replace("max_batch_size: 8", "max_batch_size: 0")
            .replace("dims: [3, 224, 224]", "dims: [-1, 3, 224, 224]").replace("dims: [1000]", "dims: [-1, 1000]"))
    verdict = lab05.check_batching_config(server, text)
    assert "max_batch_size is 0" in str(verdict)


def test_preferred_larger_than_max_is_triton_s_error(server):
    text = RIGHT.replace("1000 }", "1000 preferred_batch_size: [16] }")
    verdict = lab05.check_batching_config(server, text)
    assert verdict.triton_said == "dynamic batching preferred size must be <= max batch size for batched"
    assert "leave preferred_batch_size out" in verdict.hint


def test_preferred_size_set(server):
    text = RIGHT.replace("1000 }", "1000 preferred_batch_size: [4] }")
    assert "preferred_batch_size is [4]" in str(lab05.check_batching_config(server, text))


def test_wrong_name_quotes_triton(server):
    verdict = lab05.check_batching_config(server, RIGHT.replace('name: "batched"', 'name: "efficientnet_lite0"'))
    assert "directory name must equal model name" in verdict.triton_said
    assert "'batched'" in verdict.hint


def test_delay_with_unit_does_not_parse(server):
    verdict = lab05.check_batching_config(server, RIGHT.replace("1000 }", '"1ms" }'))
    assert "failed to read text proto" in verdict.triton_said
    assert "whole numbers" in verdict.hint


def test_not_text(server):
    assert "write the text of config.pbtxt" in str(lab05.check_batching_config(server, None))


def test_batch_histogram(server):
    assert lab05.check_batching_config(server, RIGHT).ok
    assert lab05.check_batch_histogram(server, executions_by_batch_size).ok

    def string_keys(stats):
        return {str(k): v for k, v in executions_by_batch_size(stats).items()}

    def nanoseconds(stats):
        return {int(r["batch_size"]): int(r["compute_infer"]["ns"])
                for e in stats["model_stats"] for r in e["batch_stats"]}

    def requests(stats):
        return {k: k * v for k, v in executions_by_batch_size(stats).items()}

    def raises(stats):
        return {r["batch_size"]: r["count"] for r in stats["batch_stats"]}

    assert "keys are strings" in str(lab05.check_batch_histogram(server, string_keys))
    assert "compute_infer ns" in str(lab05.check_batch_histogram(server, nanoseconds))
    assert "count requests" in str(lab05.check_batch_histogram(server, requests))
    assert "raised KeyError" in str(lab05.check_batch_histogram(server, raises))
    assert "return a dict" in str(lab05.check_batch_histogram(server, lambda stats: [1, 2]))


def test_histogram_without_batching_says_so(server):
    plain = model_config.to_text(tuning.batching_config(artifact.reference_config(), None, name="batched"))
    assert "no dynamic_batching" in str(lab05.check_batching_config(server, plain))
    verdict = lab05.check_batch_histogram(server, executions_by_batch_size)
    assert not verdict.ok and "batch size 1" in str(verdict)

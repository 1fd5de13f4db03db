"""Lab 07b checks: the search space read with Model Analyzer's own validator, the deployed config, the frontier."""

from __future__ import annotations

from dataclasses import replace

import pytest

from triton_course import artifact, model_analyzer
from triton_course.checks import lab07b
from triton_course.model_config import copy_config, parse_config, to_text

RIGHT = dict(lab07b.WANTED)


def with_(**changes):
    search = dict(RIGHT)
    for key, value in changes.items():
        if value is None:
            search.pop(key)
        else:
            search[key] = value
    return search


def test_right_search_passes_and_counts_what_it_will_run():
    verdict = lab07b.check_search(RIGHT)
    assert verdict.ok, str(verdict)
    assert "writes 3 configurations (the model's own included), each measured at 2 concurrencies" in str(verdict)


@pytest.mark.parametrize("search, said", [
    (with_(run_config_search_max_instances=1, run_config_search_max_instance_count=None),
     "Model Analyzer said: run_config_search_max_instances is not a valid yaml argument. Please be sure to use "
     "underscores and check spelling."),
    (with_(**{"run-config-search-max-concurrency": 2, "run_config_search_max_concurrency": None}),
     "run-config-search-max-concurrency is not a valid yaml argument"),
    (with_(run_config_search_max_concurrency="two"), "invalid literal for int() with base 10: 'two'"),
], ids=["misspelt_key", "dashes", "not_a_number"])
def test_a_key_model_analyzer_refuses_is_quoted(search, said):
    verdict = lab07b.check_search(search)
    assert not verdict.ok and "Model Analyzer refuses the key" in str(verdict) and said in str(verdict), str(verdict)


@pytest.mark.parametrize("search, message", [
    (with_(run_config_search_mode="quick"), "run_config_search_mode is 'quick': ask for 'brute'"),
    (with_(run_config_search_max_concurrency=None),
     "run_config_search_max_concurrency is missing: Model Analyzer would then try 1, 2, 4, ... 1024 clients"),
    (with_(run_config_search_max_model_batch_size=4),
     "run_config_search_max_model_batch_size is 4; the exercise asks for 2."),
    (with_(run_config_search_min_concurrency=2), "run_config_search_min_concurrency is 2: leave it out"),
    (with_(model_repository="/tmp"), "'model_repository' is a key Model Analyzer knows, but not part of the search"),
    ("run_config_search_mode: brute", "search must be a dict of Model Analyzer's keys, not str"),
], ids=["quick", "no_concurrency", "batch_4", "min_concurrency", "not_search_key", "text"])
def test_search_mistakes_are_named(search, message):
    verdict = lab07b.check_search(search)
    assert not verdict.ok and message in str(verdict), str(verdict)


def _chosen():
    """A config as Model Analyzer writes one for the served copy: python backend, its own name."""
    text = to_text(artifact.reference_config(max_batch_size=2)).replace(
        'platform: "onnxruntime_onnx"', 'backend: "python"').replace(
        '"efficientnet_lite0"', '"efficientnet_lite0_config_1"')
    chosen = parse_config(text + '\ninstance_group { count: 1 kind: KIND_CPU }\n'
                          'dynamic_batching { }\nparameters { key: "onnx_model_filename" value { string_value: '
                          '"model.onnx" } }\n')
    return chosen


def test_deployable_config_right_answer_passes():
    base, chosen = artifact.reference_config(), _chosen()
    verdict = lab07b.check_deployable(model_analyzer.deployable_config(base, chosen), chosen, base)
    assert verdict.ok, str(verdict)
    assert lab07b.check_deployable(to_text(model_analyzer.deployable_config(base, chosen)), chosen, base).ok


def test_deployable_config_mistakes_are_named():
    base, chosen = artifact.reference_config(), _chosen()
    verdict = lab07b.check_deployable(chosen, chosen, base)  # Model Analyzer's own file, as it is
    text = str(verdict)
    assert "name is 'efficientnet_lite0_config_1'; the deployed model keeps its folder's name, 'efficientnet_lite0'" \
        in text
    assert "backend: python and the parameter onnx_model_filename are the course's runner" in text
    unchanged = copy_config(base)
    text = str(lab07b.check_deployable(unchanged, chosen, base))
    assert "max_batch_size is 8; Model Analyzer's choice has 2." in text
    assert "dynamic_batching differs from Model Analyzer's choice" in text
    assert ("instance_group is [] (none: Triton's default); "
            "Model Analyzer's choice has [count: 1 kind: KIND_CPU]") in text
    assert "does not parse as a Triton ModelConfig" in str(lab07b.check_deployable("max_batch_size 2", chosen, base))


def _rows():
    row = model_analyzer.Row(config="m_config_0", instances=1, max_batch_size=1, dynamic_batching=True, concurrency=1,
                             throughput=10.0, p99_ms=20.0, p90_ms=0, p95_ms=0, avg_ms=0, queue_ms=0, compute_ms=0)
    return [row, replace(row, concurrency=2, throughput=15.0, p99_ms=30.0),
            replace(row, config="m_config_1", throughput=12.0, p99_ms=25.0),
            replace(row, config="m_config_1", concurrency=2, throughput=14.0, p99_ms=40.0)]


def test_frontier_check():
    rows = _rows()
    assert lab07b.check_frontier(model_analyzer.frontier, rows).ok
    text = str(lab07b.check_frontier(lambda rs: rs, rows))
    assert "m_config_1 at 2 client(s) (14.0 infer/s, p99 40.0 ms) is not on the frontier: m_config_0 at 2 client(s)" \
        in text
    text = str(lab07b.check_frontier(lambda rs: [max(rs, key=lambda r: r.throughput)], rows))
    assert "m_config_0 at 1 client(s) (10.0 infer/s, p99 20.0 ms) is missing" in text
    assert "raised ZeroDivisionError" in str(lab07b.check_frontier(lambda rs: 1 / 0, rows))


# --- exercise 1 as YAML text, and the perf_analyzer command (exercise 3) ---------------------------------

CONFIG = """
model_repository: /labs/07b/model_repository
triton_launch_mode: local
run_config_search_mode: brute
run_config_search_max_instance_count: 1
run_config_search_max_model_batch_size: 2
run_config_search_max_concurrency: 2
profile_models:
  efficientnet_lite0:
    cpu_only: true
    perf_analyzer_flags:
      shape: input:3,224,224
"""
REPO = "/labs/07b/model_repository"


def test_right_config_passes():
    verdict = lab07b.check_config(CONFIG, REPO)
    assert verdict.ok, str(verdict)
    assert "3 configurations (the model's own included), each at 2 concurrencies" in str(verdict)


@pytest.mark.parametrize("old, new, message", [
    ("triton_launch_mode: local", "triton_launch_mode: docker",
     "triton_launch_mode is 'docker': write local, so that Model Analyzer starts tritonserver itself"),
    ("triton_launch_mode: local\n", "", "triton_launch_mode is None: write local"),
    ("model_repository: /labs/07b/model_repository", "model_repository: /tmp/other",
     "model_repository is '/tmp/other'; the lab's repository is '/labs/07b/model_repository'."),
    ("model_repository: /labs/07b/model_repository\n", "", "model_repository is missing"),
    ("    cpu_only: true\n", "", "cpu_only is None for efficientnet_lite0: write cpu_only: true"),
    ("shape: input:3,224,224", "shape: 3,224,224", "perf_analyzer_flags has shape '3,224,224'"),
    ("  efficientnet_lite0:", "  efficientnet:", "profile_models must name the model 'efficientnet_lite0'"),
    ("run_config_search_max_concurrency: 2", "run_config_search_max_concurrency: 8",
     "run_config_search_max_concurrency is 8; the exercise asks for 2."),
    ("run_config_search_mode: brute", "run_config_search_mode: quick", "run_config_search_mode is 'quick'"),
    ("run_config_search_max_instance_count: 1", "run_config_search_max_instances: 1",
     "Model Analyzer refuses the key 'run_config_search_max_instances'"),
    ("profile_models:\n  efficientnet_lite0:", "profile_models:\nefficientnet_lite0:",
     "Model Analyzer refuses the key 'efficientnet_lite0'. efficientnet_lite0 is the model: indent it under"),
], ids=["docker", "no_mode", "other_repo", "no_repo", "no_cpu_only", "shape_without_name", "model_name",
        "concurrency", "quick", "misspelt", "flat_yaml"])
def test_config_mistakes_are_named(old, new, message):
    assert old in CONFIG
    verdict = lab07b.check_config(CONFIG.replace(old, new), REPO)
    assert not verdict.ok and message in str(verdict), str(verdict)


def test_config_that_is_not_yaml_or_not_text():
    assert "The text is not valid YAML." in str(lab07b.check_config("a: [1, 2", REPO))
    assert "Write the config as YAML text (a string), not dict." in str(lab07b.check_config({"a": 1}, REPO))
    assert "must be a YAML mapping" in str(lab07b.check_config("- a\n- b\n", REPO))


PERF = ("perf_analyzer -m efficientnet_lite0 -u 127.0.0.1:8001 -i grpc --concurrency-range 2:2 "
        "--shape input:3,224,224 -f perf.csv")


def _perf(command):
    return lab07b.check_perf_analyzer_command(command, model="efficientnet_lite0", url="127.0.0.1:8001",
                                              concurrency=2, exercise="Exercise 3")


def test_right_perf_analyzer_command_passes_in_either_flag_spelling():
    assert _perf(PERF).ok, str(_perf(PERF))
    long_form = ("perf_analyzer --model-name=efficientnet_lite0 --url 127.0.0.1:8001 --protocol grpc "
                 "--concurrency-range=2:2 --shape=input:3,224,224 --latency-report-file perf.csv -p 1000")
    assert _perf(long_form).ok, str(_perf(long_form))


@pytest.mark.parametrize("old, new, message", [
    ("perf_analyzer ", "perf_analyser ", "The command starts with 'perf_analyser'; it starts with perf_analyzer."),
    ("-m efficientnet_lite0", "-m efficientnet", "-m is 'efficientnet'; the model to measure is 'efficientnet_lite0'."),
    ("-u 127.0.0.1:8001", "-u http://127.0.0.1:8001", "-u is 'http://127.0.0.1:8001'; the server's gRPC address"),
    ("-i grpc ", "", "-i is None: write -i grpc"),
    ("--concurrency-range 2:2 ", "", "--concurrency-range is missing: perf_analyzer then measures 1 client"),
    ("--concurrency-range 2:2", "--concurrency-range 1:4", "--concurrency-range is '1:4'; the exercise asks for 2"),
    ("--shape input:3,224,224", "--shape 3,224,224", "--shape is '3,224,224'"),
    (" -f perf.csv", "", "-f is missing: it writes the CSV report the next cell reads."),
], ids=["program", "model", "url", "protocol", "no_concurrency", "concurrency", "shape", "report"])
def test_perf_analyzer_command_mistakes_are_named(old, new, message):
    assert old in PERF
    verdict = _perf(PERF.replace(old, new))
    assert not verdict.ok and message in str(verdict), str(verdict)
    assert "Write the command as one string" in str(_perf(None))

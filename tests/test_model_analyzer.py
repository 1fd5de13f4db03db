"""Model Analyzer against the embedded server: the config the course writes, one real (small) profile run
shared by the tests, its results read back, the choice under a budget, and the errors a learner can meet."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import psutil
import pytest
import yaml

from triton_course import model_analyzer, perf_analyzer
from triton_course.model_config import ModelConfig, read_config
from triton_course.paths import MODEL_NAME

pytestmark = pytest.mark.skipif(perf_analyzer.find_binary() is None, reason="perf_analyzer does not run here")
# Brute search of one instance, max batch 1 and 2, one and two clients: 3 configurations (the model's own too).
TINY = {"run_config_search_mode": "brute", "run_config_search_max_instance_count": 1,
        "run_config_search_max_model_batch_size": 2, "run_config_search_max_concurrency": 2}


def _servers() -> list[str]:
    found = []
    for p in psutil.process_iter(["name", "cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if ("tritonserver" in (p.info["name"] or "") or "perf_analyzer" in cmd) and "model_analyzer_tests" in cmd:
            found.append(cmd)
    return found


@pytest.fixture(scope="module")
def run(reference_repo, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("model_analyzer_tests")
    return model_analyzer.profile(reference_repo, workdir, search=TINY, stream=False, deadline_s=600)


def test_config_is_local_mode_with_the_embedded_server_and_the_courses_perf_analyzer(tmp_path):
    config = model_analyzer.profile_config(tmp_path / "repo", tmp_path)
    assert config["triton_launch_mode"] == "local" and "dcgm_disable" not in config
    assert config["triton_server_path"].endswith("pytriton/tritonserver/bin/tritonserver")
    assert config["perf_analyzer_path"] == str(perf_analyzer.find_binary())
    assert {"LD_LIBRARY_PATH", "PATH", "PYTHONPATH"} == set(config["triton_server_environment"])
    flags = config["triton_server_flags"]
    assert flags["http-address"] == flags["grpc-address"] == flags["metrics-address"] == "127.0.0.1"
    assert (Path(flags["backend-directory"]) / "python").is_dir()
    assert config["profile_models"] == {MODEL_NAME: {"cpu_only": True, "perf_analyzer_flags": {
        "shape": "input:3,224,224", "stability-percentage": model_analyzer.STABILITY_PERCENT}}}
    for key, value in model_analyzer.SMALL_SEARCH.items():
        assert config[key] == value
    assert config["checkpoint_directory"].startswith(str(tmp_path.resolve()))


@pytest.mark.server
def test_a_real_run_profiles_every_configuration_and_leaves_nothing_running(run):
    names = run.configs()
    assert names == [f"{MODEL_NAME}_config_default", f"{MODEL_NAME}_config_0", f"{MODEL_NAME}_config_1"]
    assert {r.concurrency for r in run.rows} <= {1, 2}
    assert all(r.throughput > 0 and r.p99_ms > 0 for r in run.rows)
    assert [(r.max_batch_size, r.dynamic_batching) for r in run.rows if r.config.endswith("_0")][0] == (1, True)
    assert run.reports() and run.reports()[0].name.endswith(".html") and "summaries" in run.reports()[0].parts
    assert not _servers(), "Model Analyzer left a server or perf_analyzer running"


@pytest.mark.server
def test_results_csv_is_read_row_by_row(run):
    with open(run.results_csv) as f:
        raw = list(csv.DictReader(f))
    assert len(raw) == len(run.rows)
    rows = {(r.config, r.concurrency): r for r in run.rows}
    for line in raw:
        row = rows[line["Model Config Path"], int(line["Concurrency"])]
        assert row.throughput == pytest.approx(float(line["Throughput (infer/sec)"]))
        assert row.p99_ms == pytest.approx(float(line["p99 Latency (ms)"]))
        assert row.max_batch_size == int(line["Max Batch Size"])
    # listed as Model Analyzer wrote the configurations (its CSV ranks them), each by rising concurrency
    assert [(r.config, r.concurrency) for r in run.rows] == sorted(
        rows, key=lambda k: (-1 if k[0].endswith("default") else int(k[0].rsplit("_", 1)[1]), k[1]))


@pytest.mark.server
def test_chosen_config_is_read_with_tritons_protobuf_and_becomes_deployable(run, reference_repo):
    best = model_analyzer.best_under_budget(run.rows, max(r.p99_ms for r in run.rows))
    assert best.throughput == max(r.throughput for r in run.rows)
    chosen = run.model_config(best.config)
    assert isinstance(chosen, ModelConfig) and chosen.backend == "python"  # the served copy MA profiled
    base = read_config(reference_repo / MODEL_NAME / "config.pbtxt")
    deploy = model_analyzer.deployable_config(base, chosen)
    assert deploy.platform == "onnxruntime_onnx" and deploy.name == MODEL_NAME
    assert deploy.max_batch_size == chosen.max_batch_size and list(deploy.instance_group) == list(chosen.instance_group)
    with pytest.raises(model_analyzer.ModelAnalyzerError, match="Use one of: "):
        run.model_config("efficientnet_lite0_config_99")


@pytest.mark.server
def test_a_budget_nothing_meets_names_the_best_p99_measured(run):
    lowest = min(r.p99_ms for r in run.rows)
    with pytest.raises(model_analyzer.NothingUnderBudgetError) as error:
        model_analyzer.best_under_budget(run.rows, lowest / 2)
    assert f"the lowest p99 measured was {lowest:.1f} ms" in str(error.value)
    assert f"Raise the budget to at least {lowest:.1f} ms" in str(error.value)
    assert model_analyzer.best_under_budget(run.rows, lowest).p99_ms == lowest


@pytest.mark.server
def test_frontier_keeps_only_points_nothing_beats(run):
    edge = model_analyzer.frontier(run.rows)
    for point in edge:
        assert not any(r.p99_ms < point.p99_ms and r.throughput > point.throughput for r in run.rows)
    assert max(run.rows, key=lambda r: r.throughput) in edge


@pytest.mark.server
def test_a_model_name_model_analyzer_cannot_find_quotes_it(reference_repo, tmp_path):
    with pytest.raises(model_analyzer.ModelAnalyzerError) as error:
        model_analyzer.profile(reference_repo, tmp_path, model="efficientnet_lite", search=TINY, stream=False,
                               deadline_s=300)
    text = str(error.value)
    assert "found no model 'efficientnet_lite'" in text
    assert "Model Analyzer said: Model efficientnet_lite load failed: " in text
    assert "failed to poll from model repository" in text
    assert f"Profile a model folder of that repository: {MODEL_NAME}" in text
    assert not _servers()


def test_a_gpu_machine_without_dcgm_is_named_with_what_installs_it(tmp_path):
    """The end of Model Analyzer's log on an H200 machine without DCGM (it loads DCGM whenever CUDA is visible)."""
    log = ('  File "/site/model_analyzer/monitor/dcgm/dcgm_structs.py", line 691, in _dcgmCheckReturn\n'
           "    raise DCGMError(ret)\n"
           "model_analyzer.monitor.dcgm.dcgm_structs.DCGMError_LibraryNotFound: DCGM library could not be found\n")
    (tmp_path / MODEL_NAME).mkdir()
    (tmp_path / MODEL_NAME / "config.pbtxt").write_text("")
    error = model_analyzer._failure("_dcgmCheckReturn(DCGM_ST_LIBRARY_NOT_FOUND)\n" + log, 1, tmp_path, MODEL_NAME,
                                    tmp_path / "model_analyzer.log")
    assert "needs NVIDIA DCGM (libdcgm.so), which is not installed here" in str(error)
    assert "DCGM library could not be found" in str(error)  # Model Analyzer's own words
    assert "datacenter-gpu-manager" in str(error) and "-py3-sdk" in str(error)
    assert "NUMBA_DISABLE_CUDA=1" in str(error)


@pytest.mark.parametrize("has_gpu, has_dcgm, expected", [
    (True, False, {"NUMBA_DISABLE_CUDA": "1"}),  # a typical GPU pod: Model Analyzer must not look for DCGM
    (True, True, {}),  # DCGM there: Model Analyzer finds the GPUs and records their metrics
    (False, False, {}),  # no GPU: numba finds none, Model Analyzer never loads DCGM
])
def test_model_analyzer_skips_dcgm_only_on_a_gpu_machine_without_it(tmp_path, monkeypatch, has_gpu, has_dcgm,
                                                                     expected):
    from triton_course import gpu

    card = gpu.Gpu(0, "NVIDIA H200", "580.159.04", "143771 MiB")
    monkeypatch.setattr(gpu, "nvidia_smi_gpus", lambda: [card] if has_gpu else [])
    library = tmp_path / "libdcgm.so.4"
    if has_dcgm:
        library.write_bytes(b"")
    monkeypatch.setattr(model_analyzer, "DCGM_PATHS", (str(library),))
    assert model_analyzer.environment() == expected
    line = model_analyzer.command_line(tmp_path / "ma.yaml")
    assert line.startswith("NUMBA_DISABLE_CUDA=1 model-analyzer profile") == bool(expected)


def test_missing_perf_analyzer_says_what_installs_it(tmp_path, monkeypatch):
    monkeypatch.setenv("PERF_ANALYZER", str(tmp_path / "perf_analyzer"))  # nothing there
    with pytest.raises(model_analyzer.ModelAnalyzerError) as error:
        model_analyzer.profile_config(tmp_path, tmp_path)
    assert "perf_analyzer, which cannot run here" in str(error.value)
    assert "triton-course prepare" in str(error.value)


def test_config_file_is_yaml_model_analyzer_reads(tmp_path):
    path = model_analyzer.write_config(model_analyzer.profile_config(tmp_path, tmp_path), tmp_path / "ma.yaml")
    from model_analyzer.config.input.yaml_config_validator import YamlConfigValidator

    YamlConfigValidator.validate(yaml.safe_load(path.read_text()))  # raises on a key Model Analyzer does not know


def test_guard_stops_what_model_analyzer_started_when_the_notebook_dies():
    # Model Analyzer starts its servers in sessions of their own; the guard must stop them when its owner goes.
    import subprocess
    import sys
    import time

    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(2)"])
    marker = "import time; time.sleep(301)"
    guard = subprocess.Popen([sys.executable, "-I", "-c", model_analyzer._GUARD, str(owner.pid), "bash", "-c",
                              f"setsid {sys.executable} -c '{marker}' & {sys.executable} -c '{marker}'"],
                             start_new_session=True)

    def started():
        return [p for p in psutil.process_iter(["cmdline"]) if (p.info["cmdline"] or [])[-1:] == [marker]]

    deadline = time.monotonic() + 10
    while len(started()) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(started()) == 2
    owner.wait()
    guard.wait(timeout=30)
    assert not started(), "a process below the guard outlived its owner"


def test_the_streamed_log_keeps_the_lines_that_matter():
    """Lines of a real run's log (lesson 07b): each configuration, each concurrency, a repeated measurement, an early
    stop of the search and the end are shown; checkpoints, CPU/GPU metric warnings and report paths stay in the
    log file."""
    log = "\n".join(f"[Model Analyzer] {line}" for line in [
        "Starting a local Triton Server",
        "Creating model config: efficientnet_lite0_config_0",
        "  Setting instance_group to [{'count': 1, 'kind': 'KIND_CPU'}]",
        "Profiling efficientnet_lite0_config_0: concurrency=4",
        "WARNING: One or more models are running on the CPU, but CPU metric(s) are not being collected",
        "Saved checkpoint to /work/main/workspace/07b_model_analyzer/analysis/checkpoints/0.ckpt",
        "perf_analyzer's request count is too small, increased to 100.",
        "Existing measurement found for run config. Skipping profile",
        "No longer increasing max_batch_size because throughput has plateaued",
        "Profile complete. Profiled 7 configurations for models: ['efficientnet_lite0']",
        'WARNING: GPU output field "gpu_used_memory", has no data',
        "Exporting Summary Report to /work/x/result_summary.html",
        "Model Analyzer encountered an error: Failed to load the model",
    ])
    assert model_analyzer.shown(model_analyzer._log_lines(log)) == [
        "Creating model config: efficientnet_lite0_config_0",
        "Profiling efficientnet_lite0_config_0: concurrency=4",
        "perf_analyzer's request count is too small, increased to 100.",
        "No longer increasing max_batch_size because throughput has plateaued",
        "Profile complete. Profiled 7 configurations for models: ['efficientnet_lite0']",
        "Model Analyzer encountered an error: Failed to load the model",
    ]


LEARNER_YAML = """
model_repository: {repo}
triton_launch_mode: local
run_config_search_mode: brute
run_config_search_max_instance_count: 1
constraints:
  perf_latency_p99:
    max: 50
profile_models:
  efficientnet_lite0:
    cpu_only: true
    perf_analyzer_flags:
      shape: input:3,224,224
"""


def test_the_learners_yaml_is_kept_and_this_machines_keys_are_added(reference_repo, tmp_path):
    path = model_analyzer.complete_config(LEARNER_YAML.format(repo=reference_repo), tmp_path / "work")
    written, learner = yaml.safe_load(path.read_text()), yaml.safe_load(LEARNER_YAML.format(repo=reference_repo))
    assert path.name == "config.yaml"
    for key, value in learner.items():
        if key != "model_repository":
            assert written[key] == value, key
    assert set(model_analyzer.MACHINE_KEYS) <= set(written)
    served = Path(written["model_repository"])
    assert served.name == "served_repository" and (served / MODEL_NAME / "config.pbtxt").exists()
    assert 'backend: "python"' in (served / MODEL_NAME / "config.pbtxt").read_text()
    assert model_analyzer.command_line(path) == f"model-analyzer profile -f {path}"


@pytest.mark.parametrize("change, message", [
    (lambda t: t.replace("triton_launch_mode: local", "triton_launch_mode: docker"),
     "triton_launch_mode is 'docker': here Model Analyzer must start the embedded tritonserver itself"),
    (lambda t: t + "perf_analyzer_path: /usr/bin/perf_analyzer\n",
     "perf_analyzer_path depend(s) on this machine: the course writes them"),
    (lambda t: t.replace("profile_models:", "models:"), "The config has no profile_models"),
    (lambda t: "a: [1, 2", "The config is not valid YAML."),
    (lambda t: t.replace("  efficientnet_lite0:\n", "  efficientnet_lite0:\n  other:\n"),
     "profile_models names 2 models; the course runs one at a time."),
], ids=["docker", "machine_key", "no_models", "not_yaml", "two_models"])
def test_a_config_the_course_cannot_run_says_why(reference_repo, tmp_path, change, message):
    with pytest.raises(model_analyzer.ModelAnalyzerError) as caught:
        model_analyzer.complete_config(change(LEARNER_YAML.format(repo=reference_repo)), tmp_path / "work")
    assert message in str(caught.value)


def test_without_dcgm_the_profiled_copy_is_served_on_the_cpu(tmp_path, monkeypatch):
    """Model Analyzer's server then sees no GPU (server_local.py passes it the GPUs Model Analyzer found: none), so
    the copy it serves must not be the PyTorch runner on the GPU."""
    seen = []
    monkeypatch.setattr(model_analyzer, "served_copy",
                        lambda repository, backends, target: (seen.append(os.environ.get("TRITON_COURSE_DEVICE")),
                                                              (target, []))[1])
    monkeypatch.delenv("TRITON_COURSE_DEVICE", raising=False)
    for hidden in ({"NUMBA_DISABLE_CUDA": "1"}, {}):
        monkeypatch.setattr(model_analyzer, "environment", lambda hidden=hidden: hidden)
        assert model_analyzer._served_copy(tmp_path, tmp_path) == tmp_path / "served_repository"
    assert seen == ["cpu", None]
    assert "TRITON_COURSE_DEVICE" not in os.environ  # put back as it was

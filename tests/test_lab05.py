"""Lab 05 checks against a real server: the right config passes, each typical mistake gets its message."""

from __future__ import annotations

import threading

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


@pytest.fixture
def batching(server):
    """The server with RIGHT loaded as 'batched' (reloaded only when an earlier test left another config)."""
    with server.http_client() as client:
        served = client.get_model_config(lab05.MODEL) if client.is_model_ready(lab05.MODEL) else {}
    if served.get("dynamic_batching", {}).get("max_queue_delay_microseconds") != 1000:
        assert lab05.check_batching_config(server, RIGHT).ok
    return server


def _client(url, model, requests):
    import numpy as np
    import tritonclient.grpc as grpcclient

    image = np.zeros((1, 3, 224, 224), dtype=np.float32)
    with grpcclient.InferenceServerClient(url) as triton:
        tensor = grpcclient.InferInput("input", list(image.shape), "FP32")
        tensor.set_data_from_numpy(image)
        for _ in range(requests):
            triton.infer(model, [tensor])


def concurrent(url, model, clients, requests_each):
    threads = [threading.Thread(target=_client, args=(url, model, requests_each)) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_client_loop_right(batching):
    verdict = lab05.check_client_loop(batching, concurrent)
    assert verdict.ok, verdict
    assert "your clients sent at the same time" in verdict.confirmation


def test_client_loop_one_after_another(batching):
    def sequential(url, model, clients, requests_each):
        for _ in range(clients):
            t = threading.Thread(target=_client, args=(url, model, requests_each))
            t.start()
            t.join()

    verdict = lab05.check_client_loop(batching, sequential)
    assert "but one at a time" in str(verdict)
    assert "start() them all, then join() them all" in verdict.hint


def test_client_loop_counts(batching):
    one = lab05.check_client_loop(batching, lambda url, model, clients, each: concurrent(url, model, 1, each))
    assert "Triton counted 4 successful requests" in str(one) and "Only one client's requests" in one.hint
    once = lab05.check_client_loop(batching, lambda url, model, clients, each: concurrent(url, model, clients, 1))
    assert "Each client sent one request" in once.hint
    other = lab05.check_client_loop(batching, lambda url, model, clients, each: concurrent(url, model, 3, 3))
    assert "are 32" in str(other) and "wait for all of them" in other.hint
    nothing = lab05.check_client_loop(batching, lambda url, model, clients, each: None)
    assert "Triton counted 0 successful requests" in str(nothing)
    assert "Send to the model and the url" in nothing.hint


def test_client_loop_raises_and_not_callable(batching):
    def wrong_model(url, model, clients, requests_each):
        _client(url, "no_such_model", 1)

    verdict = lab05.check_client_loop(batching, wrong_model)
    assert "Your function raised InferenceServerException" in str(verdict)
    assert "no_such_model" in verdict.triton_said

    def http_url(url, model, clients, requests_each):
        _client("http://" + url, model, 1)

    assert "Use tritonclient.grpc with the url" in lab05.check_client_loop(batching, http_url).hint
    assert "Pass your function itself" in str(lab05.check_client_loop(batching, "send_concurrently"))


def _command(server, **change):
    options = {"-m": lab05.MODEL, "-u": server.grpc_address, "-i": "grpc", "--concurrency-range": "8",
               "--measurement-interval": "1000", "--stability-percentage": "25", "-f": "lab05_test.csv"}
    options.update(change)
    return "perf_analyzer " + " ".join(f"{k} {v}" for k, v in options.items() if v is not None)


def test_perf_command_right_runs(batching, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    verdict = lab05.check_perf_command(batching, _command(batching))
    assert verdict.ok, verdict
    assert "perf_analyzer ran your command at concurrency 8" in verdict.confirmation
    assert (tmp_path / "lab05_test.csv").exists()


@pytest.mark.parametrize("change, message", [
    ({"-m": None}, "There is no -m"),
    ({"-m": "efficientnet_lite0"}, "-m names 'efficientnet_lite0'"),
    ({"-i": None}, "-i is missing: perf_analyzer speaks HTTP"),
    ({"-i": "http"}, "-i is http"),
    ({"-u": None}, "There is no -u"),
    ({"--concurrency-range": None}, "There is no --concurrency-range"),
    ({"--concurrency-range": "1:8"}, "--concurrency-range 1:8: the task measures one point"),
    ({"-b": "8"}, "-b 8 makes every request carry 8 images"),
    ({"--measurement-interval": None}, "windows are then 5000 ms"),
    ({"--measurement-interval": "1"}, "--measurement-interval 1: the task asks for 1000 ms"),
    ({"-f": None}, "There is no -f"),
])
def test_perf_command_mistakes(server, change, message):
    verdict = lab05.check_perf_command(server, _command(server, **change))
    assert not verdict.ok and message in str(verdict), verdict


def test_perf_command_addresses_and_program(server):
    http = lab05.check_perf_command(server, _command(server, **{"-u": server.http_address}))
    assert "is the server's HTTP port" in str(http)
    scheme = lab05.check_perf_command(server, _command(server, **{"-u": "grpc://" + server.grpc_address}))
    assert "has a scheme" in str(scheme)
    other = lab05.check_perf_command(server, _command(server, **{"-u": "127.0.0.1:1"}))
    assert "is not this server's gRPC address" in str(other)
    program = lab05.check_perf_command(server, _command(server).replace("perf_analyzer", "perf_client", 1))
    assert "it runs the program perf_analyzer" in str(program)
    assert "write the command line as a string" in str(lab05.check_perf_command(server, None))
    assert "does not split into words" in str(lab05.check_perf_command(server, 'perf_analyzer -m "batched'))

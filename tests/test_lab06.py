"""Lab 06 checks: two CPU copies loaded on a real server; the client loop and the perf_analyzer command run against
the lab's model that waits; GPU placement read by Triton's schema."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

import triton_course
from triton_course import artifact, perf_analyzer, repository, tuning
from triton_course.checks import lab06

HEAD = """
name: "two_copies"
platform: "onnxruntime_onnx"
max_batch_size: 8
input { name: "input" data_type: TYPE_FP32 dims: [3, 224, 224] }
output { name: "logits" data_type: TYPE_FP32 dims: [1000] label_filename: "labels.txt" }
"""
THREADS = 'parameters { key: "intra_op_thread_count" value: { string_value: "1" } }\n'
RIGHT = HEAD + "instance_group [ { count: 2, kind: KIND_CPU } ]\n" + THREADS


@pytest.fixture(scope="module")
def server(reference_repo, tmp_path_factory):
    repo = tmp_path_factory.mktemp("lab06") / "model_repository"
    repository.add_version(repo, lab06.MODEL, 1, artifact.ensure_onnx())
    repository.write_file(repo / lab06.MODEL / "labels.txt", "\n".join(artifact.labels()) + "\n")
    lab06.add_waits_model(repo)
    with triton_course.start_server(repo, model_control_mode="explicit", load_models=[lab06.WAITS]) as s:
        yield s


def test_right_config_passes(server):
    verdict = lab06.check_cpu_copies(server, RIGHT)
    assert verdict.ok, verdict
    assert "'espresso'" in verdict.confirmation


def test_modelconfig_message_and_two_groups_pass(server):
    config = tuning.instances_config(artifact.reference_config(), 2, threads=1, name="two_copies")
    assert lab06.check_cpu_copies(server, config).ok
    two_groups = HEAD + "instance_group [ { count: 1, kind: KIND_CPU }, { count: 1, kind: KIND_CPU } ]\n" + THREADS
    assert lab06.check_cpu_copies(server, two_groups).ok


@pytest.mark.skipif(bool(repository.cuda_device_name()), reason="this machine has a GPU, so KIND_GPU loads")
def test_kind_gpu_without_gpu_quotes_triton(server):
    verdict = lab06.check_cpu_copies(server, RIGHT.replace("KIND_CPU", "KIND_GPU"))
    assert "has kind KIND_GPU but no GPUs are available" in verdict.triton_said
    assert "Use kind: KIND_CPU" in verdict.hint


def test_count_zero(server):
    verdict = lab06.check_cpu_copies(server, RIGHT.replace("count: 2", "count: 0"))
    assert "count: 0, which Triton reads as 'not set'" in str(verdict)


def test_one_copy_and_no_group(server):
    assert "Triton loaded 1 CPU copy" in str(lab06.check_cpu_copies(server, RIGHT.replace("count: 2", "count: 1")))
    assert "There is no instance_group" in str(lab06.check_cpu_copies(server, HEAD + THREADS))


def test_kind_left_out(server):
    verdict = lab06.check_cpu_copies(server, RIGHT.replace(", kind: KIND_CPU", ""))
    assert "has no kind (KIND_AUTO)" in str(verdict)


def test_thread_parameter_mistakes(server):
    verdict = lab06.check_cpu_copies(server, RIGHT.replace('string_value: "1"', "string_value: 1"))
    assert "Expected string" in verdict.triton_said and 'string_value: "1"' in verdict.hint
    verdict = lab06.check_cpu_copies(server, RIGHT.replace("intra_op_thread_count", "intra_op_threads"))
    assert "No parameter 'intra_op_thread_count'" in str(verdict) and "intra_op_threads" in str(verdict)
    assert "is '2'" in str(lab06.check_cpu_copies(server, RIGHT.replace('string_value: "1"', 'string_value: "2"')))


GPU_RIGHT = "instance_group [ { count: 2, kind: KIND_GPU, gpus: [ 0 ] }, { count: 1, kind: KIND_GPU, gpus: [ 1 ] } ]"


def test_gpu_placement_right():
    assert lab06.check_gpu_placement(GPU_RIGHT).ok
    assert lab06.check_gpu_placement(GPU_RIGHT.replace("instance_group [ {", "instance_group {")
                                     .replace("}, {", "}\ninstance_group {").replace("] } ]", "] }")).ok


def test_gpu_placement_count_is_per_gpu():
    verdict = lab06.check_gpu_placement("instance_group [ { count: 2, kind: KIND_GPU, gpus: [ 0, 1 ] } ]")
    assert "2 on GPU 0, 2 on GPU 1 (4 in all)" in str(verdict)
    assert "count is per GPU" in str(verdict)
    verdict = lab06.check_gpu_placement("instance_group [ { count: 3, kind: KIND_GPU } ]")
    assert "3 on GPU 0, 3 on GPU 1 (6 in all)" in str(verdict)


def test_gpu_placement_other_mistakes():
    assert "kind KIND_CPU" in str(lab06.check_gpu_placement(GPU_RIGHT.replace("KIND_GPU", "KIND_CPU")))
    assert "has no kind" in str(lab06.check_gpu_placement(GPU_RIGHT.replace("kind: KIND_GPU, ", "")))
    one_and_two = GPU_RIGHT.replace("[ 1 ] }", "[ 2 ] }").replace("[ 0 ]", "[ 1 ]")
    assert "GPUs 0 and 1 only" in str(lab06.check_gpu_placement(one_and_two))
    verdict = lab06.check_gpu_placement("instance_group [ { count: 2, kind: GPU, gpus: [ 0 ] } ]")
    assert "Triton's config parser cannot read it" in str(verdict)
    assert 'has no value named "GPU"' in verdict.triton_said or "GPU" in verdict.triton_said
    assert "Write the instance_group lines" in str(lab06.check_gpu_placement({"count": 2}))


def _sender(in_flight=4, model="waits", input_name="INPUT", reverse=False, skip=0):
    def send(url, values):
        client = grpcclient.InferenceServerClient(url)

        def one(value):
            inp = grpcclient.InferInput(input_name, [4], "FP32")
            inp.set_data_from_numpy(np.full(4, value, dtype=np.float32))
            return client.infer(model, [inp]).as_numpy("OUTPUT")

        with ThreadPoolExecutor(max_workers=in_flight) as pool:
            answers = list(pool.map(one, values[skip:]))
        client.close()
        return answers[::-1] if reverse else answers
    return send


def test_client_in_flight_passes_and_serial_is_named(server):
    verdict = lab06.check_client(server, _sender())
    assert verdict.ok, verdict
    assert "answered in order" in verdict.confirmation
    verdict = lab06.check_client(server, _sender(in_flight=1))
    assert "about one after another" in str(verdict) and "ThreadPoolExecutor(max_workers=4)" in verdict.hint


def test_client_mistakes_are_named(server):
    verdict = lab06.check_client(server, _sender(model="wait"))
    assert "A request failed" in str(verdict) and "wait" in verdict.triton_said
    verdict = lab06.check_client(server, _sender(input_name="input"))
    assert "A request failed" in str(verdict) and "'INPUT'" in verdict.hint
    assert "not the values sent, in order" in str(lab06.check_client(server, _sender(reverse=True)))
    verdict = lab06.check_client(server, _sender(skip=2))
    assert "It returned 10 answer(s) for 12 values" in str(verdict)
    assert "answered 10 request(s)" in str(verdict)
    assert "SEND must be your function" in str(lab06.check_client(server, "send"))


def _command(server, **change):
    options = {"-m": "waits", "-u": server.grpc_address, "-i": "grpc", "--concurrency-range": "4",
               "--measurement-interval": "1000", "--stability-percentage": "50", "--max-trials": "8",
               "-f": str(server.repository.parent / "waits.csv")}
    options.update(change)
    return "perf_analyzer " + " ".join(f"{k} {v}" for k, v in options.items() if v is not None)


@pytest.mark.skipif(perf_analyzer.find_binary() is None, reason="perf_analyzer cannot run here")
def test_perf_command_runs_and_reads_its_report(server):
    verdict = lab06.check_perf_command(server, _command(server))
    assert verdict.ok, verdict
    assert "infer/s with 4 requests in flight" in verdict.confirmation and "waits.csv" in verdict.confirmation


def test_perf_command_mistakes_are_named(server):
    http = f"127.0.0.1:{server.http_url.rsplit(':', 1)[-1]}"
    assert "No -f" in str(lab06.check_perf_command(server, _command(server, **{"-f": None})))
    assert "the model to measure is 'waits'" in str(lab06.check_perf_command(server, _command(server, **{"-m": "x"})))
    assert "No -m" in str(lab06.check_perf_command(server, _command(server, **{"-m": None})))
    assert "is the server's HTTP port" in str(lab06.check_perf_command(server, _command(server, **{"-u": http})))
    assert "sends to localhost:8000" in str(lab06.check_perf_command(server, _command(server, **{"-u": None})))
    assert "then speaks HTTP" in str(lab06.check_perf_command(server, _command(server, **{"-i": None})))
    verdict = lab06.check_perf_command(server, _command(server, **{"-i": "http"}))
    assert "-i http: the task asks for gRPC" in str(verdict)
    verdict = lab06.check_perf_command(server, _command(server, **{"--concurrency-range": "1:8"}))
    assert "--concurrency-range 1:8" in str(verdict)
    assert "keeps 1 request in flight" in str(
        lab06.check_perf_command(server, _command(server, **{"--concurrency-range": None})))
    assert "not perf_analyzer" in str(lab06.check_perf_command(server, "python -m waits"))
    assert "must be the command line" in str(lab06.check_perf_command(server, None))

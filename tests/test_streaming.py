"""Lesson 15's plumbing: the language model, the stream client, the generate endpoints, cancellation and the
sequence-batched smoother, against a real Triton server (the embedded one)."""

from __future__ import annotations

import subprocess
import time

import pytest

import triton_course
from triton_course import photos, streaming
from triton_course.errors import InferenceError
from triton_course.model_config import parse_config, to_text

PROMPT = "The server "


# --- no server -------------------------------------------------------------------------------------

def test_textgen_config_is_decoupled_with_optional_generation_inputs():
    config = parse_config(to_text(streaming.textgen_config()))  # what Triton's schema reads back
    assert config.model_transaction_policy.decoupled
    assert {i.name: i.optional for i in config.input} == {"text_input": False, "max_tokens": True,
                                                          "temperature": True}


@pytest.mark.parametrize("strategy", ["direct", "oldest"])
def test_smoother_config_has_the_sequence_controls(strategy):
    config = parse_config(to_text(streaming.smoother_config(strategy=strategy, idle_microseconds=700_000)))
    batcher = config.sequence_batching
    assert batcher.WhichOneof("strategy_choice") == strategy
    assert batcher.max_sequence_idle_microseconds == 700_000
    kinds = {c.name: c.control[0].kind for c in batcher.control_input}
    control = batcher.Control
    assert kinds == {"START": control.CONTROL_SEQUENCE_START, "END": control.CONTROL_SEQUENCE_END,
                     "READY": control.CONTROL_SEQUENCE_READY}


def test_unknown_strategy_is_refused():
    with pytest.raises(ValueError, match="'direct' or 'oldest', not 'newest'"):
        streaming.smoother_config(strategy="newest")


def test_local_model_writes_english_and_stops_at_max_tokens():
    net = streaming.local_model()
    text = "".join(net.generate(PROMPT, max_tokens=40))
    assert len(text) == 40
    assert text == "".join(net.generate(PROMPT, max_tokens=40)), "temperature 0 must repeat itself"
    words = text.split()
    assert sum(w.isalpha() and w.islower() for w in words) >= len(words) // 2, text  # converted weights: not noise
    sampled = "".join(net.generate(PROMPT, max_tokens=40, temperature=0.8, seed=1))
    assert sampled == "".join(net.generate(PROMPT, max_tokens=40, temperature=0.8, seed=1))


def test_a_failed_download_quotes_pip(tmp_path, monkeypatch):
    failed = subprocess.CompletedProcess([], 1, "", "ERROR: No matching distribution found for textgenrnn==2.0.0")
    monkeypatch.setattr(streaming.subprocess, "run", lambda *a, **k: failed)
    with pytest.raises(streaming.DownloadError) as error:
        streaming.charrnn_files(tmp_path)
    assert error.value.source == "pip"
    assert "pip said: ERROR: No matching distribution found" in str(error.value)
    assert "run the cell again" in str(error.value)


def test_diagrams_are_drawn(tmp_path):
    paths = streaming.draw_diagrams(tmp_path)
    assert [p.name for p in paths] == ["15_one_vs_many_responses.png", "15_sequence_batcher_slots.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)


# --- a real server ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(tmp_path_factory, reference_repo):
    repo = tmp_path_factory.mktemp("streaming")
    streaming.add_textgen(repo)
    streaming.add_smoother(repo, streaming.smoother_config("smoother", idle_microseconds=500_000))
    streaming.add_smoother(repo, streaming.smoother_config("smoother_oldest", strategy="oldest"))
    serving = triton_course.start_server(repo)
    yield serving
    serving.stop()


@pytest.mark.server
def test_stream_sends_the_text_piece_by_piece_then_the_final_flag(server):
    pieces = streaming.stream_text(server.grpc_address, PROMPT, max_tokens=25)
    assert [p.final for p in pieces] == [False] * 25 + [True]
    assert all(len(p.text()) == 1 for p in pieces[:-1]) and pieces[-1].text() == ""
    assert "".join(p.text() for p in pieces) == "".join(streaming.local_model().generate(PROMPT, 25))
    times = [p.seconds for p in pieces]
    assert times == sorted(times) and times[0] > 0


@pytest.mark.server
def test_generate_stream_sends_server_sent_events_with_the_same_text(server):
    events = list(streaming.generate_stream(server.http_url, "textgen", {"text_input": PROMPT, "max_tokens": 15}))
    assert len(events) == 15 and all(e["model_name"] == "textgen" for e in events)
    assert "".join(e["text_output"] for e in events) == "".join(streaming.local_model().generate(PROMPT, 15))


@pytest.mark.server
def test_a_decoupled_model_without_a_stream_gets_tritons_refusal(server):
    with pytest.raises(InferenceError) as error:
        streaming.generate(server.http_url, "textgen", {"text_input": PROMPT})
    assert "generate expects model to produce exactly 1 response" in error.value.triton_said
    assert "generate_stream" in error.value.fix
    assert streaming.generate(server.http_url, "textgen", {"text_input": PROMPT, "max_tokens": 1})["text_output"]
    from tritonclient.utils import InferenceServerException

    with server.http_client() as client, pytest.raises(InferenceServerException) as refused:
        client.infer("textgen", streaming.infer_inputs(streaming.text_inputs("Hi"), "http"))
    assert "doesn't support models with decoupled transaction policy" in refused.value.message()
    assert "start_stream" in streaming.known_fix(refused.value.message())


@pytest.mark.server
def test_a_bad_request_ends_with_the_models_error_and_the_model_serves_on(server):
    with pytest.raises(InferenceError) as error:
        streaming.stream_text(server.grpc_address, PROMPT, max_tokens=0)
    assert error.value.triton_said == "textgen: max_tokens must be at least 1, got 0"
    with pytest.raises(InferenceError, match="refused the request"):
        list(streaming.generate_stream(server.http_url, "textgen", {"text_input": PROMPT, "max_tokens": "many"}))
    assert len(streaming.stream_text(server.grpc_address, PROMPT, max_tokens=5)) == 6


@pytest.mark.server
def test_cancelling_a_stream_stops_the_model_and_the_server_serves_on(server):
    before = len(server.log_text())
    cancelled = streaming.stream_and_cancel(server.grpc_address, PROMPT, after=5, max_tokens=2000)
    assert len(cancelled.received) == 5
    line = ""
    deadline = time.monotonic() + 10
    while not line and time.monotonic() < deadline:
        line = next((text for text in server.log_text()[before:].splitlines()
                     if "stream cancelled by the client" in text), "")
        time.sleep(0.1)
    assert line, "the model never saw is_cancelled()"
    assert int(line.rsplit("after ", 1)[1].split()[0]) < 2000
    assert len(streaming.stream_text(server.grpc_address, PROMPT, max_tokens=5)) == 6


@pytest.mark.server
def test_concurrent_streams_are_measured(server):
    figures = streaming.measure_streams(server.grpc_address, 2, max_tokens=20)
    assert figures.streams == 2 and 0 < figures.ttft_ms <= figures.ttft_max_ms
    assert figures.tokens_per_s > 0 and figures.total_tokens_per_s > 0
    assert "2 stream(s): time to first token" in figures.line()


@pytest.fixture(scope="module")
def frames():
    shots = photos.augmented({"rocket": photos.photo("rocket"), "china": photos.photo("china")}, per_photo=3, seed=3)
    return {name: photos.preprocess(image) for name, image in shots.items()}


@pytest.mark.server
@pytest.mark.parametrize("model", ["smoother", "smoother_oldest"])
def test_two_interleaved_sequences_keep_their_own_state(server, frames, model):
    rocket = [f for n, f in frames.items() if n.startswith("rocket")]
    china = [f for n, f in frames.items() if n.startswith("china")]
    answers = {11: [], 22: []}
    for i in range(3):
        for sequence, shots in ((11, rocket), (22, china)):
            answers[sequence].append(streaming.send_frame(server.http_address, shots[i], sequence, model=model,
                                                          start=i == 0, end=i == 2))
    assert [a["frames"] for a in answers[11]] == [a["frames"] for a in answers[22]] == [1, 2, 3]
    assert {a["smoothed"] for a in answers[11]} == {"missile"}
    assert {a["smoothed"] for a in answers[22]} <= {"palace", "bell cote, bell cot"}


@pytest.mark.server
def test_a_request_without_correlation_id_is_refused_by_triton(server, frames):
    with pytest.raises(InferenceError) as error:
        streaming.send_frame(server.http_address, next(iter(frames.values())), 0, start=True)
    assert "must specify a non-zero or non-empty correlation ID" in error.value.triton_said
    assert "sequence_id" in error.value.fix


@pytest.mark.server
def test_an_idle_sequence_is_dropped_and_must_start_again(server, frames):
    frame = next(iter(frames.values()))
    assert streaming.send_frame(server.http_address, frame, 33, start=True)["frames"] == 1
    time.sleep(1.5)  # three times the 0.5 s idle limit of this server's smoother
    with pytest.raises(InferenceError) as error:
        streaming.send_frame(server.http_address, frame, 33)
    assert "must specify the START flag on the first request of the sequence" in error.value.triton_said
    assert "idled out" in error.value.fix
    again = streaming.send_frame(server.http_address, frame, 33, start=True, end=True)
    assert again["frames"] == 1, "START must begin a fresh window"


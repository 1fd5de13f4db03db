"""Versions, rollout and rollback under traffic, a broken release, explicit-mode errors, the response
cache, and metrics read with prometheus_client: against real servers."""

from __future__ import annotations

import pytest

from triton_course import ModelLoadError, artifact, errors, metrics, start_server, versions
from triton_course.inference import infer
from triton_course.model_config import ModelConfig, parse_config, to_text
from triton_course.photos import batch, photo
from triton_course.repository import add_model, add_version

NAME = "efficientnet_lite0"


def test_version_policies_pass_the_schema():
    base = artifact.reference_config()
    latest = versions.with_version_policy(base, "latest", num_versions=2)
    assert latest.version_policy.latest.num_versions == 2
    assert versions.with_version_policy(base, "all").version_policy.HasField("all")
    specific = versions.with_version_policy(base, "specific", versions=(1, 3))
    assert list(specific.version_policy.specific.versions) == [1, 3]
    for config in (latest, specific):
        assert parse_config(to_text(config)) == config
    with pytest.raises(ValueError, match="needs the version numbers"):
        versions.with_version_policy(base, "specific")
    with pytest.raises(ValueError, match="choose latest, all or specific"):
        versions.with_version_policy(base, "newest")


def test_metrics_parse_counters_and_histograms():
    families = metrics.parse(
        "# TYPE nv_inference_request_success counter\n"
        'nv_inference_request_success{model="a",version="1"} 5\n'
        'nv_inference_request_success{model="b",version="1"} 2\n'
        "# TYPE nv_inference_request_duration_us histogram\n"
        'nv_inference_request_duration_us_bucket{model="a",le="100"} 3\n'
        'nv_inference_request_duration_us_bucket{model="a",le="+Inf"} 5\n'
        'nv_inference_request_duration_us_sum{model="a"} 420\n'
        'nv_inference_request_duration_us_count{model="a"} 5\n')
    assert metrics.value(families, "nv_inference_request_success", model="a") == 5
    assert metrics.value(families, "nv_inference_request_success_total") == 7
    assert metrics.value(families, "nv_inference_request_duration_us_sum", model="a") == 420
    assert len(metrics.samples(families, "nv_inference_request_duration_us_bucket", model="a")) == 2
    assert metrics.value(families, "no_such_metric") == 0


@pytest.mark.server
def test_rollout_rollback_and_a_broken_release_under_traffic(tmp_path):
    repo = tmp_path / "repo"
    config = artifact.reference_config()
    add_model(repo, config, artifact.ensure_onnx(), labels=artifact.labels())
    image = batch([photo("coffee")])
    with start_server(repo, model_control_mode="explicit", load_models=[NAME]) as server:
        add_version(repo, NAME, 2, artifact.ensure_onnx())
        with versions.Traffic(server.http_url, NAME, image) as rollout:
            server.load_model(NAME)
        assert rollout.errors() == 0
        assert list(dict.fromkeys(a for _, a in rollout.answers)) == ["version 1", "version 2"]

        with versions.Traffic(server.http_url, NAME, image) as rollback:
            server.load_model(NAME, config=versions.with_version_policy(config, "specific", versions=(1,)))
        assert rollback.errors() == 0 and rollback.answers[-1][1] == "version 1"

        bad = tmp_path / "bad.onnx"
        bad.write_bytes(b"not onnx")
        add_version(repo, NAME, 3, bad, filename="model.onnx")
        with versions.Traffic(server.http_url, NAME, image) as failed_release:
            with pytest.raises(ModelLoadError) as caught:
                server.load_model(NAME)
        assert failed_release.errors() == 0
        assert "not a valid ONNX file" in caught.value.problem(NAME).fix
        states = {row["version"]: row for row in versions.index(server)}
        assert states["1"]["state"] == "READY" and states["3"]["state"] == "UNAVAILABLE"
        assert str(repo) in states["3"]["reason"]  # the learner's path, not the served copy's


@pytest.mark.server
def test_load_needs_explicit_mode(reference_repo):
    with start_server(reference_repo) as server, server.http_client() as client:
        with pytest.raises(Exception) as caught:
            client.load_model(NAME)
    error = errors.from_client_exception(caught.value, "load")
    assert "not allowed" in error.triton_said and "--model-control-mode=explicit" in error.fix


@pytest.mark.server
def test_response_cache_hits_are_counted_in_the_metrics(tmp_path):
    repo = tmp_path / "repo"
    cached = ModelConfig()
    cached.CopyFrom(artifact.reference_config())
    cached.response_cache.enable = True
    add_model(repo, cached, artifact.ensure_onnx(), labels=artifact.labels())
    with start_server(repo, extra_args=["--cache-config=local,size=8388608"]) as server:
        first = infer(server.http_url, batch([photo("coffee")]))
        for _ in range(4):
            assert (infer(server.http_url, batch([photo("coffee")])) == first).all()
        infer(server.http_url, batch([photo("china")]))
        families = metrics.scrape(server.metrics_url)
    assert metrics.value(families, "nv_cache_num_hits_per_model", model=NAME) == 4
    assert metrics.value(families, "nv_cache_num_misses_per_model", model=NAME) == 2

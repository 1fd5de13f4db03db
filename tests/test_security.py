"""The restricted APIs behind an admin key, against a real server: refused without the key (HTTP 403,
gRPC UNAVAILABLE, Triton's own message), allowed with it; inference stays open; the course's own calls
carry the key."""

from __future__ import annotations

import secrets

import pytest
import requests

from triton_course import errors, start_server
from triton_course.inference import infer
from triton_course.photos import batch, photo
from triton_course.versions import index

pytestmark = pytest.mark.server
NAME = "efficientnet_lite0"
RESTRICTED = [("post", "/v2/repository/index", {}), ("post", f"/v2/repository/models/{NAME}/unload", None),
              ("post", "/v2/trace/setting", {"trace_rate": "100"}), ("get", "/v2/logging", None),
              ("get", "/v2/systemsharedmemory/status", None)]


@pytest.fixture(scope="module")
def server():
    with start_server(model_control_mode="explicit", load_models=[NAME], admin_key=secrets.token_urlsafe(16)) as s:
        yield s


def test_bound_to_loopback_and_key_only_in_the_restriction_switches(server):
    command = server.command()
    assert {"--http-address=127.0.0.1", "--grpc-address=127.0.0.1", "--metrics-address=127.0.0.1"} <= set(command)
    assert [a for a in command if server.admin_key in a] == [
        f"--http-restricted-api=model-repository,shared-memory,trace,logging:admin-key={server.admin_key}",
        f"--grpc-restricted-protocol=model-repository,shared-memory,trace,logging:admin-key={server.admin_key}"]


@pytest.mark.parametrize("method, path, body", RESTRICTED)
def test_http_refused_without_the_key(server, method, path, body):
    answer = getattr(requests, method)(f"{server.http_url}{path}", json=body, timeout=30)
    assert answer.status_code == 403
    assert answer.json()["error"] == "This API is restricted, expecting header 'admin-key'"
    assert "admin-key" in errors.suggest_fix(answer.json()["error"])


def test_with_the_key_allowed_and_inference_stays_open(server):
    url = server.http_url
    for method, path, body in RESTRICTED:
        if "unload" not in path:
            assert getattr(requests, method)(f"{url}{path}", json=body, headers=server.admin_headers,
                                             timeout=30).status_code == 200
    assert requests.post(f"{url}/v2/repository/index", json={}, headers={"admin-key": "wrong"},
                         timeout=30).status_code == 403
    assert infer(url, batch([photo("coffee")])).shape == (1, 1000)


def test_grpc_needs_the_prefixed_header(server):
    with server.grpc_client() as client:
        with pytest.raises(Exception, match="expecting header 'triton-grpc-protocol-admin-key'"):
            client.get_model_repository_index()
        assert [m.name for m in client.get_model_repository_index(headers=server.grpc_admin_headers).models] == [NAME]


def test_the_course_sends_the_key_itself(server):
    server.unload_model(NAME)
    server.load_model(NAME)
    assert [(r["model"], r["state"]) for r in index(server)] == [(NAME, "READY")]

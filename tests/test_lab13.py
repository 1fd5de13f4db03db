"""Lab 13's checks: servers started with the learner's restriction switches (refused without the key, allowed
with it), a gRPC reload with the key, a logged command line with the key masked, a scan of notebook outputs."""

from __future__ import annotations

import secrets

import nbformat
import pytest
import tritonclient.grpc as grpcclient

from triton_course import start_server
from triton_course.checks import lab13

GROUPS = "model-repository,shared-memory,trace,logging"


def good_args(key):
    return [f"--http-restricted-api={GROUPS}:admin-key={key}", f"--grpc-restricted-protocol={GROUPS}:admin-key={key}"]


@pytest.fixture(scope="module")
def server():
    key = secrets.token_urlsafe(16)
    with start_server(model_control_mode="explicit", load_models=["efficientnet_lite0"],
                      extra_args=good_args(key)) as s:
        s.lab_key = key
        yield s


@pytest.mark.server
def test_restriction_args_pass():
    verdict = lab13.check_restriction_args(good_args)
    assert verdict.ok, verdict


@pytest.mark.server
@pytest.mark.parametrize("args, message", [
    (lambda key: good_args(key)[:1], "gRPC: the repository index answered without the key"),
    (lambda key: [a.replace(",shared-memory", "") for a in good_args(key)],
     "HTTP /v2/systemsharedmemory/status (shared-memory) answered 200 without the key; expected 403."),
    (lambda key: [a.replace("admin-key=", "x-admin=") for a in good_args(key)],
     "HTTP /v2/repository/index (model-repository) refused the header 'admin-key: <key>' (403)"),
    (lambda key: [a.replace("logging", "logging,inference") for a in good_args(key)], "Inference is refused too"),
])
def test_restriction_mistakes(args, message):
    verdict = lab13.check_restriction_args(args)
    assert not verdict.ok
    assert any(p.startswith(message) for p in verdict.problems), verdict


def test_restriction_args_hardcoded_key_or_not_a_list():
    verdict = lab13.check_restriction_args(lambda key: good_args("my-secret-key"))
    assert "None of your arguments contains the key" in verdict.problems[0]
    verdict = lab13.check_restriction_args(lambda key: " ".join(good_args(key)))
    assert "it should return a list of strings" in verdict.problems[0]


@pytest.mark.server
def test_restriction_args_triton_refuses_to_start():
    verdict = lab13.check_restriction_args(lambda key: [f"--http-restricted-api=model-repo:admin-key={key}"])
    assert not verdict.ok
    assert verdict.problems[0] == "Triton did not start with your arguments."
    assert verdict.triton_said == "Bad option: \"--http-restricted-api\".\nunknown restricted api 'model-repo'"


def reload_with(headers_for):
    def reload_model(grpc_address, name, key):
        with grpcclient.InferenceServerClient(grpc_address) as client:
            client.load_model(name, headers=headers_for(key))
    return reload_model


@pytest.mark.server
def test_reload_passes(server):
    verdict = lab13.check_reload_model(reload_with(lambda key: {"triton-grpc-protocol-admin-key": key}), server,
                                       server.lab_key)
    assert verdict.ok, verdict


@pytest.mark.server
@pytest.mark.parametrize("headers_for", [lambda key: {}, lambda key: {"admin-key": key}])
def test_reload_without_the_grpc_header(server, headers_for):
    verdict = lab13.check_reload_model(reload_with(headers_for), server, server.lab_key)
    assert not verdict.ok
    assert "expecting header 'triton-grpc-protocol-admin-key'" in verdict.triton_said
    assert "triton-grpc-protocol-admin-key" in verdict.hint


@pytest.mark.server
def test_reload_that_does_nothing(server):
    verdict = lab13.check_reload_model(lambda address, name, key: None, server, server.lab_key)
    assert "shows no new load of 'efficientnet_lite0'" in verdict.problems[0]


@pytest.mark.server
def test_safe_command(server):
    key = server.lab_key
    verdict = lab13.check_safe_command(lambda s: " ".join(a.replace(key, "***") for a in s.command()), server)
    assert verdict.ok, verdict
    verdict = lab13.check_safe_command(lambda s: " ".join(s.command()), server)
    assert "The key is in your text (2 times)" in verdict.problems[0]
    verdict = lab13.check_safe_command(lambda s: " ".join(a for a in s.command() if key not in a), server)
    assert verdict.problems[0].startswith("--http-restricted-api, --grpc-restricted-protocol is missing")

    def prints(s):
        print(s.command())
        return " ".join(a.replace(key, "***") for a in s.command())

    verdict = lab13.check_safe_command(prints, server)
    assert verdict.problems == ["Your function PRINTS the key: whatever a cell prints is saved in the notebook."]


def find_secret(path, secret, kinds=("stream", "execute_result", "error")):
    found = []
    for i, cell in enumerate(nbformat.read(path, as_version=4).cells):
        for output in cell.get("outputs", []):
            text = {"stream": lambda o: o.get("text", ""),
                    "execute_result": lambda o: " ".join(map(str, o.get("data", {}).values())),
                    "error": lambda o: " ".join(o.get("traceback", []))}.get(output.output_type, lambda o: "")
            if output.output_type in kinds and secret in text(output):
                found.append(i)
                break
    return found


def test_find_secret(tmp_path):
    assert lab13.check_find_secret(find_secret, tmp_path).ok
    verdict = lab13.check_find_secret(lambda p, s: find_secret(p, s, kinds=("stream",)), tmp_path)
    assert "You missed cell 3: a cell's result (execute_result data)." in verdict.problems
    assert "You missed cell 5: an error's traceback." in verdict.problems

    def sources_too(path, secret):
        cells = nbformat.read(path, as_version=4).cells
        return sorted(set(find_secret(path, secret)) | {i for i, c in enumerate(cells) if secret in c.source})

    verdict = lab13.check_find_secret(sources_too, tmp_path)
    assert verdict.problems[1:] == ["Cell 6 is a cell's source, not its output."]


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    from triton_course import tls

    return tls.make_certificates(tmp_path_factory.mktemp("certs"))


def right_tls_client(address, certs):
    return grpcclient.InferenceServerClient(address, ssl=True, root_certificates=str(certs.ca_cert),
                                            private_key=str(certs.client_key),
                                            certificate_chain=str(certs.client_cert))


@pytest.mark.server
def test_tls_client_passes(certs):
    verdict = lab13.check_tls_client(right_tls_client, certs)
    assert verdict.ok, verdict


@pytest.mark.server
@pytest.mark.parametrize("tls_client, message, quoted", [
    (lambda address, certs: grpcclient.InferenceServerClient(address),
     "Your client spoke plain gRPC to a port that speaks TLS", "wrong version number"),
    (lambda address, certs: grpcclient.InferenceServerClient(address, ssl=True),
     "could not verify the server's certificate", "CERTIFICATE_VERIFY_FAILED"),
    (lambda address, certs: grpcclient.InferenceServerClient(address, ssl=True, root_certificates=str(certs.ca_cert)),
     "showed no certificate", "peer did not return a certificate"),
], ids=["plain", "no-ca", "no-client-certificate"])
def test_tls_client_mistakes_are_named_with_who_said_what(certs, tls_client, message, quoted):
    verdict = lab13.check_tls_client(tls_client, certs)
    assert not verdict.ok
    assert message in str(verdict)
    assert quoted in verdict.triton_said  # the words of the server's log or of the client
    assert verdict.said_by in (lab13.SERVER_LOG, lab13.CLIENT)


@pytest.mark.server
def test_tls_client_that_returns_nothing_or_raises(certs):
    verdict = lab13.check_tls_client(lambda address, certs: None, certs)
    assert "tls_client returned NoneType" in str(verdict)
    verdict = lab13.check_tls_client(lambda address, certs: 1 / 0, certs)
    assert "Your function raised ZeroDivisionError" in str(verdict)

"""TLS (lesson and lab 13): the course's certificates form a chain a TLS client accepts; Triton serves gRPC with
them (and refuses clients without them, mutual TLS included); HAProxy terminates HTTPS and gRPC over TLS."""

from __future__ import annotations

import ssl

import pytest
import requests
import tritonclient.grpc as grpcclient
from cryptography import x509
from tritonclient.utils import InferenceServerException

from triton_course import balancer, start_server, tls
from triton_course.paths import MODEL_NAME

UNAVAILABLE = balancer.unavailable_reason()


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return tls.make_certificates(tmp_path_factory.mktemp("certs"))


def test_the_certificates_chain_to_the_ca_and_name_this_machine(certs):
    ca = x509.load_pem_x509_certificate(certs.ca_cert.read_bytes())
    for path, usage in ((certs.server_cert, x509.oid.ExtendedKeyUsageOID.SERVER_AUTH),
                        (certs.client_cert, x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH)):
        cert = x509.load_pem_x509_certificate(path.read_bytes())
        cert.verify_directly_issued_by(ca)  # raises if the CA did not sign it
        assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [usage]
    # Python's own TLS client accepts the server certificate for 127.0.0.1 with only this CA trusted
    context = ssl.create_default_context(cafile=str(certs.ca_cert))
    context.load_cert_chain(certs.server_cert, certs.server_key)  # the key matches the certificate
    assert "names: localhost, 127.0.0.1" in tls.describe(certs.server_cert)
    assert {oct(p.stat().st_mode & 0o777) for p in (certs.server_key, certs.client_key)} == {"0o600"}
    assert not (certs.folder / "ca.key").exists()  # no one can sign another certificate with this CA


def test_a_file_that_is_not_a_certificate_is_named(tmp_path):
    (tmp_path / "ca.crt").write_text("not a certificate")
    with pytest.raises(tls.TLSError, match="ca.crt is not a PEM certificate") as error:
        tls.describe(tmp_path / "ca.crt")
    assert "make_certificates" in str(error.value)


def _live(server, **options) -> bool:
    try:
        return grpcclient.InferenceServerClient(server.grpc_address, **options).is_server_live(client_timeout=10)
    except InferenceServerException:
        return False


@pytest.mark.server
def test_triton_serves_grpc_over_tls_and_mutual_tls_only_to_the_right_clients(certs):
    with start_server(model_control_mode="explicit", load_models=[MODEL_NAME],
                      extra_args=certs.server_args()) as server:
        assert _live(server, **certs.client_options(with_client_certificate=False))
        assert not _live(server)  # plain gRPC
        assert not _live(server, ssl=True)  # the course's CA is not among the system's
        assert "wrong version number" in server.log_text()
    with start_server(model_control_mode="explicit", load_models=[MODEL_NAME],
                      extra_args=certs.server_args(mutual=True)) as server:
        assert _live(server, **certs.client_options())
        assert not _live(server, **certs.client_options(with_client_certificate=False))


@pytest.mark.server
@pytest.mark.skipif(UNAVAILABLE is not None, reason=f"{UNAVAILABLE}")
def test_haproxy_terminates_https_and_grpc_over_tls(certs):
    with start_server(model_control_mode="explicit", load_models=[MODEL_NAME]) as server, \
            balancer.Balancer([server], tls=certs) as proxy:
        assert proxy.http_url.startswith("https://")
        assert f"ssl crt {balancer.TLS_PEM}" in proxy.config()
        assert oct((proxy.workdir / balancer.TLS_PEM).stat().st_mode & 0o777) == "0o600"
        assert requests.get(f"{proxy.http_url}/v2/health/ready", verify=certs.ca_cert, timeout=30).status_code == 200
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(f"{proxy.http_url}/v2/health/ready", timeout=30)  # without the course's CA
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(f"http://{proxy.http_address}/v2/health/ready", timeout=30)
        assert grpcclient.InferenceServerClient(proxy.grpc_address, ssl=True,
                                                root_certificates=str(certs.ca_cert)).is_server_live()

"""The web app in front of Triton: its JSON API and pages against a real server (uploads checked,
timeouts, Triton down, model missing), in a real browser (headless Chromium through Selenium), and
through a real Jupyter server's jupyter-server-proxy, as a learner opens it on a pod."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest
import requests

from triton_course import artifact, balancer, ensemble, loadgen, start_server, webapp
from triton_course.photos import jpeg_bytes, photo, save_jpeg

pytestmark = pytest.mark.server
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture(scope="module")
def triton(tmp_path_factory):
    repo = tmp_path_factory.mktemp("webapp") / "repo"
    ensemble.add_pipeline(repo, artifact.reference_config(), artifact.ensure_onnx())
    with start_server(repo) as server:
        yield server


@pytest.fixture(scope="module")
def app(triton):
    with webapp.WebApp(triton.http_url, max_upload_mb=2) as running:
        yield running


@pytest.fixture(scope="module")
def coffee() -> bytes:
    return jpeg_bytes(photo("coffee"))


def test_the_json_api_answers_with_labels_and_latency(app, coffee):
    answer = requests.post(f"{app.url}/api/classify", files={"photo": ("coffee.jpg", coffee, "image/jpeg")}, timeout=30)
    assert answer.status_code == 200
    body = answer.json()
    assert body["labels"][0]["label"] == "espresso" and len(body["labels"]) == 5 and body["latency_ms"] > 0
    raw = requests.post(f"{app.url}/api/classify", data=coffee, timeout=30)  # the body itself, no form
    assert raw.json()["labels"][0]["label"] == "espresso"
    assert requests.get(f"{app.url}/healthz", timeout=10).json()["ready"] is True


@pytest.mark.parametrize("data, status, message", [
    (b"", 400, "The upload is empty"),
    (b"just some text", 400, "not an image"),
    (None, 400, "damaged"),
    (b"x" * 3_000_000, 413, "larger than 2 MB"),
])
def test_bad_uploads_get_clear_messages(app, coffee, data, status, message):
    data = coffee[: len(coffee) // 3] if data is None else data
    answer = requests.post(f"{app.url}/api/classify", files={"photo": ("upload", data)}, timeout=30)
    assert answer.status_code == status and message in answer.json()["error"]
    page = requests.post(f"{app.url}/classify", files={"photo": ("upload", data)}, timeout=30)
    assert page.status_code == status and message in page.text and "Traceback" not in page.text


def test_a_model_that_is_not_loaded_and_a_triton_that_is_down(triton, coffee, tmp_path):
    with webapp.WebApp(triton.http_url, model="no_such_model") as wrong_model:
        answer = requests.post(f"{wrong_model.url}/api/classify", data=coffee, timeout=30)
        assert answer.status_code == 503 and "not ready" in answer.json()["error"]
        assert requests.get(f"{wrong_model.url}/healthz", timeout=30).status_code == 503
    repo = tmp_path / "repo"
    ensemble.add_pipeline(repo, artifact.reference_config(), artifact.ensure_onnx())
    with start_server(repo) as doomed:
        with webapp.WebApp(doomed.http_url, timeout_s=3) as orphan:
            doomed.stop()
            answer = requests.post(f"{orphan.url}/api/classify", data=coffee, timeout=30)
    assert answer.status_code == 503 and "does not answer" in answer.json()["error"]
    assert "Traceback" not in answer.text


@pytest.mark.skipif(balancer.unavailable_reason() is not None, reason=f"{balancer.unavailable_reason()}")
def test_the_app_answers_through_haproxy_in_front_of_two_servers(triton, coffee, tmp_path):
    repo = tmp_path / "repo"
    ensemble.add_pipeline(repo, artifact.reference_config(), artifact.ensure_onnx())
    with start_server(repo) as second, balancer.Balancer([triton, second], model=ensemble.ENSEMBLE) as lb, \
            webapp.WebApp(lb.http_url) as behind:
        before = [loadgen.server_stats(s.http_url, ensemble.ENSEMBLE)["success"] for s in (triton, second)]
        for _ in range(4):
            answer = requests.post(f"{behind.url}/api/classify", data=coffee, timeout=30)
            assert answer.status_code == 200 and answer.json()["labels"][0]["label"] == "espresso"
        after = [loadgen.server_stats(s.http_url, ensemble.ENSEMBLE)["success"] for s in (triton, second)]
        health = requests.get(f"{behind.url}/healthz", timeout=10).json()
    assert [b - a for a, b in zip(before, after)] == [2, 2]  # round robin: each server answered half
    assert health == {"triton": lb.http_url, "model": ensemble.ENSEMBLE, "ready": True}


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("no chromium and chromedriver here (Debian: apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _upload(browser, app, path, *, page_url=None):
    """Open the form (at the app's own address unless `page_url` says otherwise), choose the file, submit,
    and wait for the answer page (labels or an error)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(page_url or app.url)
    browser.find_element(By.ID, "photo").send_keys(str(path))
    browser.find_element(By.ID, "submit").click()
    WebDriverWait(browser, 60).until(expected_conditions.any_of(
        expected_conditions.presence_of_element_located((By.ID, "results")),
        expected_conditions.presence_of_element_located((By.ID, "error"))))
    return By


def test_in_a_browser_a_photo_shows_its_labels(browser, app, tmp_path):
    by = _upload(browser, app, save_jpeg(photo("coffee"), tmp_path / "coffee.jpg"))
    labels = [cell.text for cell in browser.find_elements(by.CSS_SELECTOR, "#results .label")]
    assert labels[0] == "espresso" and len(labels) == 5
    assert "Triton answered in" in browser.find_element(by.ID, "latency").text


def test_in_a_browser_a_text_file_shows_the_error(browser, app, tmp_path):
    text_file = tmp_path / "notes.txt"
    text_file.write_text("this is not a photo")
    by = _upload(browser, app, text_file)
    assert "not an image" in browser.find_element(by.ID, "error").text
    assert not browser.find_elements(by.ID, "results")


# --- Through JupyterLab's proxy (jupyter-server-proxy): how a learner opens the app on a pod -----------------

@contextmanager
def _jupyter_server(folder: Path, *options: str):
    """A real `jupyter server` on 127.0.0.1 with a token (jupyter-server-proxy loads as its extension unless
    `options` say otherwise), its runtime files in a folder of its own; stopped, and waited for, at the end."""
    token = secrets.token_hex(16)
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(folder / "runtime"), "JUPYTER_TOKEN": token}
    process = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "server", "--no-browser", "--allow-root", "--ip=127.0.0.1", "--port=0",
         f"--ServerApp.root_dir={folder}", *options], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    runtime_file = folder / "runtime" / f"jpserver-{process.pid}.json"
    try:
        deadline = time.monotonic() + 60
        while not runtime_file.exists():
            assert process.poll() is None, f"jupyter server exited with {process.returncode}"
            assert time.monotonic() < deadline, "jupyter server wrote no runtime file within 60 s"
            time.sleep(0.2)
        time.sleep(0.1)  # the file is written in one go, but give its writer a moment to close it
        info = json.loads(runtime_file.read_text())
        yield {"info": info, "token": token, "runtime": folder / "runtime", "pid": process.pid,
               "url": f"http://127.0.0.1:{info['port']}"}
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    assert not psutil.pid_exists(process.pid) or psutil.Process(process.pid).status() == psutil.STATUS_ZOMBIE


@pytest.fixture(scope="module")
def jupyter(tmp_path_factory):
    with _jupyter_server(tmp_path_factory.mktemp("jupyter")) as running:
        yield running


def test_through_jupyters_proxy_the_page_and_the_api_work(jupyter, app, coffee):
    proxied = f"{jupyter['url']}/proxy/{app.port}"
    anonymous = requests.get(f"{proxied}/", timeout=30, allow_redirects=False)  # JupyterLab's login guards the app
    assert anonymous.status_code == 302 and "/login" in anonymous.headers["Location"]
    assert requests.post(f"{proxied}/api/classify", data=coffee, timeout=30).status_code == 403
    auth = {"Authorization": f"token {jupyter['token']}"}
    page = requests.get(f"{proxied}/", headers=auth, timeout=30)
    assert page.status_code == 200 and 'id="photo"' in page.text
    # Every URL in the page resolves under the prefix: none starts with "/" or names a host.
    targets = re.findall(r'(?:action|href|src)="([^"]*)"', page.text) + re.findall(r'fetch\(["\']([^"\']*)', page.text)
    assert targets and not [target for target in targets if target.startswith("/") or "://" in target]
    form = requests.post(f"{proxied}/classify", headers=auth, timeout=30,
                         files={"photo": ("coffee.jpg", coffee, "image/jpeg")})
    assert form.status_code == 200 and re.search(r'class="label">espresso<', form.text)
    api = requests.post(f"{proxied}/api/classify", headers=auth, data=coffee, timeout=30)
    assert api.status_code == 200 and api.json()["labels"][0]["label"] == "espresso"
    bad = requests.post(f"{proxied}/api/classify", headers=auth, data=b"not a photo", timeout=30)
    assert bad.status_code == 400 and "not an image" in bad.json()["error"]
    assert requests.get(f"{proxied}/healthz", headers=auth, timeout=30).json()["ready"] is True


def test_in_a_browser_through_jupyters_proxy_a_photo_shows_its_labels(browser, jupyter, app, tmp_path):
    # The token in the address logs the browser in (a cookie), as opening JupyterLab's link does.
    page_url = f"{jupyter['url']}/proxy/{app.port}/?token={jupyter['token']}"
    by = _upload(browser, app, save_jpeg(photo("coffee"), tmp_path / "coffee.jpg"), page_url=page_url)
    assert browser.current_url == f"{jupyter['url']}/proxy/{app.port}/classify"  # the form stayed under the prefix
    labels = [cell.text for cell in browser.find_elements(by.CSS_SELECTOR, "#results .label")]
    assert labels[0] == "espresso" and len(labels) == 5


def test_jupyter_proxy_finds_the_address_and_checks_it(jupyter, app, monkeypatch):
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(jupyter["runtime"]))
    monkeypatch.delenv("RUNPOD_POD_ID", raising=False)
    monkeypatch.delenv("JUPYTERHUB_SERVICE_PREFIX", raising=False)
    server = webapp.jupyter_server(jupyter["pid"])
    assert server["port"] == jupyter["info"]["port"] and server["token"] == jupyter["token"]
    found = webapp.jupyter_proxy(app.port, server)
    assert found.url.endswith(f":{server['port']}/proxy/{app.port}/") and found.works is True, found
    monkeypatch.setenv("RUNPOD_POD_ID", "podtest")
    on_a_pod = webapp.jupyter_proxy(app.port, server)
    assert on_a_pod.url == f"https://podtest-{server['port']}.proxy.runpod.net/proxy/{app.port}/"
    assert on_a_pod.works is True  # checked through the same JupyterLab, from inside the pod
    nothing_there = webapp.jupyter_proxy(1, server)  # no app on port 1: the proxy's own error, not "works"
    assert nothing_there.works is False and "/proxy/1/healthz" in nothing_there.note
    monkeypatch.delenv("RUNPOD_POD_ID")
    assert webapp.jupyter_server(os.getpid()) is None  # this pytest is no Jupyter server
    outside = webapp.jupyter_proxy(app.port, None)
    assert outside.works is None and outside.url == f"<your JupyterLab address>/proxy/{app.port}/"


def test_jupyter_proxy_says_when_jupyterlab_has_no_proxy(tmp_path, app):
    with _jupyter_server(tmp_path, "--ServerApp.jpserver_extensions=jupyter_server_proxy=False") as bare:
        found = webapp.jupyter_proxy(app.port, bare["info"])
    assert found.works is False and "no jupyter-server-proxy" in found.note and "pip install" in found.note

"""The web app in front of Triton: its JSON API and pages against a real server (uploads checked,
timeouts, Triton down, model missing), and in a real browser (headless Chromium through Selenium)."""

from __future__ import annotations

import shutil

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


def _upload(browser, app, path):
    """Open the form, choose the file, submit, and wait for the answer page (labels or an error)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(app.url)
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

"""tests/nbval_sanitize.cfg hides only what varies between runs: never a URL, a config value or a model answer.

The rules are read and applied exactly as nbval does (its own parser, in the file's order), to lines the
notebooks print."""
import configparser
import re
from pathlib import Path

from nbval.plugin import get_sanitize_patterns

CFG = Path(__file__).parent / "nbval_sanitize.cfg"


def sanitize(text):
    for regex, replace in get_sanitize_patterns(CFG.read_text()):
        text = re.sub(regex, replace, text)
    return text


def same(a, b):
    return sanitize(a) == sanitize(b)


def test_every_section_is_a_rule_nbval_reads():
    # a comment between "regex:" and "replace:" would make nbval drop the rule without a word
    sections = configparser.ConfigParser(interpolation=None)
    sections.read(CFG)
    assert len(get_sanitize_patterns(CFG.read_text())) == len(sections.sections())


def test_ports_and_measured_times_vary():
    assert same("curl -s http://127.0.0.1:51637/v2/models/efficientnet_lite0/config",
                "curl -s http://127.0.0.1:40001/v2/models/efficientnet_lite0/config")
    assert same("ready after 1.9 s", "ready after 12.04 s")
    assert same("export took 0.6 s", "export took 1.2 s")
    assert same("HAProxy marked it DOWN 0.63 s after the kill", "HAProxy marked it DOWN 1.2 s after the kill")
    assert same("(1.28 s after it was sent)", "(0.9 s after it was sent)")


def test_a_url_is_compared():
    url = "curl -s http://127.0.0.1:51637/v2/models/efficientnet_lite0/config"
    assert not same(url, url.replace("/v2/models/", "/models/"))        # the /v2 prefix
    assert not same(url, url.replace("127.0.0.1", "0.0.0.0"))           # the host
    assert not same(url, url.replace("http://", "https://"))
    assert not same(url, url.replace("efficientnet_lite0", "resnet50"))
    assert not same("option httpchk GET /v2/models/efficientnet_lite0/ready",
                    "option httpchk GET /models/efficientnet_lite0/ready")
    assert not same("GET /v2/models/NAME/metadata", "GET /v1/models/NAME/metadata")


def test_the_course_folder_is_hidden_but_not_what_follows_it():
    here = "Triton said: failed to read text proto from /work/main/workspace/03_config/model_repository/x/config.pbtxt"
    ci = here.replace("/work/main/", "/home/runner/work/triton-course/triton-course/")
    assert same(here, ci)
    assert not same(here, here.replace("03_config", "02_repository"))
    assert same("--onnx=/work/main/models/efficientnet_lite0/1/model.onnx",
                "--onnx=/workspace/triton-course/models/efficientnet_lite0/1/model.onnx")


def test_config_values_and_windows_are_compared():
    assert not same("delay now served: 5000 µs", "delay now served: 2000 µs")
    assert not same("delay 5000 us, c=8", "delay 0 us, c=8")
    assert not same("sum by (model) (rate(nv_inference_request_success[10s]))",
                    "sum by (model) (rate(nv_inference_request_success[1m]))")
    assert not same("sum by (model) (rate(nv_inference_request_success[10s]))",
                    "sum by (model) (rate(nv_inference_request_success[5s]))")
    assert not same('"scrape_interval": "1000ms",', '"scrape_interval": "15s",')
    assert not same("    timeout check 1s", "    timeout check 5s")
    assert not same("default-server inter 1s fastinter 250ms fall 2 rise 2",
                    "default-server inter 2s fastinter 500ms fall 2 rise 2")
    assert not same("config, load, infer/s, p50 ms, p90 ms", "config, load, infer/s, p50 us, p90 ms")


def test_a_model_answer_is_compared():
    assert not same("espresso            0.874", "cup                 0.874")
    assert not same("espresso            0.874", "espresso            0.512")
    assert not same("{'model': 'efficientnet_lite0', 'version': '3', 'state': 'UNAVAILABLE'}",
                    "{'model': 'efficientnet_lite0', 'version': '3', 'state': 'READY'}")

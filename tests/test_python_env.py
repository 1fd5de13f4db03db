"""Lesson 9's model environment (triton_course/python_env.py): the wheels it installs, the virtual environment
it makes, and a python model that loads only with it (EXECUTION_ENV_PATH), on the embedded server."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest

from triton_course import ModelLoadError, python_env, start_server
from triton_course.errors import DownloadError
from triton_course.inference import infer_outputs

ROOT = Path(__file__).resolve().parents[1]

CONFIG = """
name: "ascii_text"
backend: "python"
max_batch_size: 0
input [ { name: "TEXT" data_type: TYPE_STRING dims: [ 1 ] } ]
output [ { name: "ASCII" data_type: TYPE_STRING dims: [ 1 ] } ]
"""
ENV = 'parameters: { key: "EXECUTION_ENV_PATH", value: { string_value: "$$TRITON_MODEL_DIRECTORY/env" } }\n'
MODEL = """
import numpy as np
import triton_python_backend_utils as pb_utils
from anyascii import anyascii


class TritonPythonModel:
    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor("ASCII", np.array(
            [anyascii(pb_utils.get_input_tensor_by_name(r, "TEXT").as_numpy()[0].decode()).encode()],
            dtype=np.object_))]) for r in requests]
"""


def test_the_environment_s_numpy_is_the_course_s_pin():
    pinned = re.search(r'"numpy==([^"]+)"', (ROOT / "pyproject.toml").read_text()).group(1)
    assert f"numpy=={pinned}" in python_env.PACKAGES  # the stub needs numpy 1.x (DESIGN: numpy 2 empties outputs)


def test_the_environment_holds_its_packages_and_names_this_python(tmp_path):
    env = python_env.make_environment(tmp_path / "env")
    assert (env / "bin" / "activate").exists()  # what the python backend sources
    site = env / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    assert {p.name.split("-")[0].lower() for p in site.glob("*.dist-info")} == {"numpy", "anyascii"}
    assert python_env.environment_python(env) == f"{sys.version_info.major}.{sys.version_info.minor}"


def test_a_failed_download_quotes_pip(tmp_path, monkeypatch):
    monkeypatch.setattr(python_env, "wheels_dir", lambda: tmp_path / "wheels")
    monkeypatch.setattr(python_env, "downloads_dir", lambda: tmp_path)
    monkeypatch.setattr(python_env, "PACKAGES", ("no-such-package-for-the-course==0.0.1",))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    with pytest.raises(DownloadError, match="lesson 9's environment") as error:
        python_env.ensure_wheels()
    assert "no-such-package-for-the-course" in error.value.triton_said
    assert not (tmp_path / "wheels").exists()


@pytest.mark.server
def test_the_model_loads_only_with_its_environment(tmp_path):
    model = tmp_path / "repo" / "ascii_text"
    (model / "1").mkdir(parents=True)
    (model / "1" / "model.py").write_text(MODEL)
    (model / "config.pbtxt").write_text(CONFIG)
    with start_server(tmp_path / "repo", model_control_mode="explicit") as server:
        with pytest.raises(ModelLoadError) as error:
            server.load_model("ascii_text")
        assert "No module named 'anyascii'" in error.value.problem("ascii_text").message
        python_env.make_environment(model / "env")
        (model / "config.pbtxt").write_text(CONFIG + ENV)
        server.load_model("ascii_text")
        out = infer_outputs(server.http_url, {"TEXT": np.array(["Zürich".encode()], dtype=np.object_)}, ["ASCII"],
                            model="ascii_text")
        assert out["ASCII"][0] == b"Zurich"

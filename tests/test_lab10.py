"""Lab 10's checks against a real explicit-mode server: the right answers pass, the usual mistakes get their
own message."""

from __future__ import annotations

import shutil

import pytest

from triton_course import start_server, versions
from triton_course.checks import lab10
from triton_course.repository import add_version

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repo = tmp_path_factory.mktemp("lab10") / "repo"
    repo.mkdir()
    with start_server(repo, model_control_mode="explicit") as s:
        yield s


def test_specific_policy_passes(server):
    verdict = lab10.check_version_policy("version_policy { specific { versions: [1, 2] } }", server)
    assert verdict.ok, verdict
    assert "version 3 is not served" in repr(verdict)


def test_misspelt_block_quotes_the_parser(server):
    verdict = lab10.check_version_policy("version_polcy { specific { versions: [1, 2] } }", server)
    assert not verdict.ok
    assert 'no field named "version_polcy"' in verdict.triton_said
    verdict = lab10.check_version_policy("version_policy { specfic { versions: [1, 2] } }", server)
    assert 'no field named "specfic"' in verdict.triton_said


def test_latest_two_serves_the_highest_versions(server):
    verdict = lab10.check_version_policy("version_policy { latest { num_versions: 2 } }", server)
    assert not verdict.ok
    assert "serves version(s) ['2', '3']" in verdict.problems[0]
    assert "Version 1 does not answer" in verdict.problems[1]
    assert "two HIGHEST versions" in verdict.hint


def test_a_version_that_does_not_exist_is_named(server):
    verdict = lab10.check_version_policy("version_policy { specific { versions: [1, 2, 4] } }", server)
    assert not verdict.ok
    assert "You list version(s) [4]" in verdict.problems[0]
    assert "skips a listed version that does not exist" in verdict.problems[0]


def test_empty_and_unrelated_answers(server):
    assert "policy_text is empty" in lab10.check_version_policy("", server).problems[0]
    verdict = lab10.check_version_policy("dynamic_batching { }", server)
    assert "sets ['dynamic_batching'], not version_policy" in verdict.problems[0]


def good_roll_out(server, name, model_file):
    version = max(int(p.name) for p in (server.repository / name).iterdir() if p.name.isdigit()) + 1
    add_version(server.repository, name, version, model_file)
    server.load_model(name)
    return version


def test_rollout_and_rollback_pass(server):
    verdict = lab10.check_roll_out(good_roll_out, server)
    assert verdict.ok, verdict

    def roll_back(server, name, version):
        config = versions.with_version_policy(lab10.copy_config(lab10.reference_config(), name), "specific",
                                              versions=(version,))
        server.load_model(name, config=config)

    verdict = lab10.check_roll_back(roll_back, server)
    assert verdict.ok, verdict


def test_rollback_that_deletes_the_release(server):
    assert lab10.check_roll_out(good_roll_out, server).ok

    def delete_and_reload(server, name, version):
        shutil.rmtree(server.repository / name / "2")
        server.load_model(name)

    verdict = lab10.check_roll_back(delete_and_reload, server)
    assert not verdict.ok
    assert "Version 2's folder is gone" in verdict.problems[0]


def test_forgetting_to_load(server):
    def copy_only(server, name, model_file):
        add_version(server.repository, name, 2, model_file)
        return 2

    verdict = lab10.check_roll_out(copy_only, server)
    assert not verdict.ok
    assert "Version 2 is in the repository but the server serves ['1']" in verdict.problems[0]
    assert "load the model again" in verdict.problems[0]


def test_unload_then_load_fails_requests(server):
    def unload_first(server, name, model_file):
        add_version(server.repository, name, 2, model_file)
        server.unload_model(name)
        server.load_model(name)
        return 2

    verdict = lab10.check_roll_out(unload_first, server)
    assert not verdict.ok
    assert any("unloaded 'lab10_rollout' before loading the new version" in p for p in verdict.problems), verdict
    assert "Do not unload first" in verdict.hint


def test_folder_not_a_number_and_no_return(server):
    def named_folder(server, name, model_file):
        add_version(server.repository, name, "v2", model_file)
        server.load_model(name)

    verdict = lab10.check_roll_out(named_folder, server)
    assert not verdict.ok
    assert "holds ['v2']" in verdict.problems[0] and "not a number" in verdict.problems[0]
    assert "There is no version folder 2" in verdict.problems[1]
    assert "roll_out returned None" in verdict.problems[-1]


def test_wrong_file_name_quotes_triton(server):
    def wrong_name(server, name, model_file):
        add_version(server.repository, name, 2, model_file, filename="release.onnx")
        server.load_model(name)
        return 2

    verdict = lab10.check_roll_out(wrong_name, server)
    assert not verdict.ok
    assert "failed to load" in verdict.problems[0]
    assert verdict.triton_said

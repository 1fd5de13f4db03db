"""Checks for lab 10 (model management): a version_policy, a rollout and a rollback, each tried on the
learner's running server (started with --model-control-mode=explicit)."""

from __future__ import annotations

import shutil
from pathlib import Path

from tritonclient.utils import InferenceServerException

from .. import ModelLoadError, versions
from ..artifact import INPUT_NAME, OUTPUT_NAME, ensure_onnx, labels, reference_config
from ..clients import infer_inputs, requested_outputs
from ..errors import ConfigError
from ..model_config import copy_config, parse_config, to_text
from ..photos import batch, photo
from ..repository import add_model
from . import Verdict, failed, passed

POLICY_MODEL = "lab10_policy"
ROLLOUT_MODEL = "lab10_rollout"
POLICY_VERSIONS = (1, 2, 3)  # the folders the policy model has
WANTED = {"1", "2"}


def _image():
    return batch([photo("coffee")])


def _answering_versions(server, name: str, candidates) -> dict[str, str]:
    """version -> "ok" or Triton's refusal, for a request that asks for that version by number."""
    inputs = infer_inputs({INPUT_NAME: _image()}, "http")
    answers = {}
    with server.http_client() as client:
        for version in candidates:
            try:
                client.infer(name, inputs, model_version=str(version),
                             outputs=requested_outputs([OUTPUT_NAME], "http"))
                answers[str(version)] = "ok"
            except InferenceServerException as exc:  # a refusal is the answer we report
                answers[str(version)] = str(exc).splitlines()[0]
    return answers


def _ready_versions(server, name: str) -> list[str]:
    return sorted((row["version"] for row in versions.index(server)
                   if row["model"] == name and row["state"] == "READY"), key=int)


def _fresh_model(server, name: str, versions_: tuple[int, ...]) -> Path:
    """A model folder in the server's repository with these version folders (all the course model),
    unloaded and without a version_policy: what each check starts from."""
    try:
        server.unload_model(name)
    except InferenceServerException:  # it was not loaded
        pass
    folder = server.repository / name
    shutil.rmtree(folder, ignore_errors=True)
    config = copy_config(reference_config(), name)
    for version in versions_:
        add_model(server.repository, config, ensure_onnx(), version=version, labels=labels())
    return folder


def check_version_policy(policy_text: str, server) -> Verdict:
    """Exercise 1: `policy_text` is the block added to config.pbtxt so that of versions 1, 2 and 3
    only 1 and 2 are served. It is written into a model's config.pbtxt and loaded from the files."""
    exercise = "Exercise 1 (version_policy)"
    if not isinstance(policy_text, str) or not policy_text.strip():
        return failed(exercise, "policy_text is empty: write the version_policy block as config.pbtxt text.",
                      hint="It starts with `version_policy {` and holds one of latest, all or specific.")
    folder = _fresh_model(server, POLICY_MODEL, POLICY_VERSIONS)
    base = copy_config(reference_config(), POLICY_MODEL)
    try:
        config = parse_config(to_text(base) + "\n" + policy_text, source="config.pbtxt with your block")
    except ConfigError as exc:
        return failed(exercise, "Your block does not parse as part of a ModelConfig.", triton_said=exc.triton_said,
                      hint="Field names are version_policy, then one of latest { num_versions: N }, all { }, "
                           "specific { versions: [...] }; check the spelling at the line:column shown.")
    extra = {f.name for f, _ in config.ListFields()} - {f.name for f, _ in base.ListFields()}
    if not config.HasField("version_policy"):
        return failed(exercise, f"Your block sets {sorted(extra) or 'nothing new'}, not version_policy.",
                      hint="Write `version_policy { ... }`.")
    listed = sorted(config.version_policy.specific.versions)
    missing = [v for v in listed if v not in POLICY_VERSIONS]
    (folder / "config.pbtxt").write_text(to_text(config))
    try:
        server.load_model(POLICY_MODEL)
    except ModelLoadError as exc:
        return failed(exercise, f"Model '{POLICY_MODEL}' with your policy failed to load.",
                      triton_said=exc.problems[0].message, hint=exc.problems[0].fix)
    ready = _ready_versions(server, POLICY_MODEL)
    answers = _answering_versions(server, POLICY_MODEL, POLICY_VERSIONS)
    problems = []
    if missing:
        problems.append(f"You list version(s) {missing} but the repository has only folders "
                        f"{list(POLICY_VERSIONS)}: Triton skips a listed version that does not exist, "
                        "without an error, so a typo here goes unnoticed.")
    if set(ready) != WANTED:
        kind = config.version_policy.WhichOneof("policy_choice")
        problems.append(f"With your policy ({kind}) the server serves version(s) {ready}; wanted exactly 1 and 2.")
    for version in sorted(WANTED - set(ready)):
        problems.append(f"Version {version} does not answer: {answers[version]}")
    if problems:
        hint = ("latest { num_versions: 2 } serves the two HIGHEST versions (2 and 3); all { } serves every folder. "
                "To name exact versions: version_policy { specific { versions: [1, 2] } }.")
        return failed(exercise, *problems, hint=hint)
    refused = answers["3"]
    return passed(exercise, f"versions {ready} are READY and answer; version 3 is not served "
                            f"(Triton: {refused[:80]}).")


class _UnloadsNoted:
    """The server as the learner's code sees it, noting every unload_model call: unloading first leaves the
    model unserved for a moment, which a request may or may not happen to hit."""

    def __init__(self, server):
        self._server = server
        self.unloaded: list[str] = []

    def unload_model(self, name: str, *args, **kwargs):
        self.unloaded.append(name)
        return self._server.unload_model(name, *args, **kwargs)

    def __getattr__(self, attribute):
        return getattr(self._server, attribute)


def check_roll_out(roll_out, server) -> Verdict:
    """Exercise 2: `roll_out(server, name, model_file)` puts the file into the model's next version
    folder and makes the server serve it, without failing a request; it returns the new version."""
    exercise = "Exercise 2 (rollout)"
    folder = _fresh_model(server, ROLLOUT_MODEL, (1,))
    server.load_model(ROLLOUT_MODEL)
    release = ensure_onnx()
    watched = _UnloadsNoted(server)
    with versions.Traffic(server.http_url, ROLLOUT_MODEL, _image()) as traffic:
        try:
            returned = roll_out(watched, ROLLOUT_MODEL, release)
        except ModelLoadError as exc:
            return failed(exercise, f"Your roll_out raised: the new version of '{ROLLOUT_MODEL}' failed to load.",
                          triton_said=exc.problems[0].message, hint=exc.problems[0].fix)
        except Exception as exc:  # noqa: BLE001 - the learner's code; say what it raised
            return failed(exercise, f"Your roll_out raised {type(exc).__name__}: {exc}",
                          hint="Copy the file with repository.add_version(server.repository, name, N, model_file), "
                               "then server.load_model(name).")
    problems = []
    folders = sorted(p.name for p in folder.iterdir() if p.is_dir())
    non_numeric = [f for f in folders if not f.isdigit()]
    if non_numeric:
        problems.append(f"The model folder holds {non_numeric}: Triton ignores folders whose name is not a "
                        "number, so that is no version at all.")
    if "2" not in folders:
        problems.append(f"There is no version folder 2 (the model has {folders}): the next version of a model "
                        "with version 1 goes into NAME/2/.")
    elif not (folder / "2" / "model.onnx").is_file():
        problems.append(f"Folder 2 holds {sorted(p.name for p in (folder / '2').iterdir())}, not model.onnx "
                        "(the file name the config expects).")
    served = [answer for _, answer in traffic.answers if not answer.startswith("error")]
    errors = [answer for _, answer in traffic.answers if answer.startswith("error")]
    ready = _ready_versions(server, ROLLOUT_MODEL)
    if "2" in folders and "2" not in ready:
        problems.append(f"Version 2 is in the repository but the server serves {ready or 'nothing'}: in explicit "
                        "mode nothing changes until you load the model again (server.load_model(name)).")
    elif ready != ["2"]:
        problems.append(f"After the rollout the server serves versions {ready}; wanted only the new one, 2.")
    if ROLLOUT_MODEL in watched.unloaded:
        problems.append(f"Your roll_out unloaded '{ROLLOUT_MODEL}' before loading the new version: between the two "
                        "the model serves nothing, whether or not a request happens to arrive then.")
    if errors:
        problems.append(f"{len(errors)} of the {len(traffic.answers)} requests sent during your rollout failed "
                        f"(first: {errors[0][7:]}).")
    if served and served[-1] != "version 2" and "2" in ready:
        problems.append(f"The last request was answered by {served[-1]}, not version 2.")
    if returned != 2:
        problems.append(f"roll_out returned {returned!r}; it should return the new version number, 2.")
    if problems:
        hint = ("Copy the file into NAME/<next number>/model.onnx, then load the model again: Triton starts the "
                "new version, switches requests to it once it is ready and only then unloads the old one. "
                "Do not unload first: that leaves the model unserved in between.")
        return failed(exercise, *problems, hint=hint)
    return passed(exercise, "version 2 took over from version 1, and no request sent meanwhile failed.")


def check_roll_back(roll_back, server) -> Verdict:
    """Stretch: `roll_back(server, name, version)` serves only `version` again, without deleting any
    file and without failing a request (a config override with a specific version_policy)."""
    exercise = "Stretch (rollback)"
    folder = server.repository / ROLLOUT_MODEL
    if _ready_versions(server, ROLLOUT_MODEL) != ["2"]:
        return failed(exercise, f"Run the check of exercise 2 first: it leaves '{ROLLOUT_MODEL}' serving version 2.")
    config_before = (folder / "config.pbtxt").read_text()
    with versions.Traffic(server.http_url, ROLLOUT_MODEL, _image()) as traffic:
        try:
            roll_back(server, ROLLOUT_MODEL, 1)
        except Exception as exc:  # noqa: BLE001 - the learner's code; say what it raised
            return failed(exercise, f"Your roll_back raised {type(exc).__name__}: {exc}",
                          hint="server.load_model(name, config=...) takes a ModelConfig that overrides config.pbtxt.")
    problems = []
    ready = _ready_versions(server, ROLLOUT_MODEL)
    errors = [answer for _, answer in traffic.answers if answer.startswith("error")]
    if ready != ["1"]:
        problems.append(f"After your rollback the server serves versions {ready}; wanted only 1.")
    if errors:
        problems.append(f"{len(errors)} requests failed during the rollback (first: {errors[0][7:]}).")
    if not (folder / "2").is_dir():
        problems.append("Version 2's folder is gone: a rollback should keep the release, to roll forward later.")
    if (folder / "config.pbtxt").read_text() != config_before:
        problems.append("config.pbtxt changed: this exercise asks for the load API's config override, which "
                        "leaves the file as it is.")
    if problems:
        return failed(exercise, *problems, hint="versions.with_version_policy(config, 'specific', versions=(1,)) "
                                                "and server.load_model(name, config=that).")
    return passed(exercise, "version 1 serves again, no request failed meanwhile, and version 2 is still on disk.")

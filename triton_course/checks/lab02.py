"""Checks of lab 02 (the model repository): a repository built by hand, looked at as Triton will,
then loaded on a real server (explicit model-control mode) and asked for a prediction."""

from __future__ import annotations

import stat
from pathlib import Path

import requests

from .. import inference, photos
from ..errors import suggest_fix
from ..model_config import read_config
from ..paths import MODEL_NAME
from ..permissions import readable_by_server
from . import Verdict, failed, passed
from ._serving import reload


def _mode(path: Path) -> str:
    return stat.filemode(path.stat().st_mode)


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except PermissionError:  # inside a folder we may not enter: the permission check reports that
        return True


def layout_problems(repository: Path, versions: tuple[int, ...] = (1,)) -> list[str]:
    """What in `repository` is not where, or not as readable as, Triton needs it for the course model."""
    repository = Path(repository)
    model_dir = repository / MODEL_NAME
    if not model_dir.is_dir():
        found = ", ".join(sorted(p.name for p in repository.iterdir())) if repository.is_dir() else "nothing"
        return [f"there is no folder {MODEL_NAME}/ in the repository (found: {found or 'nothing'}); the model "
                "folder's name is the model's name"]
    problems = []
    for path in [repository, model_dir, *sorted(model_dir.rglob("*"))]:
        if path.name.endswith(".bak"):
            continue
        if not readable_by_server(path):
            what = "folder" if path.is_dir() else "file"
            need = "r and x (755)" if path.is_dir() else "r (644)"
            problems.append(f"the {what} {path.relative_to(repository.parent)} has mode {_mode(path)}: the server "
                            f"needs {need} for everyone")
    if not (model_dir / "config.pbtxt").is_file():
        others = [p.name for p in model_dir.iterdir() if p.is_file() and "config" in p.name]
        problems.append(f"{MODEL_NAME}/config.pbtxt is missing" + (f" (found {', '.join(others)}: Triton reads only "
                                                                    "the name config.pbtxt)" if others else ""))
    if not (model_dir / "labels.txt").is_file():
        problems.append(f"{MODEL_NAME}/labels.txt is missing (the config's label_filename names it)")
    if list(model_dir.glob("*.onnx")):
        problems.append(f"a .onnx file lies directly in {MODEL_NAME}/: Triton only looks inside version folders")
    for folder in sorted(p for p in model_dir.iterdir() if p.is_dir() and not p.name.isdigit()):
        problems.append(f"the folder {MODEL_NAME}/{folder.name}/ is not a version: Triton ignores folders whose "
                        "name is not a whole number")
    for version in versions:
        folder = model_dir / str(version)
        if not folder.is_dir():
            problems.append(f"there is no version folder {MODEL_NAME}/{version}/")
        elif not _exists(folder / "model.onnx"):
            found = ", ".join(sorted(p.name for p in folder.iterdir())) or "nothing"
            problems.append(f"{MODEL_NAME}/{version}/ holds {found}, not model.onnx (the file name Triton looks for)")
    return problems


FOLDER_HINT = ("Run os.chmod(folder, 0o755) on every folder of the model: a folder needs r to list it and x to "
               "enter it. (The check does not load the model before that: on the embedded server the course's "
               "runner would wait forever on a version folder it cannot enter.)")


def _closed_folders(problems: list[str]) -> bool:
    return any(p.startswith("the folder ") and " has mode " in p for p in problems)


def check_repository(server) -> Verdict:
    """Exercise 1: the server's repository holds the course model, version 1, readable by the server."""
    exercise = "Exercise 1"
    problems = layout_problems(server.repository)
    if _closed_folders(problems):
        return failed(exercise, *problems, hint=FOLDER_HINT)
    triton_said = reload(server, MODEL_NAME)
    if triton_said is not None or problems:
        hint = suggest_fix(triton_said) if triton_said else "Triton loaded it, but fix the layout above."
        return failed(exercise, *(problems or ["Triton could not load the model"]), triton_said=triton_said or "",
                      hint=hint)
    label, probability = inference.classify([photos.photo("coffee")], server.http_url, k=1)[0][0]
    return passed(exercise, f"Triton loaded {MODEL_NAME} from your repository and says {label} "
                            f"({probability:.2f}) for the coffee.")


def _ready_versions(server) -> list[int]:
    ready = []
    for version in range(1, 10):
        with requests.get(f"{server.http_url}/v2/models/{MODEL_NAME}/versions/{version}/ready", timeout=10,
                          headers={"Connection": "close"}) as response:
            if response.status_code == 200:
                ready.append(version)
    return ready


def check_versions(server) -> Verdict:
    """Exercise 2: versions 1 and 2 both on disk, and both served at once."""
    exercise = "Exercise 2"
    problems = layout_problems(server.repository, versions=(1, 2))
    if _closed_folders(problems):
        return failed(exercise, *problems, hint=FOLDER_HINT)
    triton_said = reload(server, MODEL_NAME)
    if triton_said is not None:
        return failed(exercise, *(problems or ["Triton could not load the model"]), triton_said=triton_said,
                      hint=suggest_fix(triton_said))
    ready = _ready_versions(server)
    if ready == [1, 2] and not problems:
        return passed(exercise, "versions 1 and 2 are both READY.")
    if ready == [2] and not problems:
        policy = read_config(server.repository / MODEL_NAME / "config.pbtxt").version_policy
        problems.append("only version 2 is ready: the config's version policy is "
                        f"{policy.WhichOneof('policy_choice') or 'the default, latest 1'}")
        return failed(exercise, *problems, hint="Add version_policy: { all {} } (or specific { versions: [1, 2] }) "
                                                "to config.pbtxt.")
    return failed(exercise, *(problems or [f"the versions ready are {ready}, not [1, 2]"]),
                  hint="Put model.onnx in a folder named 2, next to 1, and serve every version.")

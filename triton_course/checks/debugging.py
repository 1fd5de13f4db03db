"""Checks for the debugging lab (labs/solutions/debugging.ipynb): one per broken model.

Each check reads the learner's fixed model folder for the specific mistakes newcomers make (and
names the field or file at fault), then loads the model on the lab's real Triton server (explicit
model control) and sends it a photo: a fix passes only when Triton loads it and it answers.
"""

from __future__ import annotations

import stat
from pathlib import Path

from .. import ModelLoadError, ServerStartError, broken_models
from ..artifact import ensure_onnx
from ..config_editor import onnx_mismatches
from ..errors import ConfigError, suggest_fix
from ..model_config import ModelConfig, read_config
from ..permissions import readable_by_server
from . import Verdict, failed, passed


def try_load(server, model: str) -> str:
    """Load `model` on the lab's server and return what happened, in Triton's words when it fails."""
    try:
        server.load_model(model)
    except ModelLoadError as error:
        return str(error)
    return f"Model '{model}' loaded."


def _read(exercise: str, server, model: str) -> ModelConfig | Verdict:
    """The model's config, or a failed verdict: where the text breaks, and what Triton says of it."""
    path = _model_dir(server, model) / "config.pbtxt"
    if not path.exists():
        return failed(exercise, f"{path} is missing.", hint="Write config.pbtxt back into the model's folder.")
    try:
        return read_config(path)
    except ConfigError as error:
        from ..config_editor import parse_problem

        where = parse_problem(path.read_text()).split("\nFix:")[0]
        try:
            server.load_model(model)
            said = ""
        except ModelLoadError as refused:
            said = refused.problems[0].message if refused.problems else str(refused)
        return failed(exercise, f"config.pbtxt does not parse as a ModelConfig: {where}", triton_said=said,
                      hint=error.fix or "")


def _tensor_problems(config: ModelConfig) -> list[str]:
    """How the config's tensors disagree with the course model's ONNX file."""
    return onnx_mismatches(config, ensure_onnx())


def _load_and_classify(exercise: str, server, model: str, problems: list[str], *, task_note: str = "") -> Verdict:
    """Load `model` on the server; on success send the coffee photo and unload it again."""
    try:
        server.load_model(model)
    except ModelLoadError as error:
        said = error.problems[0].message if error.problems else str(error)
        return failed(exercise, *(problems or ["Triton still refuses to load the model."]), triton_said=said,
                      hint=suggest_fix(said))
    try:
        label = _top_label(server, model)
    finally:
        server.unload_model(model)
    if problems:  # it loaded, but the task asked for more than loading
        return failed(exercise, *problems, hint=task_note)
    return passed(exercise, f"Triton loaded '{model}' and it answered the coffee photo with '{label}'.")


def _top_label(server, model: str) -> str:
    from ..inference import infer, top_k
    from ..photos import batch, photo

    logits = infer(server.http_url, batch([photo("coffee")]), model=model)
    return top_k(logits[0], k=1)[0][0]


def _model_dir(server, model: str) -> Path:
    return Path(server.repository) / model


# --- (a) the batch dimension in dims ------------------------------------------------------------

def check_batch_in_dims(server, exercise: str = "Exercise 1") -> Verdict:
    model = "batch_in_dims"
    config = _read(exercise, server, model)
    if isinstance(config, Verdict):
        return config
    problems = _tensor_problems(config)
    if config.max_batch_size != 8:
        problems.append(f"max_batch_size is {config.max_batch_size}; the task keeps it at 8 so that a request "
                        "may carry up to 8 images (with 0, Triton does no batching at all).")
    return _load_and_classify(exercise, server, model, problems,
                              task_note="Fix dims, not max_batch_size: dims: [3, 224, 224] with max_batch_size: 8.")


# --- (b) a wrong tensor name --------------------------------------------------------------------

def check_wrong_tensor_name(server, exercise: str = "Exercise 2") -> Verdict:
    model = "wrong_tensor_name"
    config = _read(exercise, server, model)
    if isinstance(config, Verdict):
        return config
    return _load_and_classify(exercise, server, model, _tensor_problems(config))


# --- (c) no version folder -------------------------------------------------------------------------

def check_no_version_folder(server, exercise: str = "Exercise 3") -> Verdict:
    model = "no_version_folder"
    model_dir = _model_dir(server, model)
    problems = []
    folders = [p for p in model_dir.iterdir() if p.is_dir()]
    versions = [p for p in folders if p.name.isdigit()]
    for folder in folders:
        if not folder.name.isdigit():
            problems.append(f"the folder '{folder.name}' is not a version folder: Triton reads only folders named "
                            "by a whole number (1, 2, ...) and ignores the others.")
    for version in versions:
        if not (version / "model.onnx").exists():
            problems.append(f"the version folder '{version.name}' holds no model.onnx "
                            f"(it holds: {', '.join(sorted(p.name for p in version.iterdir())) or 'nothing'}).")
    if not versions and not problems:
        problems.append("there is still no numbered version folder in the model's folder.")
    return _load_and_classify(exercise, server, model, problems)


# --- (d) a config that does not parse -----------------------------------------------------------

def check_does_not_parse(server, exercise: str = "Exercise 4") -> Verdict:
    model = "does_not_parse"
    config = _read(exercise, server, model)
    if isinstance(config, Verdict):
        return config
    problems = _tensor_problems(config)
    for kind, tensors in (("input", config.input), ("output", config.output)):
        for t in tensors:
            if not t.dims:
                problems.append(f"{kind} '{t.name}' has no dims any more: the line with the typo must stay, "
                                "spelled 'dims'.")
    return _load_and_classify(exercise, server, model, problems)


# --- (e) an unreadable file ------------------------------------------------------------------------

def check_unreadable_file(server, exercise: str = "Exercise 5") -> Verdict:
    model = "unreadable_file"
    model_dir = _model_dir(server, model)
    problems = []
    for path in [model_dir, *sorted(model_dir.rglob("*"))]:
        if path.name.endswith(".bak"):
            continue
        mode = path.stat().st_mode
        shown = f"{stat.filemode(mode)} {path.relative_to(model_dir.parent)}"
        if not readable_by_server(path):
            what = "list and enter it (r and x)" if path.is_dir() else "read it"
            problems.append(f"{shown}: the user that runs Triton cannot {what}.")
            continue
        need = stat.S_IROTH | (stat.S_IXOTH if path.is_dir() else 0)
        if mode & need != need:
            problems.append(f"{shown}: only its owner (or group) may read it. Triton loads it here because this "
                            "server runs as that owner, but a Triton started as another user (docker run --user, "
                            "a pod's user) could not: give everyone read (chmod 644 for files, 755 for folders).")
    return _load_and_classify(exercise, server, model, problems,
                              task_note="Make every file readable by everyone: chmod a+r (folders a+rx).")


# --- (f) an ensemble whose maps do not connect -----------------------------------------------------

def check_ensemble(server, exercise: str = "Exercise 6") -> Verdict:
    model = "broken_ensemble"
    repository = Path(server.repository)
    config = _read(exercise, server, model)
    if isinstance(config, Verdict):
        return config
    problems = _ensemble_problems(config, repository)
    try:
        server.load_model(model)
    except ModelLoadError as error:
        said = error.problems[0].message if error.problems else str(error)
        return failed(exercise, *(problems or ["Triton still refuses to load the ensemble."]), triton_said=said,
                      hint="In every map the key is the step model's own tensor name and the value the ensemble's "
                           "tensor: a step reads what an earlier step wrote under the same value.")
    try:
        from ..inference import infer_outputs
        from ..photos import batch, photo

        answer = infer_outputs(server.http_url, {"pixels": batch([photo("coffee")])}, ["labels", "scores"], model=model)
        label = answer["labels"][0][0].decode()
    finally:
        for name in (model, broken_models.CLASSIFIER, "postprocess"):
            server.unload_model(name)
    if problems:
        return failed(exercise, *problems)
    return passed(exercise, f"Triton loaded '{model}' with its two steps, and it labelled the coffee photo "
                            f"'{label}'.")


def _ensemble_problems(config: ModelConfig, repository: Path) -> list[str]:
    """Maps whose keys are not the step model's tensors, and ensemble tensors nobody writes."""
    problems = []
    written = {t.name for t in config.input}
    for number, step in enumerate(config.ensemble_scheduling.step, start=1):
        where = f"step {number} ({step.model_name})"
        try:
            step_config = read_config(repository / step.model_name / "config.pbtxt")
        except (ConfigError, OSError):
            problems.append(f"{where}: there is no readable model '{step.model_name}' in the repository.")
            continue
        for kind, mapping, tensors in (("input_map", step.input_map, step_config.input),
                                       ("output_map", step.output_map, step_config.output)):
            own = [t.name for t in tensors]
            for key, value in mapping.items():
                if key not in own:
                    swapped = " (key and value swapped?)" if value in own else ""
                    problems.append(f"{where}: {kind} key '{key}' is not a tensor of {step.model_name} (its "
                                    f"{'inputs' if kind == 'input_map' else 'outputs'}: {', '.join(own)}){swapped}. "
                                    "The key is the model's own tensor name, the value the ensemble's.")
        for key, value in step.input_map.items():
            if value not in written:
                problems.append(f"{where} reads the ensemble tensor '{value}' (into its '{key}'), but no earlier step "
                                f"writes it: the ensemble's tensors so far are {', '.join(sorted(written))}.")
        written.update(step.output_map.values())
    for t in config.output:
        if t.name not in written:
            problems.append(f"the ensemble's output '{t.name}' is written by no step.")
    return problems


# --- (g) a TensorRT engine whose profile is smaller than max_batch_size ----------------------------

def show_engine_mistake(scenario: broken_models.EngineScenario, server) -> str:
    """Mistake (g) as Triton reports it: from the live server where the engine was built here and the
    server has the tensorrt backend; otherwise the course's copy of the backend's rule, and it says so."""
    from .. import tensorrt

    reason = scenario.reason or tensorrt.serving_unavailable_reason(server, "tensorrt")
    if scenario.live and reason is None:
        return try_load(server, scenario.config.name)
    try:
        tensorrt.check_engine_batch(scenario.config, scenario.engine_max_batch)
    except ConfigError as error:
        return (f"No live Triton can show this mistake here: {reason}.\n"
                "What follows is NOT from a server: it is the course's copy of the tensorrt backend's rule "
                "(triton_course.tensorrt.check_engine_batch), which gives the backend's message word for word.\n\n"
                f"{error.what}\n"
                f"The tensorrt backend would say (reproduced, not from a server): {error.triton_said}\n"
                f"Fix: {error.fix}")
    return "The engine and the config agree."


def check_rebuild_command(command: list[str], scenario: broken_models.EngineScenario,
                          exercise: str = "Stretch exercise 10") -> Verdict:
    """The other fix for (g): a trtexec command whose profile takes the config's max_batch_size."""
    wanted = scenario.config.max_batch_size
    options = dict(part.split("=", 1) for part in command if part.startswith("--") and "=" in part)
    problems = []
    for which, batch in (("minShapes", 1), ("maxShapes", wanted)):
        shapes = options.get(f"--{which}")
        if not shapes:
            problems.append(f"the command has no --{which}: without a profile the engine takes only the ONNX "
                            "model's fixed shapes.")
            continue
        for entry in shapes.split(","):
            name, _, shape = entry.partition(":")
            first = shape.split("x")[0]
            if name != "input":
                problems.append(f"--{which} names the tensor '{name}'; the model's input is 'input'.")
            elif first != str(batch):
                problems.append(f"--{which} starts the shape of 'input' with {first}; it must be {batch}"
                                + (" (the config's max_batch_size)." if which == "maxShapes" else "."))
    if "--saveEngine" not in options:
        problems.append("the command has no --saveEngine=...model.plan: the engine would not be written.")
    if problems:
        return failed(exercise, *problems, hint="tensorrt.trtexec_command(onnx, plan, config) derives the profile "
                                                "from the config.")
    return passed(exercise, f"this command builds an engine whose profile takes batches of 1 to {wanted}: "
                            "run it where TensorRT runs (container_command wraps it in NVIDIA's container).")


def check_engine_batch(fixed: ModelConfig, scenario: broken_models.EngineScenario, server=None,
                       exercise: str = "Exercise 7") -> Verdict:
    """Where the scenario's engine was really built and `server` has the tensorrt backend, load the
    fixed config on it; otherwise apply the tensorrt backend's rule (the course's copy of it)."""
    from .. import tensorrt

    engine = scenario.engine_max_batch
    problems = []
    if not isinstance(fixed, ModelConfig):
        return failed(exercise, f"the answer is a {type(fixed).__name__}, not a ModelConfig.",
                      hint="Start from broken_models.engine_scenario(...).config, copy it and change it.")
    if fixed.platform != "tensorrt_plan":
        problems.append(f"platform is '{fixed.platform or fixed.backend}'; the engine is served by "
                        "platform: \"tensorrt_plan\": keep it.")
    if fixed.max_batch_size == 0:
        problems.append("max_batch_size 0 turns batching off, and dims would then need the batch dimension too: "
                        f"keep batching, up to what the engine takes ({engine}).")
    elif fixed.max_batch_size < engine:
        problems.append(f"max_batch_size {fixed.max_batch_size} loads, but wastes the engine: its profile takes "
                        f"batches up to {engine}.")
    live = scenario.live and server is not None and tensorrt.serving_unavailable_reason(server, "tensorrt") is None
    if live:
        from ..repository import write_config

        write_config(scenario.model_dir, fixed)
        try:
            server.load_model(fixed.name)
        except ModelLoadError as error:
            said = error.problems[0].message if error.problems else str(error)
            return failed(exercise, *(problems or ["Triton still refuses the engine."]), triton_said=said,
                          hint=suggest_fix(said))
        server.unload_model(fixed.name)
        source = "Triton's tensorrt backend loaded the engine with this config"
    else:
        try:
            tensorrt.check_engine_batch(fixed, engine)
        except ConfigError as error:
            return failed(exercise, *(problems or [error.what]),
                          triton_said=error.triton_said, hint=suggest_fix(error.triton_said),
                          said_by="the course's copy of the tensorrt backend's rule (no live server here)")
        source = ("the tensorrt backend's rule (the course's copy of it: no TensorRT here, so no live server "
                  "checked it) accepts this config")
    if problems:
        return failed(exercise, *problems)
    return passed(exercise, f"{source}: max_batch_size {fixed.max_batch_size} fits the engine's profile "
                            f"(batches up to {engine}).")


# --- (i) JupyterLab's checkpoint folders ------------------------------------------------------------

def try_start(repository: str | Path, mode: str = "none") -> str:
    """Start a server on `repository` in `mode` (by default 'none', Triton's default: every model loads at
    start) and say what happened, in Triton's words when it fails; its warnings about checkpoint folders too."""
    from .. import server as make_server

    s = make_server(repository, model_control_mode=mode)
    try:
        with s:
            with s.http_client() as client:
                ready = sorted(m["name"] for m in client.get_model_repository_index() if m.get("state") == "READY")
            said = f"Triton started and loaded {', '.join(ready) or 'no model'}."
    except (ModelLoadError, ServerStartError) as error:
        said = f"Triton did not start:\n{error}"
    warnings = [line.split("] ", 1)[-1].strip('"') for line in s.log_text().splitlines()
                if line.startswith("W") and broken_models.CHECKPOINTS in line]
    if warnings:
        said += "\nTriton's log also warned: " + warnings[0]
    return said


def check_checkpoints(repository: str | Path, exercise: str = "Exercise 9") -> Verdict:
    """Exercise 9: a server that loads every model at start starts on `repository` and its classifier answers."""
    from .. import server as make_server

    top = Path(repository) / broken_models.CHECKPOINTS
    problems = []
    if top.exists():
        problems.append(f"{top} is still there: Triton takes every folder at the top of the repository for a "
                        "model, and this one has no version.")
    s = make_server(repository, model_control_mode="none")
    try:
        with s:
            label = _top_label(s, broken_models.CLASSIFIER)
    except (ModelLoadError, ServerStartError) as error:
        said = error.problems[0].message if error.problems else str(error)
        return failed(exercise, *(problems or ["Triton still does not start on the repository."]),
                      triton_said=said, hint=suggest_fix(said))
    if problems:
        return failed(exercise, *problems)
    inside = Path(repository) / broken_models.CLASSIFIER / broken_models.CHECKPOINTS
    kept = (f" The {broken_models.CHECKPOINTS} folder inside {broken_models.CLASSIFIER} may stay: Triton only warns "
            "that its name is not a version number." if inside.exists() else "")
    return passed(exercise, f"Triton started on the repository, loading every model, and "
                            f"'{broken_models.CLASSIFIER}' answered the coffee photo with '{label}'.{kept}")


# --- (h) an explicit load on a server in poll mode -------------------------------------------------

def check_control_mode(mode: str, repository: str | Path, model: str = broken_models.CLASSIFIER,
                       exercise: str = "Exercise 8") -> Verdict:
    """Start a server in `mode` on `repository` and load `model` through the API, as the task asks."""
    from .. import server as make_server

    if mode == "poll":
        return failed(exercise, "'poll' is the mode whose server refused the load above: a polling server loads "
                                "what it finds in the repository itself, and refuses the load API.",
                      hint="Use the mode in which models load only when asked.")
    s = make_server(repository, model_control_mode=mode)
    try:
        with s:
            try:
                s.load_model(model)
            except ModelLoadError as error:
                said = error.problems[0].message if error.problems else str(error)
                note = (" With 'none' Triton loads everything at start and then refuses the API; its message "
                        "names polling all the same." if mode == "none" else "")
                return failed(exercise, f"a server in model-control mode '{mode}' refused the load.{note}",
                              triton_said=said, hint=suggest_fix(said))
            label = _top_label(s, model)
    except ServerStartError as error:
        # A bad option makes Triton print its usage and then, last, what it refused.
        refused = [line for line in s.log_text().splitlines() if line.startswith(("Bad option", "invalid argument"))]
        return failed(exercise, f"Triton did not start with model-control mode '{mode}'.",
                      triton_said=" ".join(refused) or error.triton_said or "",
                      hint="The modes are none, poll and explicit.")
    return passed(exercise, f"a server in mode '{mode}' loaded '{model}' through the API, and it answered "
                            f"'{label}'.")

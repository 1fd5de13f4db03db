"""Errors a newcomer can act on: what went wrong, the words of whoever said so, and a one-line fix.

Triton reports a broken model in its log or in an API answer. `find_model_errors` reads the
log, `suggest_fix` maps a Triton message to the fix a newcomer needs, and the exceptions
below put the three together. `quote` names who wrote a message: Triton, or the course's runner that
stands in for the onnxruntime backend on a server without one (words copied from that backend).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

_DATATYPE_FIX = ("'{value}' is not a Triton datatype: use a ModelConfig name such as TYPE_FP32, TYPE_FP16, "
                 "TYPE_INT64, TYPE_UINT8 or TYPE_STRING (TYPE_FP32 for float32 tensors).")

# (pattern in Triton's message, the fix). The first match wins, so specific rules come first.
_FIXES: list[tuple[re.Pattern[str], str]] = [
    # JupyterLab keeps a copy of every file it saves in a .ipynb_checkpoints folder beside it. At the top of the
    # repository Triton takes that folder for a model (and, loading all models, fails to start); inside a model
    # folder it only warns that it is not a version number. Seen on the embedded Triton 2.51.
    (re.compile(r"model '(?P<folder>\.ipynb_checkpoints)'"),
     "'{folder}' is not a model: JupyterLab made it when you saved a file at the top of the model repository, and "
     "Triton takes every folder there for a model. Delete it (rm -r REPOSITORY/.ipynb_checkpoints) and keep "
     "notebooks and notes out of the repository's top level; in explicit model-control mode Triton loads only "
     "the models you name."),
    (re.compile(r"ignore version directory '\.ipynb_checkpoints'"),
     "Only a warning: JupyterLab's checkpoint of the config.pbtxt you edited, inside the model folder; Triton "
     "skips it because its name is not a version number. Delete it if you like (rm -r MODEL/.ipynb_checkpoints)."),
    # Ensembles: the maps' keys are the step model's tensor names, the values the ensemble's own tensors.
    (re.compile(r"is not written: at least one of its depending tensors, '(?P<tensor>[^']+)', is not connected"),
     "No step writes the ensemble tensor '{tensor}': make one step's output_map value '{tensor}' (the key being "
     "that model's output name), so that the steps connect."),
    (re.compile(r"non-existing (input|output) '?(?P<name>[^'\s]+)'? in model '?(?P<model>[^'\s]+?)'?(\s|$)"),
     "'{name}' is not a tensor of {model}: in input_map and output_map the key is the step model's own tensor "
     "name (GET /v2/models/{model}/metadata), the value the ensemble's."),
    (re.compile(r"ensemble input '(?P<tensor>[^']+)' for ensemble .* is not used"),
     "No step reads the ensemble input '{tensor}': use it as an input_map value of the first step."),
    # The python backend's shared memory (python_backend src/shm_manager.cc): a stub's region must fit /dev/shm,
    # which Docker makes 64 MB unless `docker run --shm-size` says otherwise.
    (re.compile(r"Unable to initialize shared memory key|Failed to increase the shared memory pool size"),
     "The python backend's shared memory did not fit in /dev/shm. In a container, give it more "
     "(docker run --shm-size=1g ...; Docker's default is 64 MB); or run fewer instances of python models; or lower "
     "--backend-config=python,shm-default-byte-size if you raised it."),
    (re.compile(r"The Python environment should contain an 'activate' script"),
     "EXECUTION_ENV_PATH must name a folder with bin/activate (a virtual environment made with the stub's Python "
     "version, or an unpacked conda environment) or a .tar.gz packed with conda-pack (lesson 9, section 9)."),
    # A python model imports a package the stub's Python does not have (lesson 9).
    (re.compile(r"ModuleNotFoundError: No module named '(?P<module>[^']+)'"),
     "The model imports '{module}', which the Python that runs it does not have. Install it in the server's "
     "environment, or give the model an environment of its own: parameters {{ key: \"EXECUTION_ENV_PATH\" ... }} "
     "in its config (lesson 9, section 9)."),
    (re.compile(r"must equal model name"),
     "Make name in config.pbtxt the model folder's name (or leave name out: Triton takes the folder's)."),
    (re.compile(r"an initial batch dimension because max_batch_size > 0"),
     "With max_batch_size > 0 Triton adds the batch dimension itself: leave it out of dims "
     "(dims: [ 3, 224, 224 ], not [ -1, 3, 224, 224 ])."),
    (re.compile(r"the model expects \d+ dimensions"),
     "Make dims match the model: with max_batch_size: 0 write the full shape including the "
     "batch dimension (-1), or set max_batch_size > 0 and leave the batch dimension out."),
    (re.compile(r"the model expects (shape|dims)"),
     "Make dims match the model's own shape (see its inputs and outputs with onnx, or "
     "GET /v2/models/NAME/metadata); -1 stands for a dimension of any size."),
    (re.compile(r'Unknown enumeration value of "(?P<value>\w+)" for field "data_type"'),
     _DATATYPE_FIX),
    (re.compile(r'Enum type "inference\.DataType" has no value named (?P<value>\w+)'),  # Python's protobuf
     _DATATYPE_FIX),
    (re.compile(r"unexpected datatype|expects data-type|expects datatype"),
     "Set data_type to the model's own type (a float32 tensor is TYPE_FP32)."),
    (re.compile(r"failed to read text proto"),
     "config.pbtxt is not valid protobuf text: fix it at the line:column shown "
     "(write 'field: value', lists in [ ], blocks in {{ }})."),
    (re.compile(r"failed to open text file for read .*Permission denied"),
     "The server cannot read config.pbtxt: run `chmod a+r` on it (and `chmod a+rx` on its folders)."),
    (re.compile(r"Permission denied"),
     "The server cannot read a file of the model: run `chmod a+r FILE` (folders need a+rx), "
     "or give it to the user that runs Triton."),
    (re.compile(r"Could not determine backend"),
     "Tell Triton what serves the model: put the model file in a version folder "
     "(NAME/1/model.onnx) and/or set platform: \"onnxruntime_onnx\" (or backend: \"python\") in config.pbtxt."),
    (re.compile(r"at least one version must be available"),
     "Put the model file in a numbered version folder: NAME/1/model.onnx (the folder's name is the version)."),
    (re.compile(r"unable to find backend library for backend '(?P<backend>[^']+)'"),
     "This server has no '{backend}' backend: use a Triton that has it (the NGC container, or a "
     "tritonserver on PATH), or serve the model through the python backend."),
    (re.compile(r"failed to open text file for read (?P<path>\S+): No such file"),
     "The config names a file that is not there ({path}): add it to the model's folder, or remove "
     "the field that names it (label_filename)."),
    (re.compile(r"is a symbolic link to .* which does not exist where the server runs"),
     "Copy the file into the repository instead of linking to it: a server in a container sees only "
     "the folders mounted into it."),
    (re.compile(r"model file not found|unable to find .*model|No such file"),
     "The version folder has no model file: put model.onnx (or model.py for the python backend) "
     "into NAME/<version>/."),
    (re.compile(r"unexpected inference (input|output) '(?P<name>[^']+)'"),
     "'{name}' is not a tensor of this model: use the model's own tensor names "
     "(GET /v2/models/NAME/metadata, or the ONNX model's inputs and outputs)."),
    (re.compile(r"already in use"),
     "Another process holds that port: stop it, or start the server on other ports "
     "(the course picks free ones unless you pass them)."),
    (re.compile(r"unknown model|Request for unknown model|is not found"),
     "No model of that name is loaded: check the name against the repository index "
     "(POST /v2/repository/index) and the server log."),
    (re.compile(r"batch-size must be <= (?P<max>\d+)"),
     "Send at most {max} items in one request, or raise max_batch_size in config.pbtxt."),
    (re.compile(r"unexpected shape for input"),
     "Send the shape the config declares: [batch, *dims] when max_batch_size > 0, dims alone otherwise."),
    (re.compile(r"configuration specified max-batch (?P<config>\d+) "
                r"but TensorRT engine only supports max-batch (?P<engine>\d+)"),
     "Rebuild the engine with a profile whose max batch is {config} (trtexec --maxShapes=NAME:{config}x...; "
     "triton_course.tensorrt.trtexec_command derives it from the config), or set max_batch_size: {engine}."),
    (re.compile(r"Version tag does not match|not compatible with this version of TensorRT"),
     "The engine was built by another TensorRT version: build it again with the TensorRT of the Triton "
     "that serves it (NVIDIA's TensorRT container of the same release, e.g. 24.10 for tritonserver:24.10)."),
    (re.compile(r"INVALID_PROTOBUF|Protobuf parsing failed"),
     "That version's model.onnx is not a valid ONNX file (damaged, or not ONNX at all): replace it, or remove "
     "the version folder. Versions that were already loaded keep serving."),
    (re.compile(r"the image is empty|not an image|could not be decoded|megapixels this model accepts"),
     "Send the whole encoded file (JPEG or PNG, as it is on disk) within the size limit; this request was "
     "refused on its own and the server goes on serving the others."),
    (re.compile(r"(API|protocol) is restricted, expecting header '(?P<header>[^']+)'"),
     "This server keeps that API behind a key: send the header '{header}' with the admin key "
     "(the course's server object sends it for you: server.admin_headers, server.grpc_admin_headers)."),
    (re.compile(r"explicit model load / unload is not allowed"),
     "Start the server with --model-control-mode=explicit to load and unload models through the API."),
]

GENERIC_FIX = "Read the server log (server.log_text()) around this message, fix the model, and start again."


# Who wrote the words a message quotes. The course's python-backend runners stand in for the onnxruntime backend
# where the server has none; Triton's python backend reports their load failures as "Internal: <writer>: <words>"
# (triton_course/runner/onnx_model.py says why), their request failures as "<writer>: <words>".
RUNNERS = {
    "course ONNX runner": "the course's ONNX runner (standing in for the onnxruntime backend)",
    "course PyTorch runner": "the course's PyTorch runner (standing in for the onnxruntime backend on the GPU)",
}
_RUNNER_MESSAGE = re.compile(r"^(?:Internal: )?(?P<tag>" + "|".join(map(re.escape, RUNNERS)) + r"): (?P<words>.*)$",
                             re.S)
# model_config.parse_config: Python's protobuf reading Triton's ModelConfig schema, not a Triton server.
PROTOBUF_PREFIX = "Error parsing text-format inference.ModelConfig: "
PROTOBUF = "Python's protobuf parser (reading Triton's ModelConfig schema; no server involved)"


@dataclass(frozen=True)
class Quote:
    """A message and who wrote it: `writer` said `words`."""

    writer: str
    words: str

    def __str__(self) -> str:
        writer = "The" + self.writer[3:] if self.writer.startswith("the ") else self.writer  # a line's start
        return f"{writer} said: {self.words}"


def quote(message: str, writer: str = "Triton") -> Quote:
    """Who wrote `message`: one of the course's runners (its words without the python backend's status and the
    runner's name), Python's protobuf parser, or else `writer` (Triton unless the caller knows better)."""
    runner = _RUNNER_MESSAGE.match(message)
    if runner:
        return Quote(RUNNERS[runner["tag"]], runner["words"])
    if message.startswith(PROTOBUF_PREFIX):
        return Quote(PROTOBUF, message[len(PROTOBUF_PREFIX):])
    return Quote(writer, message)


def suggest_fix(message: str) -> str:
    """The one-line fix for a Triton error message."""
    for pattern, fix in _FIXES:
        match = pattern.search(message)
        if match:
            return fix.format(**match.groupdict())
    return GENERIC_FIX


class CourseError(Exception):
    """Base of the course's errors: `what` happened, the message quoted (`triton_said`), and the `fix`.

    `source` names who wrote the quoted message when it is not Triton (a class default or a keyword);
    a message of the course's runner is recognised as theirs (see `quote`)."""

    source = "Triton"  # whose words triton_said quotes

    def __init__(self, what: str, *, triton_said: str | None = None, fix: str | None = None,
                 source: str | None = None):
        self.what = what
        self.triton_said = triton_said
        if source is not None:
            self.source = source
        self.fix = fix if fix is not None else (suggest_fix(triton_said) if triton_said else None)
        super().__init__(self._text())

    def _text(self) -> str:
        lines = [self.what]
        if self.triton_said:
            lines.append(str(quote(self.triton_said, self.source)))
        if self.fix:
            lines.append(f"Fix: {self.fix}")
        return "\n".join(lines)


class ServerStartError(CourseError):
    """The server process did not come up (or died while starting)."""


class PortInUseError(ServerStartError):
    """A port the server needs is taken."""

    def __init__(self, port: int, holder: str | None = None, triton_said: str | None = None):
        self.port = port
        who = f" by {holder}" if holder else ""
        super().__init__(
            f"Port {port} on this machine is already in use{who}.",
            triton_said=triton_said,
            fix=(f"Stop whatever holds port {port}, or leave the ports out "
                 "(the course then picks free ones) or pass other ones."),
        )


class DownloadError(CourseError):
    """pip could not fetch a package the course takes a file from; `triton_said` quotes pip."""

    source = "pip"


class ConfigError(CourseError):
    """A config.pbtxt that Triton's ModelConfig schema rejects."""


class InferenceError(CourseError):
    """A request the server refused."""


@dataclass
class ModelProblem:
    """One model that failed to load, with Triton's message and the fix."""

    model: str
    message: str

    @property
    def fix(self) -> str:
        return suggest_fix(self.message)

    def __str__(self) -> str:
        return f"Model '{self.model}' failed to load.\n  {quote(self.message)}\n  Fix: {self.fix}"


class ModelLoadError(CourseError):
    """One or more models failed to load; `problems` lists them."""

    def __init__(self, problems: list[ModelProblem]):
        self.problems = problems
        names = ", ".join(f"'{p.model}'" for p in problems)
        noun = "Model" if len(problems) == 1 else "Models"
        super().__init__(f"{noun} {names} failed to load.", fix=None)
        self.args = ("\n".join(str(p) for p in problems),)

    def __str__(self) -> str:
        return self.args[0]

    def problem(self, model: str) -> ModelProblem:
        for p in self.problems:
            if p.model == model:
                return p
        raise KeyError(model)


# A Triton log line: severity, date, time, thread, source:line] then the message, quoted in 2.51.
_LOG_LINE = re.compile(r'^[IWE]\d{4} [\d:.]+\s+\d+ \S+:\d+\]\s+(?P<msg>.*)$')
_MODEL_ERRORS = [
    re.compile(r"^Poll failed for model directory '(?P<model>[^']+)': (?P<msg>.*)$", re.S),
    re.compile(r"^failed to load model '(?P<model>[^']+)': (?P<msg>.*)$", re.S),
    re.compile(r"^failed to load '(?P<model>[^']+)' version \d+: (?P<msg>.*)$", re.S),
]
# The python backend stub dies before it reports to the server, which then waits forever.
_STUB_FATAL = re.compile(r"Failed to preinitialize Python stub: (?P<msg>.*'(?P<path>/[^']+)'.*)$")
_PROTOBUF_DETAIL = re.compile(r"Error parsing text-format inference\.ModelConfig: (?P<detail>.*)$")


def _log_message(line: str) -> str | None:
    match = _LOG_LINE.match(line.strip())
    if not match:
        return None
    msg = match.group("msg").strip()
    if msg.startswith('"') and msg.endswith('"'):
        try:
            return json.loads(msg)
        except ValueError:
            return msg[1:-1]
    return msg


def find_model_errors(log_text: str, repositories: list[str] | None = None) -> dict[str, str]:
    """Model name -> Triton's message, for every model the log says failed to load.

    `repositories` lets a stub failure (which names a file, not a model) be traced to its model.
    A protobuf parse error is joined to the "failed to read text proto" line that follows it.
    """
    errors: dict[str, str] = {}
    parse_detail = None
    for line in log_text.splitlines():
        detail = _PROTOBUF_DETAIL.search(line)
        if detail:
            parse_detail = detail.group("detail").strip()
            continue
        if _STUB_FATAL.search(line):
            continue  # read by stub_failures below
        msg = _log_message(line)
        if msg is None:
            continue
        for pattern in _MODEL_ERRORS:
            match = pattern.match(msg)
            if match:
                text = match.group("msg").strip()
                if "failed to read text proto" in text and parse_detail:
                    text = f"{text} ({parse_detail})"
                errors.setdefault(match.group("model"), text)
                parse_detail = None
                break
    for model, message in stub_failures(log_text, repositories or []).items():
        errors.setdefault(model, message)
    return errors


def stub_failures(log_text: str, repositories: list[str]) -> dict[str, str]:
    """Models whose python stub died before loading: the server would wait on them forever."""
    failures = {}
    for line in log_text.splitlines():
        stub = _STUB_FATAL.search(line)
        if stub:
            model = _model_from_path(stub.group("path"), repositories)
            if model:
                failures[model] = stub.group("msg").strip()
    return failures


def _model_from_path(path: str, repositories: list[str]) -> str | None:
    for repo in repositories:
        prefix = repo.rstrip("/") + "/"
        if path.startswith(prefix):
            return path[len(prefix):].split("/", 1)[0]
    return None


def from_client_exception(exc: Exception, what: str) -> CourseError:
    """Turn a tritonclient InferenceServerException into an InferenceError with a fix."""
    message = exc.message() if hasattr(exc, "message") and callable(exc.message) else str(exc)
    return InferenceError(what, triton_said=message)

"""Checks for lab 07b (Model Analyzer): the search space the learner writes in Model Analyzer's own keys
(read with Model Analyzer's own validator), and the config.pbtxt that deploys its choice."""

from __future__ import annotations

import logging

from google.protobuf import text_format

from ..errors import ConfigError
from ..model_config import ModelConfig, parse_config
from . import Verdict, failed, passed

# What exercise 1 asks for: brute search of one instance, max batch 1-2 and 1-2 clients (small enough for CI).
WANTED = {"run_config_search_mode": "brute", "run_config_search_max_instance_count": 1,
          "run_config_search_max_model_batch_size": 2, "run_config_search_max_concurrency": 2}
# Model Analyzer's defaults when a key is left out (docs/config_search.md, Automatic Brute Search).
DEFAULTS = {"run_config_search_max_instance_count": "1 to 5 instances",
            "run_config_search_max_model_batch_size": "max batch sizes 1, 2, 4, ... 128",
            "run_config_search_max_concurrency": "1, 2, 4, ... 1024 clients"}
MINIMUMS = {"run_config_search_min_instance_count": 1, "run_config_search_min_model_batch_size": 1,
            "run_config_search_min_concurrency": 1}


def _model_analyzer_says(key: str, value) -> str:
    """What Model Analyzer's own config code says about `key: value` ('' when it accepts it): its YAML
    validator for the key's name, then the key's own field for the value."""
    from model_analyzer.config.input.config_command_profile import ConfigCommandProfile
    from model_analyzer.config.input.yaml_config_validator import YamlConfigValidator
    from model_analyzer.constants import LOGGER_NAME
    from model_analyzer.model_analyzer_exceptions import TritonModelAnalyzerException

    said: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: said.append(record.getMessage())
    logger = logging.getLogger(LOGGER_NAME)
    logger.addHandler(handler)
    try:
        YamlConfigValidator.validate({key: value})
    except TritonModelAnalyzerException as exc:
        return " ".join(said + [str(exc)])
    finally:
        logger.removeHandler(handler)
    if not key.startswith("run_config_search_"):
        return ""  # refused below for another reason: not part of the search space
    status = ConfigCommandProfile()._fields[key]._field_type.set_value(value)
    return "" if status.status() else status.message()


def _configurations(search: dict) -> int:
    """How many model configs a brute search of this space writes: the model's own, plus one per
    instance count and power-of-two max batch size."""
    instances = int(search.get("run_config_search_max_instance_count", 5))
    batch, sizes = int(search.get("run_config_search_max_model_batch_size", 128)), 0
    while 2 ** sizes <= batch:
        sizes += 1
    return 1 + instances * sizes


def check_search(search) -> Verdict:
    """Exercise 1: the search-space part of Model Analyzer's config, as a dict of its own keys."""
    exercise = "Exercise 1 (the search space)"
    if not isinstance(search, dict):
        return failed(exercise, f"search must be a dict of Model Analyzer's keys, not {type(search).__name__}.")
    for key, value in search.items():
        said = _model_analyzer_says(str(key), value)
        if said:
            return failed(exercise, f"Model Analyzer refuses the key {key!r} (value {value!r}).",
                          f"Model Analyzer said: {said}",
                          hint="Its keys are listed in Model Analyzer's docs/config.md; the search keys all start "
                               "with run_config_search_.")
        if not str(key).startswith("run_config_search_"):
            return failed(exercise, f"{key!r} is a key Model Analyzer knows, but not part of the search space: "
                          "model_analyzer.profile writes the rest of the config (server, paths, model).",
                          hint="Keep only run_config_search_* keys in search.")
    problems = []
    mode = search.get("run_config_search_mode")
    if mode != "brute":
        problems.append(f"run_config_search_mode is {mode!r}: ask for 'brute', which tries every combination "
                        "('quick' and 'optuna' sample the space, which pays off when it is large).")
    for key, wanted in WANTED.items():
        if key == "run_config_search_mode":
            continue
        if key not in search:
            problems.append(f"{key} is missing: Model Analyzer would then try {DEFAULTS[key]}; the exercise asks "
                            f"for at most {wanted}.")
        elif search[key] != wanted:
            problems.append(f"{key} is {search[key]!r}; the exercise asks for {wanted}.")
    for key, lowest in MINIMUMS.items():
        if key in search and search[key] != lowest:
            problems.append(f"{key} is {search[key]!r}: leave it out (its default is {lowest}) so that the search "
                            "starts from the smallest value.")
    if "run_config_search_disable" in search and search["run_config_search_disable"]:
        problems.append("run_config_search_disable turns the automatic search off: leave it out.")
    if problems:
        return failed(exercise, *problems, hint="A dict of four keys: the mode and the three run_config_search_max_* "
                      "values the exercise gives.")
    return passed(exercise, f"Model Analyzer accepts these keys; a brute search of this space writes "
                  f"{_configurations(search)} configurations (the model's own included), each measured at "
                  f"{search['run_config_search_max_concurrency'].bit_length()} concurrencies.")


def check_deployable(config, chosen: ModelConfig, base: ModelConfig) -> Verdict:
    """Exercise 2: the learner's config.pbtxt (text or ModelConfig) for deploying Model Analyzer's choice:
    `base` (the learner's own model, for the onnxruntime backend) with the searched settings of `chosen`."""
    exercise = "Exercise 2 (deploying Model Analyzer's choice)"
    if isinstance(config, str):
        try:
            config = parse_config(config)
        except ConfigError as error:
            return failed(exercise, error.what, triton_said=error.triton_said or "", hint=error.fix or "")
    if not isinstance(config, ModelConfig):
        return failed(exercise, f"Pass a ModelConfig (or config.pbtxt text), not {type(config).__name__}.")
    problems = []
    if config.name != base.name:
        problems.append(f"name is {config.name!r}; the deployed model keeps its folder's name, {base.name!r}.")
    if config.backend == "python" or "onnx_model_filename" in config.parameters:
        problems.append("backend: python and the parameter onnx_model_filename are the course's runner on the "
                        "embedded server (Model Analyzer profiled that served copy): the deployed config keeps "
                        f"platform: {base.platform!r} and lets the onnxruntime backend serve model.onnx.")
    elif config.platform != base.platform:
        problems.append(f"platform is {config.platform!r}; the model is {base.platform!r}.")
    if config.max_batch_size != chosen.max_batch_size:
        problems.append(f"max_batch_size is {config.max_batch_size}; Model Analyzer's choice has "
                        f"{chosen.max_batch_size}.")
    if config.HasField("dynamic_batching") != chosen.HasField("dynamic_batching") or \
            config.dynamic_batching != chosen.dynamic_batching:
        want = text_format.MessageToString(chosen.dynamic_batching, as_one_line=True) \
            if chosen.HasField("dynamic_batching") else "none"
        problems.append(f"dynamic_batching differs from Model Analyzer's choice ({{ {want} }}).")
    groups = [(g.count, g.kind) for g in config.instance_group]
    wanted = [(g.count, g.kind) for g in chosen.instance_group]
    if groups != wanted:
        problems.append(f"instance_group is {_groups(config)}; Model Analyzer's choice has {_groups(chosen)}.")
    if list(config.input) != list(base.input) or list(config.output) != list(base.output):
        problems.append("the inputs and outputs changed: Model Analyzer does not change them; keep the model's own.")
    if problems:
        return failed(exercise, *problems, hint="Start from a copy of your own config (model_config.copy_config) and "
                      "copy max_batch_size, dynamic_batching and instance_group from Model Analyzer's config.")
    return passed(exercise, "your config is your model's own, with Model Analyzer's max_batch_size, dynamic_batching "
                  "and instance_group.")


def _groups(config: ModelConfig) -> str:
    text = "; ".join(text_format.MessageToString(g, as_one_line=True) for g in config.instance_group)
    return f"[{text}]" if text else "[] (none: Triton's default)"



def check_frontier(my_frontier, rows: list) -> Verdict:
    """Stretch exercise: `my_frontier(rows)` returns the rows no other row beats on both throughput and p99
    (in any order), here on the lab's own Model Analyzer rows."""
    from ..model_analyzer import frontier

    exercise = "Stretch exercise (the frontier)"
    if not callable(my_frontier):
        return failed(exercise, f"Pass your function itself (my_frontier), not {type(my_frontier).__name__}.")
    try:
        got = list(my_frontier(list(rows)))
    except Exception as exc:  # noqa: BLE001 - the learner's code: report what it raised
        return failed(exercise, f"Your function raised {type(exc).__name__}: {exc}")
    expected = frontier(rows)

    def describe(r):
        return f"{r.config} at {r.concurrency} client(s) ({r.throughput:.1f} infer/s, p99 {r.p99_ms:.1f} ms)"

    problems = []
    for r in got:
        if r not in expected:
            beaten_by = next((o for o in rows if o.p99_ms <= r.p99_ms and o.throughput > r.throughput), None)
            problems.append(f"{describe(r)} is not on the frontier" +
                            (f": {describe(beaten_by)} has more throughput at no more latency." if beaten_by else "."))
    for r in expected:
        if r not in got:
            problems.append(f"{describe(r)} is missing: no measurement has both a lower p99 and more throughput.")
    if problems:
        return failed(exercise, *problems[:3],
                      hint="Sort by p99; walking up, keep a row only when its throughput beats every row kept "
                           "before it.")
    return passed(exercise, "your frontier has the same points as the course's, on this lab's measurements.")


# --- the config as YAML text (exercise 1) -----------------------------------------------------------

PROFILED_MODEL, SHAPE = "efficientnet_lite0", "input:3,224,224"


def check_config(text, model_repository) -> Verdict:
    """Exercise 1: Model Analyzer's config as YAML text: the lab's `model_repository`, `triton_launch_mode: local`,
    the search space of WANTED (as `check_search` reads it), and `profile_models` naming the course model with
    `cpu_only: true` and the perf_analyzer flag `shape`. Each key is read with Model Analyzer's own validator."""
    import yaml

    exercise = "Exercise 1 (Model Analyzer's config)"
    if not isinstance(text, str):
        return failed(exercise, f"Write the config as YAML text (a string), not {type(text).__name__}.")
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        return failed(exercise, "The text is not valid YAML.", triton_said=str(exc),
                      hint="One `key: value` a line; nested keys indented with spaces under their parent.")
    if not isinstance(config, dict):
        return failed(exercise, "The config must be a YAML mapping of Model Analyzer's keys (`key: value` lines).")
    for key, value in config.items():
        said = _model_analyzer_says(str(key), value)
        if said:
            indent = (f" {key} is the model: indent it under profile_models, and its settings under it."
                      if key == PROFILED_MODEL else "")
            return failed(exercise, f"Model Analyzer refuses the key {key!r}.{indent}", f"Model Analyzer said: {said}",
                          hint="Its keys are listed in Model Analyzer's docs/config.md, spelt with underscores.")
    problems = []
    if "model_repository" not in config:
        problems.append("model_repository is missing: Model Analyzer needs the repository whose model it profiles.")
    elif str(config["model_repository"]).rstrip("/") != str(model_repository).rstrip("/"):
        problems.append(f"model_repository is {config['model_repository']!r}; the lab's repository is "
                        f"{str(model_repository)!r}.")
    mode = config.get("triton_launch_mode")
    if mode != "local":
        problems.append(f"triton_launch_mode is {mode!r}: write local, so that Model Analyzer starts tritonserver "
                        "itself (docker needs a Docker engine; remote measures a server you started).")
    search = {k: v for k, v in config.items() if str(k).startswith("run_config_search_")}
    searched = check_search(search)
    if not searched.ok:
        problems += searched.problems
    models = config.get("profile_models")
    if not isinstance(models, dict) or PROFILED_MODEL not in models:
        problems.append(f"profile_models must name the model {PROFILED_MODEL!r} as a key, with its settings under "
                        "it (cpu_only, perf_analyzer_flags).")
    else:
        settings = models[PROFILED_MODEL] or {}
        if settings.get("cpu_only") is not True:
            problems.append(f"cpu_only is {settings.get('cpu_only')!r} for {PROFILED_MODEL}: write cpu_only: true, "
                            "or Model Analyzer writes GPU instance groups this machine cannot serve.")
        flags = settings.get("perf_analyzer_flags") or {}
        if flags.get("shape") != SHAPE:
            problems.append(f"perf_analyzer_flags has shape {flags.get('shape')!r}: perf_analyzer must be told "
                            f"the input's shape without the batch dimension, {SHAPE}.")
    if problems:
        return failed(exercise, *problems, hint="Start from lesson 7b's config and change the search keys.")
    return passed(exercise, f"Model Analyzer accepts every key; it will start tritonserver itself and profile "
                  f"{PROFILED_MODEL} on the CPU: {_configurations(search)} configurations (the model's own "
                  f"included), each at {search['run_config_search_max_concurrency'].bit_length()} concurrencies.")


# --- a perf_analyzer command line (exercise 3 here, and lab 08) --------------------------------------

def _perf_tokens(command) -> list[str] | None:
    import shlex

    if isinstance(command, str):
        return shlex.split(command.replace("\\\n", " "))
    if isinstance(command, (list, tuple)) and all(isinstance(t, str) for t in command):
        return list(command)
    return None


def _perf_flags(tokens: list[str]) -> dict[str, str | None]:
    """perf_analyzer's flags as {name: value}: `-m x`, `--flag x` and `--flag=x` alike."""
    flags: dict[str, str | None] = {}
    i = 1
    while i < len(tokens):
        token = tokens[i]
        if token.startswith("-"):
            name, eq, value = token.lstrip("-").partition("=")
            if not eq and i + 1 < len(tokens) and not tokens[i + 1].startswith("-"):
                value, i = tokens[i + 1], i + 1
            flags[name] = value if (eq or value) else None
        i += 1
    return flags


LONG_NAMES = {"m": "model-name", "u": "url", "i": "protocol", "f": "latency-report-file", "b": "batch-size",
              "p": "measurement-interval", "s": "stability-percentage"}


def check_perf_analyzer_command(command, *, model: str, url: str, concurrency: int, exercise: str,
                                shape: str = SHAPE) -> Verdict:
    """A perf_analyzer command line that measures `model` at `url` over gRPC with `concurrency` clients, the
    input `shape`, and a CSV report (-f) the lab reads. Names each flag that is missing or wrong."""
    tokens = _perf_tokens(command)
    if not tokens:
        return failed(exercise, "Write the command as one string, e.g. \"perf_analyzer -m MODEL -u HOST:PORT ...\".")
    if not tokens[0].endswith("perf_analyzer"):
        return failed(exercise, f"The command starts with {tokens[0]!r}; it starts with perf_analyzer.")
    flags = {LONG_NAMES.get(k, k): v for k, v in _perf_flags(tokens).items()}
    problems = []
    if flags.get("model-name") != model:
        problems.append(f"-m is {flags.get('model-name')!r}; the model to measure is {model!r}.")
    if flags.get("url") != url:
        problems.append(f"-u is {flags.get('url')!r}; the server's gRPC address is {url} (host:port, no http://).")
    if flags.get("protocol") != "grpc":
        problems.append(f"-i is {flags.get('protocol')!r}: write -i grpc (perf_analyzer speaks HTTP unless told), "
                        "to match the gRPC address.")
    wanted = f"{concurrency}:{concurrency}"
    got = flags.get("concurrency-range")
    if got is None:
        problems.append(f"--concurrency-range is missing: perf_analyzer then measures 1 client; write {wanted}.")
    elif got not in (wanted, str(concurrency), f"{concurrency}:{concurrency}:1"):
        problems.append(f"--concurrency-range is {got!r}; the exercise asks for {concurrency} clients only: {wanted}.")
    if flags.get("shape") != shape:
        problems.append(f"--shape is {flags.get('shape')!r}: the input has a variable batch dimension, so "
                        f"perf_analyzer needs the rest of its shape: --shape {shape}.")
    if not flags.get("latency-report-file"):
        problems.append("-f is missing: it writes the CSV report the next cell reads.")
    if problems:
        return failed(exercise, *problems, hint="perf_analyzer --help lists every flag; lesson 7 explains the report.")
    return passed(exercise, f"perf_analyzer will measure {model} at {url} over gRPC with {concurrency} clients and "
                  f"write its report to {flags['latency-report-file']}.")

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

"""An editor for config.pbtxt in the notebook: checked as you type, tried on a real Triton with a button.

    editor = ConfigEditor(repo / "my_model")
    editor            # shows the widget: the text, what is wrong with it, "Try loading" and "Save"

As you type, the text is parsed with Triton's own ModelConfig schema (a parse error is shown at its
line and column), and its tensors are compared with the model's ONNX file where there is one.
"Try loading" writes the text into a scratch copy of the model's folder and loads it on a real
Triton server (explicit model control, started on first use): the verdict is Triton's own, with
the model's metadata when it loads. "Save" writes config.pbtxt, keeping the previous file as a
backup. The widget's callbacks only call `validate`, `try_loading` and `save`, which tests and
notebooks call directly.
"""

from __future__ import annotations

import contextlib
import html
import io
import os
import re
import shutil
from pathlib import Path

from .errors import ConfigError, CourseError, ModelLoadError, quote, suggest_fix
from .model_config import ModelConfig, config_from_onnx, mc, parse_config
from .paths import workspace_dir
from .permissions import readable_by_server
from .repository import write_file

_POSITION = re.compile(r"Error parsing text-format inference\.ModelConfig: (?P<line>\d+):(?P<column>\d+) : "
                       r"(?:'.*?': )?(?P<message>.*)$", re.S)
_ONNX_CACHE: dict[tuple[str, float], tuple[dict, dict]] = {}


def parse_problem(text: str) -> str | None:
    """None when `text` parses as a ModelConfig; otherwise where and why not, with the line marked."""
    try:
        parse_config(text)
    except ConfigError as error:
        said = error.triton_said or str(error)
        match = _POSITION.search(said)
        if not match:
            return f"{said}\nFix: {error.fix}"
        line, column = int(match["line"]), int(match["column"])
        lines = text.splitlines()
        shown = lines[line - 1] if 0 < line <= len(lines) else ""
        return (f"line {line}, column {column}: {match['message']}\n"
                f"  {shown}\n  {' ' * max(column - 1, 0)}^\n"
                f"Fix: {error.fix}")
    return None


def onnx_tensors(onnx_path: str | Path) -> tuple[dict, dict]:
    """The ONNX model's inputs and outputs: name -> (full shape, -1 for a free dimension; Triton datatype)."""
    path = Path(onnx_path)
    key = (str(path.resolve()), path.stat().st_mtime)
    if key not in _ONNX_CACHE:
        probe = config_from_onnx(path, "probe", max_batch_size=0)
        _ONNX_CACHE[key] = tuple({t.name: (list(t.dims), mc.DataType.Name(t.data_type)) for t in tensors}
                                 for tensors in (probe.input, probe.output))
    return _ONNX_CACHE[key]


def onnx_mismatches(config: ModelConfig, onnx_path: str | Path) -> list[str]:
    """How the config's tensors disagree with the ONNX model's (names, datatypes, the batch dimension)."""
    inputs, outputs = onnx_tensors(onnx_path)
    problems = []
    for kind, configured, actual in (("input", config.input, inputs), ("output", config.output, outputs)):
        for t in configured:
            if t.name not in actual:
                problems.append(f"{kind} '{t.name}' is not a tensor of the ONNX model: its {kind}s are named "
                                f"{', '.join(repr(n) for n in actual)} (names are case-sensitive).")
                continue
            shape, data_type = actual[t.name]
            dims = list(t.dims)
            if mc.DataType.Name(t.data_type) != data_type:
                problems.append(f"{kind} '{t.name}' has data_type {mc.DataType.Name(t.data_type)}; "
                                f"the model's is {data_type}.")
            if config.max_batch_size > 0 and len(dims) == len(shape):
                problems.append(f"{kind} '{t.name}' dims {dims} still include the batch dimension: with "
                                f"max_batch_size {config.max_batch_size} Triton adds it itself, so write "
                                f"dims: {shape[1:]}.")
            elif config.max_batch_size == 0 and len(dims) == len(shape) - 1:
                problems.append(f"{kind} '{t.name}' dims {dims} lack the batch dimension: with max_batch_size 0 "
                                f"dims are the whole shape, {shape}.")
            elif len(dims) not in (len(shape), len(shape) - 1):
                problems.append(f"{kind} '{t.name}' dims {dims} have {len(dims)} dimensions; the model's shape "
                                f"{shape} has {len(shape)}.")
    return problems


def _latest_onnx(model_dir: Path, config: ModelConfig) -> Path | None:
    """The ONNX file of the highest version folder, where there is one the server could read."""
    filename = config.parameters["onnx_model_filename"].string_value if "onnx_model_filename" in config.parameters \
        else (config.default_model_filename or "model.onnx")
    versions = sorted((p for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))
    for version in reversed(versions):
        candidate = version / filename
        if candidate.exists() and readable_by_server(candidate) and candidate.suffix == ".onnx":
            return candidate
    return None


class ConfigEditor:
    """A model folder's config.pbtxt in a text box, checked as you type and tried on a real server."""

    def __init__(self, model_dir: str | Path, *, runtime: str = "auto", scratch: str | Path | None = None,
                 text: str | None = None):
        import ipywidgets as widgets

        self.model_dir = Path(model_dir).resolve()
        if not self.model_dir.is_dir():
            raise CourseError(f"{self.model_dir} is not a model folder.",
                                   fix="Pass the folder that holds config.pbtxt and the version folders.")
        self.model = self.model_dir.name
        self.config_path = self.model_dir / "config.pbtxt"
        self.scratch = Path(scratch) if scratch else workspace_dir() / "config_editor" / self.model
        self.runtime = runtime
        self.server = None  # started on the first try: explicit model control on the scratch repository
        if text is None:
            text = self.config_path.read_text() if self.config_path.exists() else f'name: "{self.model}"\n'
        self.problems: list[str] = []
        self.verdict = ""
        self.text = widgets.Textarea(value=text, layout=widgets.Layout(width="100%", height="20em"))
        self.checks = widgets.HTML()
        self.try_button = widgets.Button(description="Try loading", button_style="primary",
                                         tooltip="Load this text on a real Triton (a scratch copy of the model)")
        self.save_button = widgets.Button(description="Save to config.pbtxt",
                                          tooltip="Write config.pbtxt; the previous file is kept as a .bak")
        self.result = widgets.HTML()
        self.text.observe(lambda change: self.validate(), names="value")
        self.try_button.on_click(lambda _: self._run(self.try_loading))
        self.save_button.on_click(lambda _: self._run(self.save))
        self.widget = widgets.VBox([
            widgets.HTML(f"<b>{html.escape(str(self.config_path))}</b>"), self.text, self.checks,
            widgets.HBox([self.try_button, self.save_button]), self.result])
        self.validate()

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)

    def _run(self, action) -> None:
        """A button's work: the buttons are off meanwhile, and an unexpected error is shown, not lost."""
        self.try_button.disabled = self.save_button.disabled = True
        self.result.value = "<i>working...</i>"
        try:
            action()
        except Exception as exc:  # noqa: BLE001 - shown to the learner; the editor stays usable
            self._show_result(f"Something went wrong: {exc}")
        finally:
            self.try_button.disabled = self.save_button.disabled = False

    def _show_result(self, text: str) -> None:
        self.verdict = text
        self.result.value = f"<pre style='white-space: pre-wrap'>{html.escape(text)}</pre>"

    # --- as you type -------------------------------------------------------------------------------
    def validate(self) -> list[str]:
        """What is wrong with the text, by Triton's schema and the model's own files; [] when nothing."""
        text = self.text.value
        parse = parse_problem(text)
        if parse:
            self.problems = [f"Does not parse as a ModelConfig: {parse}"]
        else:
            self.problems = self._semantic_problems(parse_config(text))
        if self.problems:
            items = "".join(f"<li><pre style='white-space: pre-wrap; margin: 0'>{html.escape(p)}</pre></li>"
                            for p in self.problems)
            self.checks.value = f"<span style='color: #b00'>Problems:</span><ul>{items}</ul>"
        else:
            self.checks.value = ("<span style='color: #070'>Parses as a ModelConfig, and agrees with the model "
                                 "file where the course can tell. Only Triton can say more: Try loading.</span>")
        return self.problems

    def _semantic_problems(self, config: ModelConfig) -> list[str]:
        problems = []
        if config.name and config.name != self.model:
            problems.append(f"name '{config.name}' differs from the model's folder '{self.model}': Triton refuses "
                            "a model whose name is not its folder's; make them the same (or leave name out).")
        if not any(p.is_dir() and p.name.isdigit() for p in self.model_dir.iterdir()):
            problems.append("the model's folder has no numbered version folder (1/, 2/, ...): Triton would find "
                            "no version to load." + (" An ensemble needs one too, empty." if config.platform ==
                                                     "ensemble" else " Put the model file into 1/."))
        if config.platform == "onnxruntime_onnx" or config.backend == "onnxruntime" or (
                config.backend == "python" and "onnx_model_filename" in config.parameters):
            onnx = _latest_onnx(self.model_dir, config)
            if onnx is not None:
                problems += onnx_mismatches(config, onnx)
        if config.max_batch_size < 0:
            problems.append(f"max_batch_size {config.max_batch_size} is negative: use 0 (no batching) or more.")
        return problems

    # --- on a real server --------------------------------------------------------------------------
    def scratch_copy(self) -> Path:
        """The model folder with the editor's text as config.pbtxt, in the scratch repository.
        Model files are hard links (copies across file systems): the learner's files are never written."""
        target = self.scratch / self.model
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        for item in self.model_dir.iterdir():
            if item.name == "config.pbtxt" or item.name.endswith(".bak"):
                continue
            if item.is_dir():
                shutil.copytree(item, target / item.name, copy_function=_link_or_copy)
                shutil.copymode(item, target / item.name)  # an unreadable folder stays unreadable
            else:
                _link_or_copy(item, target / item.name)
        (target / "config.pbtxt").write_text(self.text.value)
        return target

    def _server(self):
        if self.server is None or not self.server.is_running:
            from . import server as make_server

            self.scratch.mkdir(parents=True, exist_ok=True)
            self.server = make_server(self.scratch, self.runtime, model_control_mode="explicit", strict=False)
            self.server.start()
        return self.server

    def try_loading(self) -> str:
        """Load the text on a real Triton; Triton's verdict as text (also shown in the widget)."""
        self.scratch_copy()
        server = self._server()
        try:
            server.load_model(self.model)
        except ModelLoadError as error:
            said = error.problems[0].message if error.problems else str(error)
            # The scratch copy's files are the learner's own (hard links), its config.pbtxt the editor's text.
            copy = str(self.scratch.resolve() / self.model)
            said = said.replace(f"{copy}/config.pbtxt", "the editor's text").replace(copy, str(self.model_dir))
            self._show_result(f"Triton did not load '{self.model}'.\n  {quote(said)}\n  Fix: {suggest_fix(said)}")
            return self.verdict
        with server.http_client() as client:
            metadata = client.get_model_metadata(self.model)
        rows = [f"  {kind:6} {t['name']:12} {t['datatype']:6} {t['shape']}"
                for kind, key in (("input", "inputs"), ("output", "outputs")) for t in metadata.get(key, [])]
        versions = metadata.get("versions", [])
        self._show_result(f"Triton loaded '{self.model}' (version{'s' if len(versions) > 1 else ''} "
                          f"{', '.join(versions)}) from this text. Its metadata:\n" + "\n".join(rows))
        return self.verdict

    def save(self) -> str:
        """Write the text to config.pbtxt if it parses; the previous file is kept as NAME.<time>.bak."""
        parse = parse_problem(self.text.value)
        if parse:
            self._show_result(f"Not saved: the text does not parse.\n{parse}")
            return self.verdict
        with contextlib.redirect_stdout(io.StringIO()):  # write_file prints the backup's name; we show it below
            backup = write_file(self.config_path, self.text.value)
        kept = f" Your previous file is kept as {backup.name}." if backup else " (It had the same text already.)"
        self._show_result(f"Saved {self.config_path}.{kept}")
        return self.verdict

    def close(self) -> None:
        """Stop the editor's server (if it started one)."""
        if self.server is not None:
            self.server.stop()
            self.server = None

    def __enter__(self) -> "ConfigEditor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _link_or_copy(source, target) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)

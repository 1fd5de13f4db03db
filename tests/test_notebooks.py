"""Static checks of the committed notebooks (nbval re-runs them; these catch what it cannot)."""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
MARKERS = ("# NBVAL_IGNORE_OUTPUT", "# NBVAL_SKIP", "# NBVAL_CHECK_OUTPUT", "# NBVAL_RAISES_EXCEPTION")


def code_cells(path):
    return [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_nbval_markers_stand_alone_on_their_line(path):
    # nbval only honours a marker that is the whole line: "# NBVAL_IGNORE_OUTPUT (why)" is ignored.
    for cell in code_cells(path):
        for line in "".join(cell["source"]).splitlines():
            if "NBVAL_" in line:
                assert line.strip() in MARKERS, f"{path.name}: put the reason on the next line: {line!r}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_with_outputs_run_in_order_without_errors(path):
    cells = [c for c in code_cells(path) if "".join(c["source"]).strip()]
    counts = [c["execution_count"] for c in cells]
    assert None not in counts, f"{path.name}: some cells were never run"
    assert counts == list(range(1, len(counts) + 1)), f"{path.name}: re-run it top to bottom"
    errors = [o for c in cells for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert not errors, f"{path.name}: stored error output"


LESSON_NAME = re.compile(r"(?P<number>\d\d)(?P<letter>[a-z]?)_[a-z0-9_]+\.ipynb$")  # NN_topic or NNx_topic


def test_lessons_are_numbered_in_sequence():
    # A lesson added between two others takes a letter (07b after 07), so the others keep their numbers.
    names = [LESSON_NAME.match(p.name) for p in NOTEBOOKS]
    assert all(names), f"name every lesson NN_topic.ipynb or NNx_topic.ipynb: {[p.name for p in NOTEBOOKS]}"
    prefixes = [m["number"] + m["letter"] for m in names]
    assert len(set(prefixes)) == len(prefixes), f"two lessons share a prefix: {sorted(prefixes)}"
    numbers = sorted({int(m["number"]) for m in names})
    assert numbers == list(range(len(numbers))), f"lesson numbers must run 00, 01, ... without gaps: {numbers}"
    lettered = [m["number"] + m["letter"] for m in names if m["letter"]]
    unnumbered = [p for p in lettered if p[:2] not in {m["number"] for m in names if not m["letter"]}]
    assert not unnumbered, f"a lettered lesson must follow the lesson of its number: {unnumbered}"


# The course's core lessons are taught by writing Triton, not by watching helpers (issue #31): each has
# config.pbtxt text the learner edits, a tritonclient request in a cell, and a literal perf_analyzer command.
HANDS_ON = ["05_dynamic_batching", "06_instance_groups", "07_benchmarking", "07b_model_analyzer", "08_tensorrt",
            "16_language_model"]
STRING_LITERAL = re.compile(r'(?s)("""|\'\'\')(?P<text>.*?)\1')
TRITONCLIENT_CALL = re.compile(r"\bInferInput\(.*?\b(infer|async_infer|async_stream_infer)\(", re.S)
PERF_ANALYZER_LINE = re.compile(r"perf_analyzer\s[^\n]*-m\s")
LONGEST_OUTPUT = 45  # lines: "about 40"; long logs go to a file and the cell prints what matters


def config_texts(source: str) -> list[str]:
    """The string literals of a cell that parse as a Triton ModelConfig and name a model or its batching."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    texts = []
    magic, _, body = source.partition("\n")
    candidates = [body] if magic.startswith("%%writefile") and magic.rstrip().endswith(".pbtxt") else []
    candidates += [literal["text"] for literal in STRING_LITERAL.finditer(source)]
    for candidate in candidates:
        text = re.sub(r"\{[A-Za-z_][\w.]*\}", "0", candidate)  # an f-string's {placeholder} stands for a value
        try:
            config = text_format.Parse(text, model_config_pb2.ModelConfig())
        except text_format.ParseError:
            continue
        if config.ListFields():
            texts.append(candidate)
    return texts


@pytest.mark.parametrize("name", HANDS_ON)
def test_core_lessons_show_the_config_text_the_client_call_and_the_perf_analyzer_command(name):
    sources = ["".join(c["source"]) for c in code_cells(ROOT / "notebooks" / f"{name}.ipynb")]
    assert any(config_texts(s) for s in sources), f"{name}: no cell holds config.pbtxt text the learner edits"
    assert any(TRITONCLIENT_CALL.search(s) for s in sources), f"{name}: no tritonclient InferInput + infer in a cell"
    assert any(PERF_ANALYZER_LINE.search(s) for s in sources), f"{name}: no literal perf_analyzer command line"


@pytest.mark.parametrize("name", HANDS_ON)
def test_core_lessons_keep_each_output_readable(name):
    for index, cell in enumerate(code_cells(ROOT / "notebooks" / f"{name}.ipynb")):
        lines = sum("".join(o.get("text", "")).count("\n") for o in cell.get("outputs", []))
        assert lines <= LONGEST_OUTPUT, f"{name}, code cell {index}: {lines} output lines; send the log to a file"


def test_the_hands_on_check_tells_config_text_from_other_strings():
    cell = 'text = """\nname: "m"\nmax_batch_size: 8\ndynamic_batching { }\n"""\nprint("""not a config""")'
    assert config_texts(cell) == ['\nname: "m"\nmax_batch_size: 8\ndynamic_batching { }\n']
    assert config_texts('print("""hello world""")') == []
    assert config_texts('%%writefile repo/m/config.pbtxt\nname: "m"\ninstance_group [ { count: 2 } ]\n')
    assert TRITONCLIENT_CALL.search('x = grpcclient.InferInput("input", [1], "FP32")\nclient.infer("m", [x])')
    assert not TRITONCLIENT_CALL.search("loadgen.sweep(server.grpc_address, x)")
    assert PERF_ANALYZER_LINE.search("!perf_analyzer -m batched -u 127.0.0.1:8001 -i grpc")
    assert not PERF_ANALYZER_LINE.search("perf_analyzer.measure(url, model='m')")

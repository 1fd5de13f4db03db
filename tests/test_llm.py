"""Lesson 16's language model: the request checks of the course's vLLM-contract model, and its engine (one
batched step gives each sequence what it would get alone; stop strings; seeds)."""

from __future__ import annotations

import pytest

from triton_course import llm
from triton_course.streaming_models.llm_engine import Engine, RequestError, sampling_parameters

CONTEXT = 8192


@pytest.mark.parametrize("raw, words", [
    ("{temperature: 0}", "sampling_parameters is not JSON"),
    ('["temperature"]', "must be a JSON object"),
    ('{"temprature": 0}', "unknown key(s) ['temprature']"),
    ('{"temperature": -1}', "temperature must be >= 0"),
    ('{"top_p": 0}', "top_p must be in (0, 1]"),
    ('{"max_tokens": 8193}', "between 1 and the model's context of 8192"),
    ('{"max_tokens": "many"}', "sampling_parameters: invalid literal"),
    ('{"stop": [""]}', "stop must be a string or a list of non-empty strings"),
])
def test_bad_sampling_parameters_name_the_field(raw, words):
    with pytest.raises(RequestError, match=None) as caught:
        sampling_parameters(raw, CONTEXT)
    assert words in str(caught.value)


def test_sampling_parameters_take_vllm_defaults_and_strings():
    assert sampling_parameters(None, CONTEXT) == llm_defaults()
    params = sampling_parameters(b'{"temperature": "0", "max_tokens": 5, "stop": "five"}', CONTEXT)
    assert params["temperature"] == 0 and params["max_tokens"] == 5 and params["stop"] == ["five"]


def llm_defaults():
    from triton_course.streaming_models.llm_engine import SAMPLING_DEFAULTS

    return dict(SAMPLING_DEFAULTS)


@pytest.fixture(scope="module")
def engine():
    return Engine(str(llm.ensure_weights()))


def prompt(question):
    return llm.chat_prompt([{"role": "user", "content": question}])


def run(engine, sequences):
    while any(s.finish_reason is None for s in sequences):
        engine.step([s for s in sequences if s.finish_reason is None])
    return [s.text for s in sequences]


def greedy(engine, question, **params):
    return engine.new_sequence(prompt(question), sampling_parameters(
        __import__("json").dumps({"temperature": 0, "max_tokens": 20, **params}), engine.max_context))


def test_batched_steps_give_each_sequence_its_own_answer(engine):
    questions = ["What is the capital of France?", "Name a fruit.", "Write a long story about a robot."]
    alone = [run(engine, [greedy(engine, q)])[0] for q in questions]
    # started at different steps, so their caches differ in length when they are batched
    first = greedy(engine, questions[2])
    engine.step([first])
    engine.step([first])
    together = [greedy(engine, q) for q in questions[:2]] + [first]
    assert run(engine, together) == alone
    assert alone[0] == "The capital of France is Paris."


def test_stop_string_ends_the_answer_and_is_left_out(engine):
    full = run(engine, [greedy(engine, "Name the days of the week.", max_tokens=24)])[0]
    assert "Friday" in full
    stopped = greedy(engine, "Name the days of the week.", max_tokens=24, stop=["Friday"])
    assert run(engine, [stopped])[0] == full[:full.index("Friday")] and stopped.finish_reason == "stop"


def test_max_tokens_and_seed(engine):
    short = greedy(engine, "Write a long story about a robot.", max_tokens=3)
    run(engine, [short])
    assert len(short.tokens) == 3 and short.finish_reason == "length"
    sampled = [greedy(engine, "Name a fruit.", temperature=0.9, seed=7) for _ in range(2)]
    texts = run(engine, sampled)
    assert texts[0] == texts[1]


def test_empty_prompt_and_context_are_refused(engine):
    with pytest.raises(RequestError, match="text_input is empty"):
        engine.new_sequence("  ", sampling_parameters(None, engine.max_context))
    with pytest.raises(RequestError, match="exceed the model's context"):
        engine.new_sequence(prompt("hi"), dict(llm_defaults(), max_tokens=engine.max_context))

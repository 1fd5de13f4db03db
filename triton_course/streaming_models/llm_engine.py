"""The language model behind lesson 16's Triton model: SmolLM2-135M-Instruct run with `transformers`.

One `Sequence` per request: its prompt's token ids, its own KV cache and its sampling parameters.
`Engine.step(sequences)` moves every sequence one token forward in ONE forward pass: a sequence without a
cache is prefilled (its whole prompt), the others decode their last token together, their caches padded on
the left to one length (the attention mask hides the padding) and cut apart again afterwards. That single
batched step is what in-flight batching schedules: any set of sequences, at any point of their answers.

This file is the course's, not NVIDIA's: the vLLM backend runs vLLM's engine (paged attention, CUDA graphs);
this one runs plain transformers so that the same client contract works on a 2-core CPU machine.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import torch

# The vLLM backend's sampling_parameters are vLLM's SamplingParams; these are the ones this engine honours,
# with vLLM's defaults (temperature 1.0 samples: send 0 for the most likely token each step).
SAMPLING_DEFAULTS = {"temperature": 1.0, "top_p": 1.0, "max_tokens": 16, "stop": [], "seed": None}


class RequestError(ValueError):
    """A request the model refuses: the message names the field and says what would be accepted."""


def sampling_parameters(raw: str | bytes | None, max_context: int) -> dict:
    """The request's sampling_parameters (a JSON object, as the vLLM backend takes them), checked."""
    params = dict(SAMPLING_DEFAULTS)
    if raw in (None, b"", ""):
        return params
    text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    try:
        given = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RequestError(f"sampling_parameters is not JSON ({exc.msg} at character {exc.pos}): "
                           f"send an object such as {{\"temperature\": 0, \"max_tokens\": 32}}") from None
    if not isinstance(given, dict):
        raise RequestError(f"sampling_parameters must be a JSON object, got {type(given).__name__}")
    unknown = sorted(set(given) - set(SAMPLING_DEFAULTS))
    if unknown:
        raise RequestError(f"sampling_parameters has unknown key(s) {unknown}; this model takes "
                           f"{sorted(SAMPLING_DEFAULTS)}")
    params.update(given)
    try:
        params["temperature"] = float(params["temperature"])
        params["top_p"] = float(params["top_p"])
        params["max_tokens"] = int(params["max_tokens"])
    except (TypeError, ValueError) as exc:
        raise RequestError(f"sampling_parameters: {exc}") from None
    if params["temperature"] < 0:
        raise RequestError(f"temperature must be >= 0 (0 = greedy), got {params['temperature']}")
    if not 0 < params["top_p"] <= 1:
        raise RequestError(f"top_p must be in (0, 1], got {params['top_p']}")
    if not 1 <= params["max_tokens"] <= max_context:
        raise RequestError(f"max_tokens must be between 1 and the model's context of {max_context} tokens, "
                           f"got {params['max_tokens']}")
    stop = params["stop"]
    params["stop"] = [stop] if isinstance(stop, str) else list(stop or [])
    if not all(isinstance(s, str) and s for s in params["stop"]):
        raise RequestError(f"stop must be a string or a list of non-empty strings, got {stop!r}")
    return params


@dataclass
class Sequence:
    """One request's answer in progress."""
    prompt_ids: list[int]
    params: dict
    tokens: list[int] = field(default_factory=list)  # generated so far
    text: str = ""  # the generated tokens decoded (stop strings cut off)
    cache: list | None = None  # per layer (keys, values), each [1, heads, length, dim]
    finish_reason: str | None = None  # "stop" (end token or a stop string) or "length"
    generator: torch.Generator | None = None

    @property
    def length(self) -> int:
        return len(self.prompt_ids) + len(self.tokens)


class Engine:
    def __init__(self, folder: str, device: str = "cpu"):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.device = torch.device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).to(self.device).eval()
        self.max_context = int(self.model.config.max_position_embeddings)
        eos = self.model.generation_config.eos_token_id
        self.end_ids = set(eos if isinstance(eos, list) else [eos])

    def new_sequence(self, prompt: str, params: dict) -> Sequence:
        if not prompt.strip():
            raise RequestError("text_input is empty: send the prompt text (for a chat model, the chat template "
                               "applied to the messages)")
        ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        if len(ids) + params["max_tokens"] > self.max_context:
            raise RequestError(f"the prompt's {len(ids)} tokens plus max_tokens {params['max_tokens']} exceed "
                               f"the model's context of {self.max_context} tokens")
        generator = None
        if params["seed"] is not None:
            generator = torch.Generator().manual_seed(int(params["seed"]))
        return Sequence(ids, params, generator=generator)

    @torch.inference_mode()
    def step(self, sequences: list[Sequence]) -> list[str]:
        """One new token for each sequence; returns the text each one added (may be "" while a multi-byte
        character is incomplete, or when a stop string is being matched)."""
        logits: dict[int, torch.Tensor] = {}
        for i, seq in enumerate(sequences):  # prefill: new sequences, one forward each (prompts differ in length)
            if seq.cache is None:
                out = self.model(input_ids=torch.tensor([seq.prompt_ids], device=self.device), use_cache=True)
                seq.cache = [(layer.keys, layer.values) for layer in out.past_key_values.layers]
                logits[i] = out.logits[0, -1]
        decoding = [i for i, seq in enumerate(sequences) if i not in logits]
        if decoding:
            logits.update(zip(decoding, self._decode([sequences[i] for i in decoding]), strict=True))
        return [self._advance(sequences[i], logits[i]) for i in range(len(sequences))]

    def _decode(self, sequences: list[Sequence]) -> list[torch.Tensor]:
        """The last token of each sequence through the model together: caches left-padded to one length."""
        from transformers import DynamicCache

        lengths = [seq.length - 1 for seq in sequences]  # what each cache holds
        longest = max(lengths)
        layers = []
        for layer in range(len(sequences[0].cache)):
            keys, values = [], []
            for seq, length in zip(sequences, lengths, strict=True):
                k, v = seq.cache[layer]
                pad = (0, 0, longest - length, 0)  # on the left of the length axis
                keys.append(torch.nn.functional.pad(k, pad))
                values.append(torch.nn.functional.pad(v, pad))
            layers.append((torch.cat(keys), torch.cat(values)))
        mask = torch.zeros(len(sequences), longest + 1, dtype=torch.long, device=self.device)
        for row, length in enumerate(lengths):
            mask[row, longest - length:] = 1
        out = self.model(input_ids=torch.tensor([[seq.tokens[-1]] for seq in sequences], device=self.device),
                         attention_mask=mask, position_ids=torch.tensor([[n] for n in lengths], device=self.device),
                         past_key_values=DynamicCache(ddp_cache_data=layers), use_cache=True)
        merged = [(layer.keys, layer.values) for layer in out.past_key_values.layers]
        for row, (seq, length) in enumerate(zip(sequences, lengths, strict=True)):
            start = longest - length  # drop the padding again
            seq.cache = [(k[row:row + 1, :, start:], v[row:row + 1, :, start:]) for k, v in merged]
        return list(out.logits[:, -1])

    def _advance(self, seq: Sequence, logits: torch.Tensor) -> str:
        token = self._sample(logits.float().cpu(), seq.params, seq.generator)
        if token in self.end_ids:
            seq.finish_reason = "stop"
            return ""
        seq.tokens.append(token)
        text = self.tokenizer.decode(seq.tokens, skip_special_tokens=True)
        if text.endswith("\ufffd"):  # half of a multi-byte character: wait for the rest
            text = text[:-1]
        for stop in seq.params["stop"]:
            at = text.find(stop, max(0, len(seq.text) - len(stop)))
            if at != -1:  # the stop string is not part of the answer (as in vLLM)
                seq.finish_reason, text = "stop", text[:at]
                break
        if seq.finish_reason is None and len(seq.tokens) >= seq.params["max_tokens"]:
            seq.finish_reason = "length"
        held = max((len(s) - 1 for s in seq.params["stop"]), default=0)  # a stop string may be starting
        ready = text if seq.finish_reason or not held else text[:max(len(seq.text), len(text) - held)]
        added, seq.text = ready[len(seq.text):], ready
        return added

    @staticmethod
    def _sample(logits: torch.Tensor, params: dict, generator: torch.Generator | None) -> int:
        if params["temperature"] == 0:
            return int(logits.argmax())
        probs = torch.softmax(logits / params["temperature"], dim=-1)
        if params["top_p"] < 1:
            ordered, order = probs.sort(descending=True)
            keep = ordered.cumsum(0) - ordered < params["top_p"]  # the smallest set reaching top_p
            probs = torch.zeros_like(probs).scatter(0, order[keep], ordered[keep])
        return int(torch.multinomial(probs, 1, generator=generator))

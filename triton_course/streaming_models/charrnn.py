"""textgenrnn's pretrained character-level language model, in numpy.

The network (Max Woolf's textgenrnn 2.0.0, MIT licence, weights trained on Reddit submissions): the last
40 characters -> 100-d embeddings -> LSTM(128) -> LSTM(128); the embeddings and both LSTM outputs are
concatenated, averaged over time with learned attention weights, and a dense layer gives the
probabilities of the next character (465 classes, index 0 is padding, "<s>" ends a text).
Its weights ship inside the textgenrnn package on PyPI as Keras HDF5; triton_course.streaming converts
them once into `charrnn.npz` + `charrnn_vocab.json`. Plain numpy, so it runs in Triton's python stub
and in the notebook alike. Self-contained.
"""

import json

import numpy as np

WINDOW = 40          # characters the network looks at (textgenrnn's max_length)
END = "<s>"          # textgenrnn's meta token: the start and the end of a text


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


class CharRNN:
    def __init__(self, weights_path, vocab_path):
        with np.load(weights_path) as w:
            self.w = {k: w[k].astype(np.float32) for k in w.files}
        with open(vocab_path, encoding="utf-8") as handle:
            self.index = json.load(handle)  # character -> index (1..464)
        self.chars = {i: c for c, i in self.index.items()}

    def _lstm(self, x, layer):
        # Keras LSTM, gates in the order input, forget, cell, output; the CuDNN-style weights carry two biases.
        kernel, recurrent = self.w[f"{layer}_kernel"], self.w[f"{layer}_recurrent_kernel"]
        bias = self.w[f"{layer}_bias"]
        units = recurrent.shape[0]
        bias = bias[:4 * units] + bias[4 * units:] if bias.shape[0] == 8 * units else bias
        projected = x @ kernel + bias
        h = np.zeros(units, np.float32)
        c = np.zeros(units, np.float32)
        out = np.empty((x.shape[0], units), np.float32)
        for t in range(x.shape[0]):
            z = projected[t] + h @ recurrent
            i, f, g, o = _sigmoid(z[:units]), _sigmoid(z[units:2 * units]), np.tanh(z[2 * units:3 * units]), \
                _sigmoid(z[3 * units:])
            c = f * c + i * g
            h = o * np.tanh(c)
            out[t] = h
        return out

    def next_probabilities(self, tokens):
        """Probabilities of the next character after `tokens` (a list of characters / the END token)."""
        ids = [self.index.get(t, 0) for t in tokens[-WINDOW:]]
        ids = [0] * (WINDOW - len(ids)) + ids  # padded in front, like Keras' pad_sequences
        embedded = self.w["embedding"][ids]
        rnn1 = self._lstm(embedded, "rnn_1")
        rnn2 = self._lstm(rnn1, "rnn_2")
        features = np.concatenate([embedded, rnn1, rnn2], axis=1)
        logits = features @ self.w["attention"][:, 0]
        weights = np.exp(logits - logits.max())
        weights /= weights.sum() + 1e-7
        pooled = weights @ features
        scores = pooled @ self.w["output_kernel"] + self.w["output_bias"]
        scores = np.exp(scores - scores.max())
        return scores / scores.sum()

    def next_char(self, tokens, temperature=0.0, rng=None):
        """Greedy (temperature 0: the same text every run) or sampled; never the padding index 0."""
        probs = self.next_probabilities(tokens).astype(np.float64)
        probs[0] = 0.0
        if temperature <= 0:
            return self.chars[int(np.argmax(probs))]
        logp = np.log(probs + 1e-12) / temperature
        p = np.exp(logp - logp.max())
        rng = rng or np.random.default_rng()
        return self.chars[int(rng.choice(len(p), p=p / p.sum()))]

    def generate(self, prompt, max_tokens=60, temperature=0.0, seed=None):
        """Yield the characters that follow `prompt`, one at a time, until END or max_tokens."""
        tokens = [END] + list(prompt)
        rng = np.random.default_rng(seed)
        for _ in range(max_tokens):
            char = self.next_char(tokens, temperature, rng)
            if char == END:
                return
            tokens.append(char)
            yield char

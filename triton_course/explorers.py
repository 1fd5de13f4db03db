"""Widget explorers for the batching, instance-group and benchmarking lessons.

Each explorer keeps its measurements, and its callback (`update`) does the work: reload the
model with the chosen setting through the load API's config override, run a short measurement
with the load generator, redraw the figure, and return a one-line reading. The sliders only
call it; the unit tests call it directly.
"""

from __future__ import annotations

import time

import numpy as np

from . import loadgen, tuning
from .model_config import ModelConfig


class _Explorer:
    """Shared plumbing: measurements, a figure, a widget with sliders and a Measure button."""

    def __init__(self, server, base: ModelConfig, inputs: np.ndarray, *, protocol: str = "grpc",
                 window_s: float = 0.5, warmup_s: float = 0.5):
        self.server, self.base, self.inputs = server, base, inputs
        self.protocol, self.window_s, self.warmup_s = protocol, window_s, warmup_s
        self.results: list[loadgen.Result] = []
        self.figure = None
        self.loaded_at: float | None = None

    @property
    def url(self) -> str:
        return self.server.grpc_address if self.protocol == "grpc" else self.server.http_url

    def _measure(self, config: ModelConfig, concurrency: int, label: str) -> loadgen.Result:
        self.loaded_at = time.time()
        self.server.load_model(config.name, config=config)
        result = loadgen.measure(self.url, self.inputs, concurrency=concurrency, protocol=self.protocol,
                                 model=config.name, label=label, window_s=self.window_s,
                                 warmup_s=self.warmup_s, max_windows=4)
        self.results.append(result)
        return result

    def draw(self):
        import matplotlib.pyplot as plt

        if self.figure is None:
            self.figure, _ = plt.subplots(figsize=(6, 4))
            plt.close(self.figure)  # shown by the widget's output area, not by the notebook as well
        ax = self.figure.axes[0]
        ax.clear()
        loadgen.plot(self.results, ax=ax)
        return self.figure

    def _widget(self, sliders: dict, describe):
        import ipywidgets as widgets
        from IPython.display import display

        button = widgets.Button(description="Measure", button_style="primary")
        status = widgets.Label("Move the sliders, then press Measure (a few seconds).")
        output = widgets.Output()

        def clicked(_):
            button.disabled = True
            status.value = "measuring..."
            try:
                text = self.update(**{name: s.value for name, s in sliders.items()})
                status.value = text
                output.clear_output(wait=True)
                with output:
                    display(self.figure)
            except Exception as exc:  # noqa: BLE001 - shown to the learner, the widget stays usable
                status.value = f"failed: {exc}"
            finally:
                button.disabled = False

        button.on_click(clicked)
        return widgets.VBox([widgets.HTML(describe), *sliders.values(), button, status, output])


class BatchingExplorer(_Explorer):
    """Queue delay and concurrency against throughput and p99."""

    def update(self, delay_us: int, concurrency: int) -> str:
        delay = None if delay_us < 0 else delay_us
        config = tuning.batching_config(self.base, delay)
        label = "no batching" if delay is None else f"delay {delay} us"
        r = self._measure(config, concurrency, label)
        self.draw()
        return (f"{label}, c={concurrency}: {r.throughput:.0f} infer/s, p99 {r.percentile(99):.1f} ms, "
                f"average batch {r.server.get('avg_batch', float('nan')):.1f}, errors {r.errors}")

    def widget(self):
        import ipywidgets as widgets

        return self._widget({
            "delay_us": widgets.IntSlider(value=1000, min=-500, max=10000, step=500,
                                          description="delay µs", continuous_update=False),
            "concurrency": widgets.IntSlider(value=4, min=1, max=16, description="clients",
                                             continuous_update=False),
        }, "<b>Dynamic batching</b>: max_queue_delay_microseconds (−500 = batching off) and client count")


class InstanceExplorer(_Explorer):
    """Instance count (and threads per instance) against throughput, p99 and memory."""

    def __init__(self, *args, kind: str = "KIND_CPU", **kwargs):
        super().__init__(*args, **kwargs)
        self.kind = kind
        self.footprints: list[dict] = []

    def update(self, count: int, concurrency: int, threads: int = 0) -> str:
        config = tuning.instances_config(self.base, count, kind=self.kind, threads=threads)
        label = f"{count} x {self.kind[5:]}" + (f", {threads} thread(s)" if threads else "")
        r = self._measure(config, concurrency, label)
        footprint = tuning.instance_footprint(self.server, config.name, since=self.loaded_at)
        self.footprints.append(footprint)
        self.draw()
        memory = f", {footprint['rss_mb']:.0f} MB in {footprint['instances']} stub(s)" if footprint["instances"] else ""
        return f"{label}, c={concurrency}: {r.throughput:.0f} infer/s, p99 {r.percentile(99):.1f} ms{memory}"

    def widget(self):
        import ipywidgets as widgets

        return self._widget({
            "count": widgets.IntSlider(value=2, min=1, max=4, description="instances", continuous_update=False),
            "concurrency": widgets.IntSlider(value=4, min=1, max=16, description="clients",
                                             continuous_update=False),
            "threads": widgets.IntSlider(value=0, min=0, max=4, description="threads (0=auto)",
                                         continuous_update=False),
        }, "<b>Instance groups</b>: copies of the model, clients, onnxruntime threads per copy")


class BudgetExplorer:
    """Pick the configuration with the most throughput whose p99 fits a latency budget, from
    measurements already taken (no server needed)."""

    def __init__(self, results: list[loadgen.Result]):
        self.results = results
        self.figure = None

    def update(self, p99_budget_ms: float) -> str:
        import matplotlib.pyplot as plt

        choice = loadgen.best_under_budget(self.results, p99_budget_ms)
        if self.figure is None:
            self.figure, _ = plt.subplots(figsize=(6, 4))
            plt.close(self.figure)
        ax = self.figure.axes[0]
        ax.clear()
        loadgen.plot(self.results, ax=ax)
        ax.axvline(p99_budget_ms, color="red", linestyle="--", label=f"budget {p99_budget_ms:g} ms")
        if choice is None:
            ax.legend()
            fastest = min(self.results, key=lambda r: r.percentile(99))
            return (f"Nothing measured fits p99 <= {p99_budget_ms:g} ms: the lowest p99 was "
                    f"{fastest.percentile(99):.1f} ms ({fastest.label}, {fastest.load}). Raise the budget, or "
                    "lower the load.")
        ax.scatter([choice.percentile(99)], [choice.throughput], s=200, facecolors="none", edgecolors="red",
                   label="chosen")
        ax.legend()
        return (f"Best within p99 <= {p99_budget_ms:g} ms: {choice.label} at {choice.load}: "
                f"{choice.throughput:.0f} infer/s, p99 {choice.percentile(99):.1f} ms.")

    def widget(self):
        import ipywidgets as widgets
        from IPython.display import display

        top = max(r.percentile(99) for r in self.results)
        slider = widgets.FloatSlider(value=round(top / 2, 1), min=1, max=round(top * 1.2, 1), step=0.5,
                                     description="p99 ≤ ms", continuous_update=False)
        status, output = widgets.Label(), widgets.Output()

        def changed(_=None):
            status.value = self.update(slider.value)
            output.clear_output(wait=True)
            with output:
                display(self.figure)

        slider.observe(changed, names="value")
        changed()
        return widgets.VBox([slider, status, output])

"""The lessons' diagrams, drawn with matplotlib and saved as PNG files the notebooks show.

Each function takes a folder, writes one PNG at GitHub's notebook width (900 px) and returns its path.
`ensemble_graph` is drawn from an ensemble's own ModelConfig, so a changed config draws a changed graph.
(Lesson 15's diagrams live with its code in streaming.py.)

What the boxes are called follows Triton's docs: docs/user_guide/architecture.md (frontends, per-model
scheduler, backend), model_configuration.md (default scheduler, dynamic batcher, max_queue_delay_microseconds,
instance groups, ensemble_scheduling), metrics.md (port 8002, queue and compute durations) and
docs/protocol/extension_statistics.md (queue, compute_input, compute_infer, compute_output).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError
from .model_config import ModelConfig

WIDTH_IN, DPI = 9.0, 100  # 900 px: GitHub shows a notebook's images at about that width without shrinking them
FONT = 9.5  # points; the smallest text on any diagram
COLOURS = {"client": "#dbe9f6", "triton": "#e2f0d9", "queue": "#fde9c9", "backend": "#efe0f5",
           "monitor": "#f4dcdc", "data": "#eeeeee", "balancer": "#fff2b3"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no window, works in CI
    import matplotlib.pyplot as plt

    return plt


def _box(ax, x, y, w, h, text, colour, *, size=FONT, weight="normal", style="round,pad=0.02"):
    from matplotlib.patches import FancyBboxPatch

    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle=style, fc=colour, ec="#555555", lw=1))
    ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=size, weight=weight, wrap=True)


def _arrow(ax, start, end, *, colour="#333333", style="-|>", ls="-", lw=1.3, rad=0.0):
    ax.annotate("", xy=end, xytext=start, arrowprops={"arrowstyle": style, "color": colour, "lw": lw,
                                                     "linestyle": ls, "shrinkA": 2, "shrinkB": 2,
                                                     "connectionstyle": f"arc3,rad={rad}"})


def _save(fig, folder: str | Path, name: str) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    fig.savefig(path, dpi=DPI)  # no bbox_inches="tight": the width stays exactly 900 px
    _pyplot().close(fig)
    return path


# --- lesson 02: the path of one request ---------------------------------------------------------------

def request_path(folder: str | Path) -> Path:
    """Client -> HTTP/gRPC frontend -> the model's scheduler (default, or the dynamic batcher's queue) ->
    model instances -> backend -> response, with the ports and where the statistics and metrics measure."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(WIDTH_IN, 5.0))
    ax.set_xlim(0, 100), ax.set_ylim(0, 56), ax.axis("off")
    fig.subplots_adjust(0.01, 0.01, 0.99, 0.93)
    ax.set_title("One inference request through Triton", fontsize=12, weight="bold")

    # Triton's process: everything inside this frame
    _box(ax, 17, 12, 82, 40, "", "#f7fbf4", style="round,pad=0.3")
    ax.text(18, 49.8, "tritonserver", fontsize=FONT + 1, weight="bold", va="center")

    _box(ax, 0.5, 28, 13, 10, "client\n(tritonclient,\ncurl, ...)", COLOURS["client"])
    _box(ax, 19, 35, 15, 9, "HTTP/REST\nfrontend :8000", COLOURS["triton"])
    _box(ax, 19, 23, 15, 9, "gRPC\nfrontend :8001", COLOURS["triton"])
    _box(ax, 39, 24, 18, 20, "the model's\nscheduler\n\ndefault scheduler,\nor the dynamic\nbatcher's queue",
         COLOURS["queue"])
    # the backend runs the model; instance_group sets how many instances of it run at once
    _box(ax, 62, 22, 35, 24, "", COLOURS["backend"])
    ax.text(79.5, 42.5, "backend (onnxruntime, tensorrt,\npython, pytorch, ...)", ha="center", va="center",
            fontsize=FONT, weight="bold")
    for i, y in enumerate((33.5, 24.5)):
        _box(ax, 66, y, 27, 6, f"model instance {i} (instance_group)", "#f8f0fb", size=FONT)
    _box(ax, 62, 13, 35, 6.5, "model repository (on disk, loaded by Triton):\n"
         "config.pbtxt, version folders 1/, 2/ ...", COLOURS["data"], size=FONT)

    _arrow(ax, (13.5, 34), (19, 39))
    _arrow(ax, (13.5, 32), (19, 27.5))
    _arrow(ax, (34, 39), (39, 35.5))
    _arrow(ax, (34, 27.5), (39, 31.5))
    for y in (36.5, 27.5):  # a request (or a batch) goes to an instance that is free
        _arrow(ax, (57, 34), (66, y))
    ax.text(61.5, 47.5, "request or batch\nto a free instance", ha="center", fontsize=FONT)
    # the response goes back the way it came, through the same frontend
    _arrow(ax, (26.5, 23), (7, 27.5), colour="#2e7d32", rad=-0.25, lw=1.6)
    ax.text(12, 16.5, "response\n(same frontend)", fontsize=FONT, color="#2e7d32", ha="center")

    # where the time is measured: the statistics API (per request) and the metrics endpoint (counters)
    y = 9
    for x0, x1, label in ((39, 57, "queue"), (62, 97, "compute_input, compute_infer, compute_output")):
        ax.plot([x0, x0, x1, x1], [y + 1.2, y, y, y + 1.2], color="#b23b3b", lw=1.2)
        ax.text((x0 + x1) / 2, y - 2.4, label, ha="center", fontsize=FONT, color="#b23b3b")
    ax.text(1, 7.5, "measured by Triton:", fontsize=FONT, color="#b23b3b", weight="bold")
    ax.text(1, 1, "statistics API: GET /v2/models/NAME/stats;   metrics: :8002/metrics "
            "(nv_inference_queue_duration_us,\nnv_inference_compute_input/infer/output_duration_us; "
            "nv_inference_request_duration_us is the whole stay in Triton)", fontsize=FONT, color="#b23b3b")
    return _save(fig, folder, "02_request_path.png")


# --- lesson 05: the dynamic batcher's queue -------------------------------------------------------------

def _batches(arrivals_ms: list[float], max_batch_size: int, delay_ms: float, run_ms: float):
    """When each batch leaves the queue, following model_configuration.md's rule for one free instance:
    a batch goes when it is full (max_batch_size), or when its oldest request has waited max_queue_delay,
    and only when the instance is free. Returns [(dispatch time, [request indexes], full?)]."""
    batches, waiting, free_at, i = [], [], 0.0, 0
    while i < len(arrivals_ms) or waiting:
        if not waiting:
            waiting.append(i)
            i += 1
            continue
        deadline = max(arrivals_ms[waiting[0]] + delay_ms, free_at)
        while i < len(arrivals_ms) and arrivals_ms[i] <= deadline and len(waiting) < max_batch_size:
            waiting.append(i)
            i += 1
        full = len(waiting) == max_batch_size
        start = max(arrivals_ms[waiting[-1]], free_at) if full else deadline
        batches.append((start, waiting, full))
        free_at, waiting = start + run_ms, []
    return batches


def batcher_queue(folder: str | Path, max_batch_size: int = 4, delay_ms: float = 2.0) -> Path:
    """Requests arriving over time wait in the dynamic batcher's queue; a batch of up to max_batch_size
    goes to a free instance when it is full or when the oldest request has waited max_queue_delay."""
    plt = _pyplot()
    arrivals = [0.0, 0.5, 1.0, 1.5, 3.2, 3.8, 7.0, 7.5, 8.0, 8.5, 9.0]  # an example pattern, in ms
    run_ms = 2.6
    batches = _batches(arrivals, max_batch_size, delay_ms, run_ms)
    colours = plt.get_cmap("tab10").colors

    fig, ax = plt.subplots(figsize=(WIDTH_IN, 4.6))
    fig.subplots_adjust(0.13, 0.25, 0.98, 0.88)
    ax.set_title(f"dynamic_batching {{ max_queue_delay_microseconds: {delay_ms * 1000:.0f} }}, "
                 f"max_batch_size: {max_batch_size}, one instance", fontsize=11)
    end = max(b[0] for b in batches) + run_ms + 0.5
    ax.set_xlim(-0.3, end), ax.set_ylim(-0.2, 3.2)
    ax.set_yticks([0.5, 1.6, 2.7], ["instance", "queue", "requests\narrive"], fontsize=FONT + 0.5)
    ax.set_xlabel("time (ms)", fontsize=FONT + 0.5)
    ax.tick_params(axis="x", labelsize=FONT)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    ax.tick_params(axis="y", length=0)

    for n, (start, members, full) in enumerate(batches):
        colour = colours[n % len(colours)]
        for slot, r in enumerate(members):
            t = arrivals[r]
            ax.plot([t], [2.7], marker="v", ms=10, color=colour)
            ax.text(t, 2.95, f"r{r + 1}", ha="center", fontsize=FONT)
            # time spent waiting in the queue: from arrival to the batch leaving
            ax.plot([t, start], [1.35 + slot * 0.15] * 2, color=colour, lw=3, solid_capstyle="butt")
        oldest = arrivals[members[0]]
        if not full:
            ax.annotate("", xy=(oldest + delay_ms, 2.15), xytext=(oldest, 2.15),
                        arrowprops={"arrowstyle": "|-|", "color": "#b23b3b", "lw": 1})
            ax.text(oldest + delay_ms / 2, 2.25, "max_queue_delay", ha="center", fontsize=FONT, color="#b23b3b")
        ax.add_patch(plt.Rectangle((start, 0.2), run_ms, 0.6, color=colour, alpha=0.8))
        why = "full" if full else "delay ran out" if start == oldest + delay_ms else "instance free"
        ax.text(start + run_ms / 2, 0.5, f"batch of {len(members)}\n({why})", ha="center", va="center",
                fontsize=FONT, color="white", weight="bold")
        ax.axvline(start, color=colour, lw=0.8, ls=":")
    fig.text(0.02, 0.03, "A batch leaves the queue when it reaches max_batch_size, or when its oldest request has "
             "waited max_queue_delay;\nwith no delay (dynamic_batching { }) it takes whatever is queued as soon as "
             "an instance is free.", fontsize=FONT)
    return _save(fig, folder, "05_batcher_queue.png")


# --- lesson 09: an ensemble's graph, from its config ----------------------------------------------------

@dataclass(frozen=True)
class Edge:
    """One tensor flowing in an ensemble: from an ensemble input or a step, to a step or an ensemble output."""

    source: str
    target: str
    tensor: str  # the ensemble's name for it (the maps' values)


def _step_node(index: int, model: str) -> str:
    return f"step {index + 1}: {model}"


def ensemble_edges(config: ModelConfig) -> list[Edge]:
    """The graph `ensemble_scheduling` describes, checked as Triton checks it when it loads the ensemble.
    Nodes are "input: NAME", "step N: MODEL" and "output: NAME"; each edge carries the ensemble tensor."""
    name = config.name or "(unnamed)"
    if config.platform != "ensemble" or not config.ensemble_scheduling.step:
        raise ConfigError(f"Model '{name}' is not an ensemble (platform {config.platform!r}, "
                          f"{len(config.ensemble_scheduling.step)} steps): there is no graph to draw.",
                          fix='Pass an ensemble\'s config: platform: "ensemble" with ensemble_scheduling { step ... }.')
    producer = {t.name: f"input: {t.name}" for t in config.input}
    for index, step in enumerate(config.ensemble_scheduling.step):
        for tensor in step.output_map.values():
            if tensor in producer:
                raise ConfigError(f"Ensemble '{name}': tensor '{tensor}' is written twice ({producer[tensor]} and "
                                  f"{_step_node(index, step.model_name)}).",
                                  fix="Give each step output its own ensemble tensor name (the output_map value).")
            producer[tensor] = _step_node(index, step.model_name)
    edges, used = [], set()
    for index, step in enumerate(config.ensemble_scheduling.step):
        for step_tensor, tensor in sorted(step.input_map.items()):
            if tensor not in producer:
                raise ConfigError(f"Ensemble '{name}', {_step_node(index, step.model_name)}: its input "
                                  f"'{step_tensor}' reads ensemble tensor '{tensor}', which no ensemble input and no "
                                  f"step output_map provides.",
                                  fix=f"Make '{tensor}' an ensemble input or an earlier step's output_map value, "
                                      "or correct the input_map value's spelling.")
            edges.append(Edge(producer[tensor], _step_node(index, step.model_name), tensor))
            used.add(tensor)
    for t in config.output:
        if t.name not in producer:
            raise ConfigError(f"Ensemble '{name}': its output '{t.name}' is written by no step.",
                              fix=f"Make '{t.name}' the output_map value of the step that produces it.")
        edges.append(Edge(producer[t.name], f"output: {t.name}", t.name))
        used.add(t.name)
    unused = [t.name for t in config.input if t.name not in used]
    if unused:
        raise ConfigError(f"Ensemble '{name}': its input '{unused[0]}' is read by no step.",
                          fix=f"Use '{unused[0]}' as an input_map value of the step that needs it, or remove it.")
    _columns(edges)  # refuses a cycle
    return edges


def _columns(edges: list[Edge]) -> dict[str, int]:
    """Each node's column, left to right by dependency: one more than the furthest node that feeds it."""
    nodes = list(dict.fromkeys([e.source for e in edges] + [e.target for e in edges]))
    column = {n: 0 for n in nodes}
    for _ in range(len(nodes)):
        changed = False
        for e in edges:
            if column[e.target] < column[e.source] + 1:
                column[e.target], changed = column[e.source] + 1, True
        if not changed:
            break
    else:
        raise ConfigError("The ensemble's steps form a cycle: a step reads, directly or through others, "
                          "a tensor it writes itself.", fix="Triton runs an ensemble as a graph without cycles: "
                          "use BLS (a python model calling models) for a loop.")
    last = max(column.values())
    for n in nodes:  # outputs in the last column, side by side
        if n.startswith("output: "):
            column[n] = last
    return column


def ensemble_graph(config: ModelConfig, folder: str | Path, name: str = "09_ensemble_graph.png") -> Path:
    """The ensemble's steps as boxes, left to right by dependency, connected by the ensemble tensors."""
    plt = _pyplot()
    edges = ensemble_edges(config)
    column = _columns(edges)
    by_column: dict[int, list[str]] = {}
    for node, c in column.items():
        by_column.setdefault(c, []).append(node)
    rows = max(len(v) for v in by_column.values())
    columns = max(by_column) + 1

    height = 1.6 + 1.3 * rows
    fig, ax = plt.subplots(figsize=(WIDTH_IN, height))
    fig.subplots_adjust(0.01, 0.09, 0.99, 0.9)
    ax.set_xlim(0, columns * 10), ax.set_ylim(0, rows * 10), ax.axis("off")
    ax.set_title(f"ensemble '{config.name}': drawn from its ensemble_scheduling "
                 f"({len(config.ensemble_scheduling.step)} steps)", fontsize=11)
    w, h = 7.2, 5.0
    centre = {}
    for c, nodes in by_column.items():
        for r, node in enumerate(nodes):
            cx, cy = c * 10 + 5, rows * 10 - (r + 0.5) * 10 * rows / len(nodes)
            centre[node] = (cx, cy)
            kind, _, label = node.partition(": ")
            colour = COLOURS["client"] if kind in ("input", "output") else COLOURS["backend"]
            _box(ax, cx - w / 2, cy - h / 2, w, h, "", colour)
            ax.text(cx, cy + 0.9, f"ensemble {kind}" if kind in ("input", "output") else kind, ha="center",
                    va="center", fontsize=FONT, weight="normal" if kind in ("input", "output") else "bold")
            ax.text(cx, cy - 0.9, label, ha="center", va="center", fontsize=FONT)
    for e in edges:
        (x0, y0), (x1, y1) = centre[e.source], centre[e.target]
        _arrow(ax, (x0 + w / 2, y0), (x1 - w / 2, y1), lw=1.5)
        ax.text((x0 + x1) / 2, (y0 + y1) / 2 + 0.9, e.tensor, ha="center", fontsize=FONT, color="#1f4e79",
                style="italic", bbox={"fc": "white", "ec": "none", "pad": 0.2})
    fig.text(0.01, 0.02, "arrows: the ensemble's tensors, named by the values of each step's input_map and output_map",
             fontsize=FONT, color="#1f4e79")
    return _save(fig, folder, name)


# --- lesson 14: a scaled deployment --------------------------------------------------------------------

def scaled_deployment(folder: str | Path, servers: int = 2) -> Path:
    """Clients -> HAProxy (health checks, retries) -> N Tritons, each with its model repository;
    Prometheus scrapes the Tritons and HAProxy's exporter. Kubernetes counterparts in small grey text."""
    if servers < 1:
        raise ValueError(f"servers must be at least 1, not {servers}")
    plt = _pyplot()
    row_h = 9.0
    top = max(servers * row_h, 3 * row_h)
    fig, ax = plt.subplots(figsize=(WIDTH_IN, 1.8 + 0.16 * top))
    fig.subplots_adjust(0.01, 0.01, 0.99, 0.9)
    ax.set_xlim(0, 100), ax.set_ylim(-4, top + 2), ax.axis("off")
    ax.set_title(f"{servers} Triton server{'s' if servers > 1 else ''} behind HAProxy, watched by Prometheus",
                 fontsize=12, weight="bold")
    k8s = {"color": "#666666", "fontsize": FONT, "style": "italic", "ha": "center"}
    mid = top / 2

    _box(ax, 0.5, mid - 5, 12, 10, "clients\n(one address)", COLOURS["client"])
    _box(ax, 19, mid - 9, 23, 18, "HAProxy\n\nroundrobin per request\nhealth check:\nGET /v2/models/NAME/ready\n"
         "retry-on + redispatch", COLOURS["balancer"])
    ax.text(31, mid - 12.5, "Kubernetes: Service\n+ readinessProbe", **k8s)
    _arrow(ax, (12.5, mid), (20, mid), lw=1.6)
    ax.text(16.2, mid + 1.2, "HTTP, gRPC", ha="center", fontsize=FONT)

    ys = [top - (i + 0.5) * top / servers for i in range(servers)]
    for i, y in enumerate(ys, start=1):
        _box(ax, 48.5, y - 3.4, 22, 6.8, f"Triton {i}\nHTTP :8000  gRPC :8001\nmetrics :8002", COLOURS["triton"])
        _box(ax, 74, y - 2.2, 13.5, 4.4, "model\nrepository", COLOURS["data"], size=FONT)
        _arrow(ax, (74, y), (70.5, y), colour="#777777", ls="--")
        _arrow(ax, (42, mid), (48.5, y), lw=1.4)
    ax.text(60.5, -3.5, f"Kubernetes: Deployment, replicas: {servers} (a pod each);\n"
            "the repository on a PersistentVolumeClaim", **k8s)

    _box(ax, 90, mid - 6, 9.5, 12, "Prome-\ntheus", COLOURS["monitor"])
    for y in ys:  # Prometheus pulls: it scrapes each target's /metrics
        _arrow(ax, (90, mid + 2), (70.5, y + 2.5), colour="#b23b3b", ls=":", lw=1.1, rad=0.15)
    _arrow(ax, (90, mid - 4), (42, mid - 7), colour="#b23b3b", ls=":", lw=1.1, rad=-0.25)
    ax.text(80, 0.2, "scrapes /metrics: Tritons (:8002)\nand HAProxy's exporter",
            fontsize=FONT, color="#b23b3b", ha="center")
    return _save(fig, folder, "14_scaled_deployment.png")


def draw_all(folder: str | Path) -> list[Path]:
    """Every diagram the lessons show, lesson 09's from the course's own ensemble config."""
    from .ensemble import ensemble_config

    return [request_path(folder), batcher_queue(folder), ensemble_graph(ensemble_config(), folder),
            scaled_deployment(folder)]

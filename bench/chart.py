"""The PNG bar chart of the ratios: `python chart.py RESULTS.json OUT.png`.

Runs under the peer venv's interpreter, which has matplotlib; it reads only the results JSON,
so it imports nothing else from the benchmark. Two panels, req/s and req/CPU-s, each a group
of bars per scenario, one bar per server, on a log scale around the baseline's 1.0. Each
scenario has its own baseline (gunicorn-sync for WSGI, uvicorn-asgi for ASGI: `baselines` in the
metadata; older results have one `baseline` for all).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: must come before pyplot is imported
import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter

PANELS = {
    "requests_per_s": "requests/s",
    "requests_per_cpu_s": "requests per CPU-second",
}


def minor_label(value: float, _: object) -> str:
    # Label 2, 3 and 5 of each decade (and their tenths), not every minor tick.
    digit = f"{value:.0e}"[0]
    return f"{value:g}x" if digit in "235" else ""


def draw(doc: dict[str, Any], out: Path) -> None:
    summary = doc["summary"]
    scenarios = [name for name in doc["meta"]["scenarios"] if name in summary]
    servers = [s for s in doc["meta"]["servers"] if any(s in summary[sc] for sc in scenarios)]
    width = 0.8 / max(len(servers), 1)
    # tab20 when there are more servers than tab10 has colours (the HTTP/2 scenarios).
    palette = 10 if len(servers) <= 10 else 20
    colours = plt.get_cmap(f"tab{palette}")
    fig, axes = plt.subplots(len(PANELS), 1, figsize=(16, 10), sharex=True)
    for ax, (metric, label) in zip(axes, PANELS.items(), strict=True):
        for i, server in enumerate(servers):
            xs, ys = [], []
            for x, scenario in enumerate(scenarios):
                value = summary[scenario].get(server, {}).get("ratio", {}).get(metric)
                if value:
                    xs.append(x - 0.4 + width * (i + 0.5))
                    ys.append(value)
            # Bars grow from the baseline's 1.0: up when better, down when worse.
            heights = [y - 1.0 for y in ys]
            ax.bar(xs, heights, width, bottom=1.0, label=server, color=colours(i % palette))
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
        ax.yaxis.set_minor_formatter(FuncFormatter(minor_label))
        ax.set_ylabel(f"{label}\nratio to the scenario's baseline")
        ax.grid(axis="y", which="both", alpha=0.3)
    axes[-1].set_xticks(range(len(scenarios)), scenarios)
    handles, labels = axes[0].get_legend_handles_labels()
    baselines = set(doc["meta"].get("baselines", {}).values()) or {doc["meta"]["baseline"]}
    labels = [f"{name} (= 1x)" if name in baselines else name for name in labels]
    fig.legend(handles, labels, ncol=min(len(labels), 9), fontsize="small", loc="lower center")
    fig.suptitle(f"corral benchmark {doc['meta']['date']}: medians, ratio to the baseline")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(out, dpi=100)


def main() -> None:
    source, out = Path(sys.argv[1]), Path(sys.argv[2])
    draw(json.loads(source.read_text()), out)


if __name__ == "__main__":
    main()

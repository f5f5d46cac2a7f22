"""The throughput of a run as a PNG bar chart: items/s, log scale, per workload per implementation.

Drawn with matplotlib on the Agg backend (no display needed). Failed and skipped
implementations have no bar; their reason is in the table and the JSON.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["write_chart"]


def write_chart(report: dict[str, Any], path: Path) -> None:
    """Draw ``report["throughput"]`` into ``path``.

    Raises:
        ImportError: matplotlib is not installed (it is in the ``bench`` extra).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    throughput: dict[str, Any] = report["throughput"]
    names = list(throughput)
    impls: list[str] = []
    for data in throughput.values():
        impls += [impl for impl, stats in data["impls"].items() if "seconds" in stats and impl not in impls]

    figure, axes = plt.subplots(figsize=(11, 5.5))
    width = 0.84 / max(1, len(impls))
    colours = plt.get_cmap("tab10")
    for k, impl in enumerate(impls):
        xs, rates = [], []
        for position, name in enumerate(names):
            stats = throughput[name]["impls"].get(impl, {})
            if "seconds" in stats:
                xs.append(position - 0.42 + (k + 0.5) * width)
                rates.append(throughput[name]["n"] / stats["seconds"])
        bold = impl.startswith("sage_streams")
        axes.bar(
            xs,
            rates,
            width,
            label=impl,
            color=colours(k % 10),
            edgecolor="black" if bold else "none",
            linewidth=1.2 if bold else 0,
        )
    axes.set_yscale("log")
    axes.set_xticks(range(len(names)), labels=[f"{name}\n{throughput[name]['n']:,} items" for name in names])
    axes.set_ylabel("items/s (log scale, higher is better)")
    when = str(report.get("date", ""))[:10]
    axes.set_title(
        f"sage_streams benchmarks, {when}: {report.get('cores', '?')} cores, "
        f"CPython {report.get('python', '?')}, medians of fresh processes"
    )
    axes.grid(axis="y", which="major", alpha=0.4)
    axes.grid(axis="y", which="minor", alpha=0.15)
    axes.set_axisbelow(True)
    axes.legend(ncol=5, fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.13))
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)

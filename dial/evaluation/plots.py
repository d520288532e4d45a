"""Plots for evaluation reports (PNG, no display needed)."""
from __future__ import annotations

from pathlib import Path


def plot_iou_curves(curves: dict[str, list[float]], path: str | Path, *, title: str,
                    xlabel: str = "clicks per image", ylabel: str = "mIoU") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for label, values in curves.items():
        ax.plot(range(len(values)), [100 * v for v in values], marker="o", markersize=3, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"{ylabel} (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)

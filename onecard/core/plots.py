"""Plots a run leaves in its directory (PNG, no display needed)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["plot_losses"]


def plot_losses(history: dict[str, list[list[float]]], path: Path, title: str, xlabel: str = "step",
                ylabel: str = "cross-entropy (nats/token)") -> None:
    """A PNG of each named loss curve (`{"train": [[step, loss], ...], "val": [...]}`) against the step.

    Curves other than "train" are sparse evaluations: drawn with markers.
    """
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, points in history.items():
        if points:
            steps, losses = zip(*points, strict=True)
            ax.plot(steps, losses, label=f"{name} loss", marker=None if name == "train" else "o")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

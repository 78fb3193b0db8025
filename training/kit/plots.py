"""Training-curve figures: one place that sets up matplotlib for files only (no display) and saves the result."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def curve_figure(path: Path, title: str, xlabel: str, ylabel: str, legend_size: float | None = None) -> Iterator[Any]:
    """Yields the axes to draw on; the figure (6 x 4 in, 100 dpi) is saved to `path` when the block ends."""
    import matplotlib

    matplotlib.use("Agg")  # imported here: only exports draw, and they must work without a display
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    try:
        yield ax
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.legend(fontsize=legend_size)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)

"""What every report plot shares: matplotlib on the Agg backend (no display needed), the
resolution, the legend outside the axes, and saving a figure.

Example:
    >>> plt = pyplot()
    >>> fig, ax = plt.subplots(); legend_outside(ax); save(fig, Path("x.png"), plt)
"""

from __future__ import annotations

from pathlib import Path

from quantlens.errors import require

DPI = 110


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (``quantlens[plot]`` must be installed)."""
    matplotlib = require("matplotlib", "plot")
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def legend_outside(ax, **kwargs) -> None:
    """The legend of ``ax`` to the right of the axes (none without labelled artists)."""
    handles, _ = ax.get_legend_handles_labels()
    if handles:
        ax.legend(
            fontsize=8,
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            borderaxespad=0,
            frameon=False,
            **kwargs,
        )


def save(fig, path: Path, plt, layout: bool = True) -> Path:
    """Write ``fig`` to ``path`` (PNG at :data:`DPI`), close it, return ``path``."""
    if layout:
        fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


__all__ = ["DPI", "legend_outside", "pyplot", "save"]

"""Overlay pictures of registered clouds (matplotlib, Agg backend)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np


def overlay(source: np.ndarray, model: np.ndarray, pose: np.ndarray, path: str | os.PathLike,
            title: str = "") -> None:
    """Model (grey), source before (red) and after (blue) the pose, in two views; atomic write."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    moved = source @ pose[:3, :3].T + pose[:3, 3]
    fig = plt.figure(figsize=(8, 4))
    for k, (elev, azim) in enumerate(((20, 30), (70, -60))):
        ax = fig.add_subplot(1, 2, k + 1, projection="3d")
        ax.scatter(*model.T, s=3, c="0.6", label="model")
        ax.scatter(*source.T, s=3, c="tab:red", alpha=0.5, label="source (input)")
        ax.scatter(*moved.T, s=3, c="tab:blue", label="source (registered)")
        ax.view_init(elev, azim)
        ax.set_axis_off()
        if k == 0:
            ax.legend(loc="upper left", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)

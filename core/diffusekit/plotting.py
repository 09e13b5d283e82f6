"""Pictures shared by the quickstart, examples and benchmarks (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path

import torch


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_samples(data: torch.Tensor, samples: torch.Tensor, path, title: str = "") -> None:
    """Side-by-side scatter of 2-D reference data and samples."""
    plot_points({"data (held out)": data, "samples": samples}, path, title)


def plot_points(panels: dict, path, title: str = "") -> None:
    """One scatter panel per entry of ``panels`` ({title: (N, 2) points}), shared axes."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4), sharex=True, sharey=True,
                             squeeze=False)
    for ax, (name, pts) in zip(axes.flat, panels.items()):
        ax.scatter(pts[:, 0].numpy(), pts[:, 1].numpy(), s=2, alpha=0.5)
        ax.set_title(name)
        ax.set_aspect("equal")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def save_image_grid(images: torch.Tensor, path: Path | str, title: str, cols: int = 10) -> None:
    """Grid of single-channel images in [-1, 1] (shape (N, 1, H, W)), ``cols`` per row."""
    plt = _pyplot()
    n = images.shape[0]
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 0.8, rows * 0.8 + 0.4), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(images[i, 0].clamp(-1, 1).numpy(), cmap="gray_r", vmin=-1, vmax=1)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def save_digit_panels(grids: dict, path: Path | str, fontsize: int = 9) -> None:
    """One panel per entry of ``grids`` ({title: (>= 32, 1, 8, 8) images in [-1, 1]}): the
    first 32 images of each tiled 4 x 8."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(grids), figsize=(3.2 * len(grids), 1.9), dpi=100, squeeze=False)
    for ax, (name, imgs) in zip(axes.flat, grids.items()):
        tiles = imgs[:32].reshape(4, 8, 8, 8).permute(0, 2, 1, 3).reshape(32, 64)
        ax.imshow(tiles.numpy(), cmap="gray_r", vmin=-1, vmax=1)
        ax.set_title(name, fontsize=fontsize)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)

"""Sample writers: what ``diffusekit sample --out FILE`` writes for each file suffix.

A writer is a :class:`SampleWriter` subclass registered through the ``register_writers`` hook.
The command picks, among the writers that claim the output's suffix, the one with the highest
:attr:`~SampleWriter.priority` whose :meth:`~SampleWriter.accepts` says yes for these samples;
the suffix is checked before any sampling starts. The file is written atomically (a temporary
sibling renamed over the target), so an interrupted write never leaves a partial file.

The core registers ``.safetensors`` (any state), ``.npy`` (Tensor states), and two ``.png``
pictures: a scatter of 2-D points and a grid of images.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar

import torch

from . import state as st
from .errors import ConfigError, DiffusekitError, WriteError


@dataclass
class WriteContext:
    """What a writer may use besides the samples."""

    #: the sampled :class:`~diffusekit.pipeline.Pipeline`
    pipe: Any
    #: network evaluations of the sampling call
    nfe: int | None = None
    #: returns held-out data of the run's training dataset (its ``test`` split, ``n`` rows) or
    #: None when the run does not record a registered dataset
    reference: Callable[[int], Any] | None = None


class SampleWriter(abc.ABC):
    """Writes a batch of samples to a file whose suffix it claims."""

    #: lower-case file suffixes this writer handles, e.g. ``(".gif",)``
    suffixes: ClassVar[tuple[str, ...]] = ()
    #: among writers accepting the same samples and suffix, the highest priority writes
    priority: ClassVar[int] = 0

    def accepts(self, samples: Any, context: WriteContext) -> bool:
        """Whether this writer can write ``samples`` (e.g. only 2-D points, only graph states)."""
        return True

    def describe(self) -> str:
        """What the writer writes, for error messages and ``--help``."""
        doc = (type(self).__doc__ or "").strip()
        return doc.splitlines()[0] if doc else type(self).__name__

    @abc.abstractmethod
    def write(self, path: Path, samples: Any, context: WriteContext) -> str:
        """Write ``samples`` to ``path`` (a temporary file with the target's suffix, renamed over
        the target afterwards); return a short description of what was written."""


class SafetensorsWriter(SampleWriter):
    """every state leaf as one safetensors tensor (``samples``, or ``samples.<leaf>`` for dict states)"""

    suffixes = (".safetensors",)
    priority = -10

    def write(self, path, samples, context):
        from safetensors.torch import save_file

        if torch.is_tensor(samples):
            tensors = {"samples": samples}
        else:
            tensors = st.flatten(samples, "samples")
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(path))
        return f"safetensors with keys {sorted(tensors)}"


class NpyWriter(SampleWriter):
    """a NumPy array (Tensor states; dict states need .safetensors)"""

    suffixes = (".npy",)
    priority = -10

    def accepts(self, samples, context):
        return torch.is_tensor(samples)

    def write(self, path, samples, context):
        import numpy as np

        with open(path, "wb") as f:
            np.save(f, samples.detach().cpu().numpy(), allow_pickle=False)
        return f"a NumPy array of shape {tuple(samples.shape)}"


class ScatterWriter(SampleWriter):
    """a scatter plot of 2-D points, beside held-out data when the run records its dataset"""

    suffixes = (".png",)
    priority = -10

    def accepts(self, samples, context):
        return torch.is_tensor(samples) and samples.ndim == 2 and samples.shape[1] == 2

    def write(self, path, samples, context):
        from .plotting import plot_points

        x = samples.detach().float().cpu()
        ref = context.reference(len(x)) if context.reference is not None else None
        panels = {"samples": x}
        if torch.is_tensor(ref) and ref.ndim == 2 and ref.shape[1] == 2:
            panels = {"data (held out)": ref.float().cpu(), "samples": x}
        plot_points(panels, path, f"{len(x)} samples" + (f", {context.nfe} NFE" if context.nfe else ""))
        return "a scatter plot of " + " and ".join(panels)


class ImageGridWriter(SampleWriter):
    """a grid of images (states of shape (N, 1 or 3, H, W) in [-1, 1])"""

    suffixes = (".png",)
    priority = -10

    def accepts(self, samples, context):
        return torch.is_tensor(samples) and samples.ndim == 4 and samples.shape[1] in (1, 3)

    def write(self, path, samples, context):
        from .plotting import save_image_grid

        x = samples.detach().float().cpu()[:100]
        save_image_grid(x, path, f"{len(samples)} samples" + (f", {context.nfe} NFE" if context.nfe else ""))
        return f"a grid of {len(x)} images"


BUILTIN_WRITERS = {"safetensors": SafetensorsWriter, "npy": NpyWriter, "scatter-png": ScatterWriter,
                   "image-grid-png": ImageGridWriter}


def writers() -> list[SampleWriter]:
    """Every registered writer, instantiated, highest priority first."""
    from .plugins import get_registry

    objs = [spec.obj() for spec in get_registry().specs("writer")]
    return sorted(objs, key=lambda w: -w.priority)


def suffixes() -> set[str]:
    return {s for w in writers() for s in w.suffixes}


def check_suffix(path: str | Path, loc: str = "out") -> Path:
    """Before sampling: the file's suffix has a writer and its directory takes files."""
    from .files import check_output_file

    return check_output_file(path, loc=loc, suffixes=tuple(sorted(suffixes())))


def write_samples(path: str | Path, samples: Any, context: WriteContext, loc: str = "out") -> str:
    """Write ``samples`` with the best writer for ``path``'s suffix (atomically); returns what
    was written."""
    from .files import atomic_write

    path = Path(path)
    suffix = path.suffix.lower()
    claiming = [w for w in writers() if suffix in w.suffixes]
    for w in claiming:
        if w.accepts(samples, context):
            try:
                return atomic_write(path, lambda tmp: w.write(tmp, samples, context))
            except DiffusekitError:
                raise
            except Exception as exc:  # a full disk, a library's own I/O error type
                raise WriteError(f"could not write {path} ({exc}); nothing was written there") from exc
    shape = st.shape_of(samples) if st.is_state(samples) else type(samples).__name__
    raise ConfigError(
        f"no {suffix} writer takes samples of shape {shape}; {suffix} writers: "
        + "; ".join(w.describe() for w in claiming) + f". Other suffixes: {', '.join(sorted(suffixes()))}",
        loc=loc)

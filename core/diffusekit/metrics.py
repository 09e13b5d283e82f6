"""Metrics whose value is a function of sums that add over shards of the data, so that
``dk.distributed.evaluate`` can split the work across ranks and all-reduce a few numbers
instead of gathering the data on one rank.

A :class:`Metric` implements

* ``partial(samples, reference, rank, world) -> {name: tensor}``: this rank's share of the
  sums (every rank must return the same names and shapes, also for an empty share);
* ``reduce``: how each name combines over ranks (``"sum"`` unless listed as ``"min"`` /
  ``"max"``);
* ``finalize(sums) -> dict``: the result from the combined sums (``value`` is the headline).

Calling a metric, ``metric(samples, reference)``, is the one-process value.

Two kinds are provided:

* :class:`PerItem` scores each (sample i, reference i) pair with a plain function
  ``fn(estimate, reference) -> float`` (SI-SDR, PESQ, ESTOI are registered with
  ``per_item=True``) and reduces the count, sum, sum of squares, extrema and an optional
  histogram: mean, std, min, max, histogram;
* :class:`MMD` (registered as ``mmd``): the unbiased squared MMD with a sum of RBF kernels,
  equal to :func:`diffusekit.testing.metrics.mmd`. Rank r computes the kernel sums of its row
  block (its contiguous share of the sample rows and of the reference rows against all
  columns), so the O(N^2) kernel work is split and only 3 numbers per bandwidth are
  all-reduced.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch
from pydantic import Field, field_validator

from . import state as st
from .config import Component, ComponentConfig
from .errors import ConfigError, ShapeError


def _num_items(x: Any, loc: str) -> int:
    if torch.is_tensor(x) or st.is_state(x):
        n = st.batch_size(x)
        if n is None:
            raise ShapeError(f"{loc}: a 0-d tensor has no items; rows (the first dimension) are the items")
        return n
    try:
        return len(x)
    except TypeError:
        raise ConfigError(f"{loc}: expected a Tensor (rows are items) or a sequence of items, got "
                          f"{type(x).__name__}", loc=loc) from None


def _item(x: Any, i: int) -> Any:
    if torch.is_tensor(x) or st.is_state(x):
        return st.index(x, i)
    return x[i]


def _matrix(x: Any, loc: str) -> torch.Tensor:
    if st.is_state(x) and not torch.is_tensor(x):
        raise ConfigError(f"{loc}: a dict state; pick one leaf (e.g. samples['x']) or flatten it before computing "
                          "a set metric", loc=loc)
    if not torch.is_tensor(x):
        try:
            x = torch.stack([torch.as_tensor(v) for v in x])
        except (TypeError, RuntimeError) as exc:
            raise ConfigError(f"{loc}: expected a Tensor (N, ...) or a sequence of equally shaped items ({exc})",
                              loc=loc) from None
    if x.ndim == 0:
        raise ShapeError(f"{loc}: a 0-d tensor has no rows")
    if x.is_complex():
        x = torch.view_as_real(x)
    return x.reshape(x.shape[0], -1).to(torch.float64)


class Metric(Component):
    """A metric computed from partial sums that combine over shards (see the module docs)."""

    #: name -> "sum" (default for unlisted names), "min" or "max"
    reduce: dict = {}
    #: needs a reference (paired items or a reference set)
    needs_reference: bool = True

    @property
    def name(self) -> str:
        spec = getattr(self, "_dk_spec", None)  # set by dk.create
        return spec[1] if spec else type(self).__name__

    def partial(self, samples: Any, reference: Any, rank: int = 0, world: int = 1) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def finalize(self, sums: dict[str, torch.Tensor]) -> dict[str, Any]:
        raise NotImplementedError

    def __call__(self, samples: Any, reference: Any = None) -> float:
        return self.finalize(self.partial(samples, reference, 0, 1))["value"]


class PerItem(Metric):
    """Mean (and spread) of ``fn(sample_i, reference_i)`` over paired items.

    ``bins = (lo, hi, count)`` adds a histogram of the values (all-reduced counts; values
    outside [lo, hi] are counted as ``below`` / ``above``). Non-finite values are counted as
    ``nonfinite`` and left out of the statistics."""

    reduce = {"min": "min", "max": "max"}

    def __init__(self, fn: Callable[..., float], name: str | None = None, bins: Sequence[float] | None = None,
                 **params: Any) -> None:
        super().__init__()
        if not callable(fn):
            raise ConfigError(f"a per-item metric needs a callable fn(estimate, reference) -> float, got "
                              f"{type(fn).__name__}", loc="metric")
        self.fn = fn
        self.params = params
        self._name = name or getattr(fn, "__name__", "metric")
        self.bins = None
        if bins is not None:
            if len(bins) != 3 or not float(bins[0]) < float(bins[1]) or int(bins[2]) < 1:
                raise ConfigError(f"bins must be (lo, hi, count) with lo < hi and count >= 1, got {list(bins)!r}",
                                  loc="bins")
            self.bins = (float(bins[0]), float(bins[1]), int(bins[2]))

    @property
    def name(self) -> str:
        return self._name

    def partial(self, samples, reference, rank=0, world=1):
        from .distributed import shard_range

        if reference is None:
            raise ConfigError(f"metric {self.name!r} scores (sample, reference) pairs: pass a reference with one "
                              "item per sample", loc="reference")
        n = _num_items(samples, "samples")
        m = _num_items(reference, "reference")
        if n != m:
            raise ShapeError(f"metric {self.name!r}: {n} samples but {m} reference items; give one reference item "
                             "per sample (matched by index or file name)")
        values = [float(self.fn(_item(samples, i), _item(reference, i), **self.params))
                  for i in shard_range(n, rank, world)]
        v = torch.tensor(values, dtype=torch.float64)
        ok = torch.isfinite(v)
        f = v[ok]
        inf = torch.tensor([math.inf], dtype=torch.float64)
        out = {"count": torch.tensor([float(f.numel())], dtype=torch.float64),
               "nonfinite": torch.tensor([float((~ok).sum())], dtype=torch.float64),
               "sum": f.sum().reshape(1), "sumsq": (f * f).sum().reshape(1),
               "min": f.min().reshape(1) if f.numel() else inf, "max": f.max().reshape(1) if f.numel() else -inf}
        if self.bins is not None:
            lo, hi, k = self.bins
            out["histogram"] = torch.histc(f, bins=k, min=lo, max=hi) if f.numel() else torch.zeros(k, dtype=torch.float64)
            out["below"] = (f < lo).sum().to(torch.float64).reshape(1)
            out["above"] = (f > hi).sum().to(torch.float64).reshape(1)
        return out

    def finalize(self, sums):
        count = float(sums["count"][0])
        mean = float(sums["sum"][0]) / count if count else math.nan
        var = max(float(sums["sumsq"][0]) / count - mean * mean, 0.0) if count else math.nan
        res = {"metric": self.name, "value": mean, "mean": mean,
               "std": math.sqrt(var * count / (count - 1)) if count > 1 else 0.0 if count else math.nan,
               "count": int(count), "nonfinite": int(sums["nonfinite"][0]),
               "min": float(sums["min"][0]) if count else math.nan, "max": float(sums["max"][0]) if count else math.nan}
        if self.bins is not None:
            lo, hi, k = self.bins
            res["histogram"] = {"edges": torch.linspace(lo, hi, k + 1, dtype=torch.float64).tolist(),
                                "counts": [int(c) for c in sums["histogram"].round().tolist()],
                                "below": int(sums["below"][0]), "above": int(sums["above"][0])}
        return res


class MMDConfig(ComponentConfig):
    bandwidths: list[float] = Field([0.1, 0.2, 0.5, 1.0, 2.0], min_length=1,
                                    description="RBF bandwidths h: k(a, b) = sum_h exp(-|a - b|^2 / (2 h^2))")
    chunk: int = Field(1024, ge=1, description="rows per kernel block (bounds memory at chunk x N)")

    @field_validator("bandwidths")
    @classmethod
    def _positive(cls, v):
        if any(not h > 0 for h in v):
            raise ValueError(f"every bandwidth must be > 0, got {v}")
        return v


class MMD(Metric):
    """Unbiased squared MMD between sample and reference sets (sum of RBF kernels, float64).

    Equal to :func:`diffusekit.testing.metrics.mmd`; under ``dk.distributed.evaluate`` each rank
    computes the kernel sums of its row block and the sums are all-reduced."""

    Config = MMDConfig

    def _block_sums(self, rows: torch.Tensor, cols: torch.Tensor, diag_offset: int | None) -> torch.Tensor:
        """sum over the block of k_h for every h (minus the diagonal when ``diag_offset`` is set)."""
        hs = torch.tensor(self.config.bandwidths, dtype=torch.float64)
        total = torch.zeros(len(hs), dtype=torch.float64)
        chunk = self.config.chunk
        for s in range(0, rows.shape[0], chunk):
            d = torch.cdist(rows[s:s + chunk], cols) ** 2
            for j, h in enumerate(hs.tolist()):
                k = torch.exp(-d / (2 * h * h))
                total[j] += k.sum()
                if diag_offset is not None:
                    r = torch.arange(k.shape[0])
                    total[j] -= k[r, diag_offset + s + r].sum()
        return total

    def partial(self, samples, reference, rank=0, world=1):
        from .distributed import shard_range

        if reference is None:
            raise ConfigError("mmd compares two sets: pass a reference set", loc="reference")
        x, y = _matrix(samples, "samples"), _matrix(reference, "reference")
        if x.shape[1] != y.shape[1]:
            raise ShapeError(f"mmd: samples have {x.shape[1]} features per item, the reference {y.shape[1]}; "
                             "compare sets of the same shape")
        if x.shape[0] < 2 or y.shape[0] < 2:
            raise ShapeError(f"mmd needs at least 2 items in each set (unbiased estimate), got {x.shape[0]} and "
                             f"{y.shape[0]}")
        rx, ry = shard_range(x.shape[0], rank, world), shard_range(y.shape[0], rank, world)
        xr, yr = x[rx.start:rx.stop], y[ry.start:ry.stop]
        return {"xx": self._block_sums(xr, x, rx.start), "yy": self._block_sums(yr, y, ry.start),
                "xy": self._block_sums(xr, y, None),
                "n": torch.tensor([float(len(rx))], dtype=torch.float64),
                "m": torch.tensor([float(len(ry))], dtype=torch.float64)}

    def finalize(self, sums):
        n, m = float(sums["n"][0]), float(sums["m"][0])
        per_h = sums["xx"] / (n * (n - 1)) + sums["yy"] / (m * (m - 1)) - 2 * sums["xy"] / (n * m)
        return {"metric": self.name, "value": float(per_h.sum()), "per_bandwidth": per_h.tolist(),
                "bandwidths": list(self.config.bandwidths), "n": int(n), "m": int(m)}


def as_metric(metric: Any, bins: Sequence[float] | None = None, **params: Any) -> Metric:
    """A :class:`Metric` from a registered name / spec, a Metric or a per-item callable.

    A registered plain function counts as per-item when it was registered with
    ``per_item=True`` (``register("si-sdr", si_sdr, per_item=True)``)."""
    if isinstance(metric, Metric):
        if params:
            raise ConfigError(f"parameters {sorted(params)} given with a ready Metric object; set them when "
                              "creating it", loc="metric")
        return metric
    if isinstance(metric, (str, dict)):
        from .api import create
        from .config import split_spec
        from .plugins import get_registry

        name, spec_params = split_spec(metric, "metric")
        entry = get_registry().get("metric", name, loc="metric")
        obj = entry.obj
        if isinstance(obj, type) and issubclass(obj, Metric):
            if bins is not None:
                raise ConfigError(f"bins apply to per-item metrics; {name!r} is a set metric", loc="bins")
            return create("metric", metric, **params)
        if not entry.extra.get("per_item"):
            raise ConfigError(
                f"metric {name!r} is a plain set-level callable, which cannot be split across processes; its "
                "plugin should register it with per_item=True (if it scores one (estimate, reference) pair) or as "
                "a diffusekit.metrics.Metric with partial sums", loc="metric")
        return PerItem(obj, name=name, bins=bins, **{**spec_params, **params})
    if callable(metric):
        return PerItem(metric, bins=bins, **params)
    raise ConfigError(f"metric must be a registered name, a diffusekit.metrics.Metric or a callable "
                      f"fn(estimate, reference) -> float; got {type(metric).__name__}", loc="metric")


__all__ = ["Metric", "PerItem", "MMD", "as_metric"]

"""One network call on a doubled batch for the conditional and the null condition.

NFE convention (shared with the ONNX exporter, which folds CFG into the graph as one batched
call): a batched CFG evaluation is **one** network evaluation on a batch of 2B, so the inner
:class:`~diffusekit.denoiser.Denoiser` counts it once. Wrappers expose
``batch_factor = 2`` so cost comparisons can weigh it; with ``batched=False`` the two halves
are two calls (NFE 2).
"""

from __future__ import annotations

from typing import Any

import torch

from diffusekit import state as st
from diffusekit.denoiser import per_sample_time
from diffusekit.errors import CompatibilityError, ConfigError
from diffusekit.parameterization import Prediction


def cat_cond(a: Any, b: Any) -> Any:
    """Concatenate two raw conditions along the batch (tensors or dicts of tensors)."""
    if torch.is_tensor(a):
        return torch.cat([a, b.to(a.device)], 0)
    if isinstance(a, dict):
        return {k: cat_cond(a[k], b[k]) for k in a}
    raise ConfigError(f"cannot batch a condition of type {type(a).__name__}; use tensors or dicts of tensors",
                      loc="cond")


def null_of(conditioner: Any, cond: Any) -> Any:
    if cond is None:
        raise ConfigError("classifier-free guidance needs a condition: pass cond=... to Pipeline.sample",
                          loc="cond")
    if conditioner is None:
        raise CompatibilityError("classifier-free guidance needs a conditioner with a null condition "
                                 "(e.g. conditioner={'name': 'label', 'num_classes': K})")
    return conditioner.null(cond)


class PairPrediction:
    """The conditional and unconditional predictions of one (batched) evaluation."""

    def __init__(self, cond: Prediction, uncond: Prediction):
        self.cond = cond
        self.uncond = uncond


def conditional_pair(inner, conditioner, x: Any, t: Any, cond: Any, batched: bool = True) -> PairPrediction:
    """Evaluate the denoiser at ``cond`` and at its null condition."""
    t = per_sample_time(t, x)
    null = null_of(conditioner, cond)
    if not batched:
        return PairPrediction(inner(x, t, cond), inner(x, t, null))
    n = t.shape[0]
    pred = inner(st.concat([x, x]), torch.cat([t, t]), cat_cond(cond, null))
    kinds = pred.kinds
    values = {k: pred.get(k) for k in kinds}
    if any(k in ("x0", "eps", "score", "v") for k in kinds):
        values.setdefault("x0", pred.x0)
        values.setdefault("eps", pred.eps)
    c_vals = {k: st.index(v, slice(None, n)) for k, v in values.items()}
    u_vals = {k: st.index(v, slice(n, None)) for k, v in values.items()}
    return PairPrediction(Prediction(pred.process, x, t, cond, **c_vals),
                          Prediction(pred.process, x, t, null, **u_vals))

"""``torch.nn.Module`` views of a pipeline that the dynamo exporter traces.

:class:`DenoiserGraph` is one denoiser evaluation: conditioner -> network -> (classifier-free
guidance folded in as one batched call) -> the parameterization's outputs.

CFG folding. With guidance scale w the guided output is ``u + w (c - u)`` where ``c`` / ``u``
are the network outputs for the condition and the null condition (Ho & Salimans 2022, eq. 6).
Every Gaussian conversion of the Prediction (x0, eps, score, v) is affine in the network
output with coefficients that depend only on (x_t, t) (see ``diffusekit.parameterization``),
and the CFG weights (1 - w) + w sum to one, so combining in the raw output space equals
combining in any other space: folding before the conversion is exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
from torch import nn

from diffusekit.errors import CompatibilityError
from diffusekit.parameterization import Prediction
from diffusekit.process import AffineGaussian

GAUSSIAN_KINDS = ("x0", "eps", "score", "v")


@dataclass(frozen=True)
class FoldedGuidance:
    """Classifier-free guidance that can be folded into a graph: ``u + scale (c - u)``.

    ``combine`` (optional) replaces the default linear combination; ``source`` is the
    guidance object it came from (removed from the pipeline by the onnxruntime backend).
    """

    scale: float
    null: Callable[[Any], Any]
    combine: Optional[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = None
    source: Any = None


def guidance_scale(g) -> float | None:
    """The CFG scale of a guidance object, or None if it is not plain CFG.

    A guidance is foldable when it declares ``foldable_cfg = True`` (or is registered as
    ``cfg``) and exposes its scale as ``g.scale``, ``g.config.scale`` or ``g.config.guidance_scale``.
    """
    spec = getattr(g, "_dk_spec", None)
    name = spec[1] if spec else None
    if not (getattr(g, "foldable_cfg", False) or name == "cfg"):
        return None
    for owner, attr in ((g, "scale"), (getattr(g, "config", None), "scale"),
                        (getattr(g, "config", None), "guidance_scale"), (getattr(g, "config", None), "w")):
        value = getattr(owner, attr, None) if owner is not None else None
        if isinstance(value, (int, float)):
            return float(value)
    return None


def fold_guidance(pipe, enabled: bool = True) -> FoldedGuidance | None:
    """Find the pipeline's classifier-free guidance and describe it for folding.

    Raises :class:`CompatibilityError` if the pipeline has guidance that cannot be folded
    (classifier guidance, DPS, per-step hooks): export the unguided denoiser
    (``fold_guidance=False``) and apply that guidance in Python.
    """
    if not enabled or not pipe.guidance:
        return None
    folded = []
    for g in pipe.guidance:
        scale = guidance_scale(g)
        if scale is None:
            raise CompatibilityError(
                f"guidance {type(g).__name__} cannot be folded into an ONNX graph (only classifier-free "
                "guidance with a scale can); export with fold_guidance=False and apply it in Python")
        folded.append((g, scale))
    if len(folded) > 1:
        raise CompatibilityError(f"{len(folded)} guidance components: at most one CFG can be folded into a graph")
    g, scale = folded[0]
    conditioner = pipe.conditioner
    null = getattr(g, "null", None) or getattr(conditioner, "null", None)
    if null is None:
        raise CompatibilityError("classifier-free guidance needs a null condition: give the pipeline a "
                                 "conditioner with null(cond)", )
    return FoldedGuidance(scale=scale, null=null, combine=getattr(g, "combine", None), source=g)


class DenoiserGraph(nn.Module):
    """``(x_t, t[, cond]) -> (raw[, x0])``: one (guided) denoiser evaluation.

    ``raw`` is the network output in the parameterization's own kind (what
    ``network(x_t, t, cond)`` returns, so the onnxruntime backend can stand in for the
    network); ``x0`` is the data prediction from the parameterization's conversion
    (AffineGaussian processes only). ``cond`` is the *raw* condition: the conditioner runs
    inside the graph.
    """

    def __init__(self, network: nn.Module, parameterization, process, conditioner=None,
                 guidance: FoldedGuidance | None = None, with_x0: bool = True, fp16: bool = False):
        super().__init__()
        self.network = network
        self.conditioner = conditioner
        self.parameterization = parameterization
        self.process = process
        self.guidance = guidance
        self.fp16 = fp16
        kind = getattr(parameterization, "output", "x0") if parameterization is not None else "out"
        self.kind = kind
        self.with_x0 = bool(with_x0 and kind in GAUSSIAN_KINDS and kind != "x0"
                            and isinstance(process, AffineGaussian))

    @property
    def output_names(self) -> list[str]:
        return [self.kind] + (["x0"] if self.with_x0 else [])

    def encode(self, cond):
        if cond is None or self.conditioner is None:
            return cond
        return self.conditioner(cond)

    def raw(self, x: torch.Tensor, t: torch.Tensor, cond=None) -> torch.Tensor:
        """The (guided) network output, in float32."""
        xin, tin = (x.half(), t) if self.fp16 else (x, t)
        g = self.guidance
        if g is None or cond is None:
            out = self.network(xin, tin, self.encode(cond))
        else:
            both = torch.cat([self.encode(cond), self.encode(g.null(cond))], dim=0)
            out = self.network(torch.cat([xin, xin], 0), torch.cat([tin, tin], 0), both)
            c, u = out.unflatten(0, (2, -1)).unbind(0)  # no slicing by the (symbolic) batch size
            if g.combine is not None:
                out = g.combine(u, c)
            elif self.kind == "logits":  # mix log-probabilities, as CFG does for discrete models
                u, c = torch.log_softmax(u, -1), torch.log_softmax(c, -1)
                out = u + g.scale * (c - u)
            else:
                out = u + g.scale * (c - u)
        return out.float() if self.fp16 else out

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond=None):
        out = self.raw(x, t, cond)
        if not self.with_x0:
            return out
        pred = Prediction(self.process, x, t, cond, **{self.kind: out})
        return out, pred.x0

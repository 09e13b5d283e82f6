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
from typing import Any, Callable

import torch
from torch import nn

from diffusekit import state as st
from diffusekit.conditioner import Conditioner
from diffusekit.errors import CompatibilityError
from diffusekit.guidance import cfg_mix
from diffusekit.parameterization import Prediction
from diffusekit.process import AdditiveGaussian

GAUSSIAN_KINDS = ("x0", "eps", "score", "v")


@dataclass(frozen=True)
class FoldedGuidance:
    """Classifier-free guidance folded into a graph: ``u + scale (c - u)``.

    ``null`` gives the null raw condition (the conditioner's); ``source`` is the guidance
    object it came from (removed from the pipeline by the onnxruntime backend).
    """

    scale: float
    null: Callable[[Any], Any]
    source: Any = None


def fold_guidance(pipe, enabled: bool = True) -> FoldedGuidance | None:
    """Find the pipeline's classifier-free guidance and describe it for folding.

    A guidance folds when it declares ``foldable_cfg = True`` (:class:`diffusekit.guidance.Guidance`;
    such a guidance has a ``scale``) and the pipeline's conditioner gives ``null(cond)``.
    Raises :class:`CompatibilityError` if the pipeline has guidance that cannot be folded
    (CFG++, classifier guidance, DPS, per-step hooks): export the unguided denoiser
    (``fold_guidance=False``) and apply that guidance in Python.
    """
    if not enabled or not pipe.guidance:
        return None
    for g in pipe.guidance:
        if not g.foldable_cfg:
            raise CompatibilityError(
                f"guidance {type(g).__name__} cannot be folded into an ONNX graph (only classifier-free "
                "guidance with a scale, foldable_cfg = True, can); export with fold_guidance=False and apply "
                "it in Python")
    if len(pipe.guidance) > 1:
        raise CompatibilityError(f"{len(pipe.guidance)} guidance components: at most one CFG can be folded "
                                 "into a graph")
    g = pipe.guidance[0]
    conditioner = pipe.conditioner
    if not isinstance(conditioner, Conditioner):
        raise CompatibilityError("classifier-free guidance needs a null condition: give the pipeline a "
                                 "conditioner with null(cond) (a diffusekit.conditioner.Conditioner)")
    return FoldedGuidance(scale=float(g.scale), null=conditioner.null, source=g)


class DenoiserGraph(nn.Module):
    """``(x_t, t[, cond]) -> (raw leaves[, x0 leaves])``: one (guided) denoiser evaluation.

    ``raw`` is the network output in the parameterization's own kind (what
    ``network(x_t, t, cond)`` returns, so the onnxruntime backend can stand in for the
    network); ``x0`` is the data prediction from the parameterization's conversion
    (AdditiveGaussian processes only; a Product process exports its raw per-key outputs).
    ``cond`` is the *raw* condition: the conditioner runs inside the graph.

    States and outputs may be dicts of tensors (Product processes): the graph returns one
    output per leaf, raw leaves first, then x0 leaves, each in :func:`diffusekit.state.leaves`
    order and named ``<kind>.<leaf>`` (:meth:`describe` records the names; a Tensor output is
    named ``<kind>``).
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
        kind = parameterization.output if parameterization is not None else "out"
        self.kind = kind
        self.with_x0 = bool(with_x0 and kind in GAUSSIAN_KINDS and kind != "x0"
                            and isinstance(process, AdditiveGaussian))
        self._raw_names: list[str] | None = None
        self._x0_names: list[str] = []
        self._raw_shape: Any = None

    @property
    def output_names(self) -> list[str]:
        """Graph output names (after :meth:`describe`; before it, those of a Tensor state)."""
        if self._raw_names is not None:
            return self._raw_names + self._x0_names
        return [self.kind] + (["x0"] if self.with_x0 else [])

    @property
    def raw_names(self) -> list[str]:
        """Names of the raw (network) outputs: the first ``len(raw_names)`` graph outputs."""
        return list(self._raw_names) if self._raw_names is not None else [self.kind]

    @property
    def raw_shape(self) -> Any:
        """Per-sample shape of the raw output with its nesting (:func:`diffusekit.state.shape_of`)."""
        return self._raw_shape

    def describe(self, *inputs: Any) -> list[str]:
        """Run once on ``inputs`` and record the output names (one per leaf) and structure."""
        with torch.no_grad():
            out = self.raw(*inputs)
            self._x0_names = list(st.flatten(self._x0(out, *inputs), "x0")) if self.with_x0 else []
        self._raw_names = list(st.flatten(out, self.kind))
        self._raw_shape = st.shape_of(out)
        return self.output_names

    def encode(self, cond):
        if cond is None or self.conditioner is None:
            return cond
        return self.conditioner(cond)

    def raw(self, x: Any, t: torch.Tensor, cond=None) -> Any:
        """The (guided) network output (a Tensor or a dict of them), in float32."""
        xin = st.to(x, dtype=torch.float16) if self.fp16 else x
        g = self.guidance
        if g is None or cond is None:
            out = self.network(xin, t, self.encode(cond))
        else:
            both = st.concat([self.encode(cond), self.encode(g.null(cond))])
            out = self.network(st.concat([xin, xin]), torch.cat([t, t], 0), both)
            # no slicing by the (symbolic) batch size: split the doubled batch in two halves
            c = st.map_state(lambda v: v.unflatten(0, (2, -1))[0], out)
            u = st.map_state(lambda v: v.unflatten(0, (2, -1))[1], out)
            logits = self.kind == "logits"
            out = st.zip_map(lambda uu, cc: cfg_mix(uu, cc, g.scale, logits), u, c)
        return st.map_state(lambda v: v.float(), out) if self.fp16 else out

    def _x0(self, out: Any, x: Any, t: torch.Tensor, cond=None) -> Any:
        return Prediction(self.process, x, t, cond, **{self.kind: out}).x0

    def forward(self, x: Any, t: torch.Tensor, cond=None):
        out = self.raw(x, t, cond)
        leaves = st.leaf_list(out)
        if self.with_x0:
            leaves += st.leaf_list(self._x0(out, x, t, cond))
        return leaves[0] if len(leaves) == 1 else tuple(leaves)

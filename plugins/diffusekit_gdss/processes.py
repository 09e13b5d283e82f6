"""The GDSS forward process: a system of two SDEs over node features and adjacency
(Jo, Lee, Hwang 2022, "Score-based Generative Modeling of Graphs via the System of Stochastic
Differential Equations", eq. 3).

The state is ``{"x": X (B, N, F), "adj": A (B, N, N)}``. X and A diffuse independently, each
with its own VP or VE SDE from the score-SDE plugin (:mod:`diffusekit_sde.processes`), sharing
the time t. Graphs with fewer than N nodes are padded; the node flags (B, N) (1 for a real
node, 0 for padding) travel as the condition ``cond`` and mask everything:

* node noise: eps_X * flags (padded rows are zero);
* adjacency noise: z = triu(eps, 1) + triu(eps, 1)^T (symmetric, zero diagonal, unit variance
  off the diagonal), then z * flags_i * flags_j;
* the prior is that noise times the prior std, so padded entries stay exactly zero through
  perturbation, prior and every sampler step (the networks mask their scores the same way).

Every stochastic sampler step draws its noise through ``noise_like``, the hook that
:class:`diffusekit.process.AdditiveGaussian` declares, so the score-SDE samplers (``pc``,
``euler-maruyama``, ``reverse-diffusion``) and this plugin's ``s4`` keep the symmetry and the
padding.
"""

from __future__ import annotations

from typing import Any, Literal, Mapping, Optional

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from diffusekit.config import ComponentConfig
from diffusekit.process import ProductProcess
from diffusekit.random import rand, randn_like
from diffusekit_sde.processes import VE, VP


# ----------------------------------------------------------------------------- masking
def node_mask(flags: Optional[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """x (B, N, F) with the rows of padded nodes set to zero (``flags`` None: unchanged)."""
    if flags is None:
        return x
    return x * flags.to(x.dtype).unsqueeze(-1)


def adj_mask(flags: Optional[torch.Tensor], a: torch.Tensor) -> torch.Tensor:
    """a (B, N, N) with the rows and columns of padded nodes set to zero."""
    if flags is None:
        return a
    f = flags.to(a.dtype)
    return a * f.unsqueeze(-1) * f.unsqueeze(-2)


def symmetric_noise(eps: torch.Tensor) -> torch.Tensor:
    """triu(eps, 1) + its transpose: symmetric, zero diagonal, N(0, 1) off the diagonal."""
    up = torch.triu(eps, diagonal=1)
    return up + up.transpose(-1, -2)


def flags_of(cond: Any) -> Optional[torch.Tensor]:
    """The node flags carried by ``cond`` (a (B, N) tensor or None)."""
    if cond is None:
        return None
    if torch.is_tensor(cond):
        return cond
    from diffusekit.errors import ShapeError

    raise ShapeError(f"cond: GDSS takes the node flags as a (batch, nodes) tensor of 0 / 1, got {type(cond).__name__}")


class _NodeNoise:
    """Node-feature component: noise and prior masked row-wise by the flags."""

    def noise_like(self, x, generator=None, cond=None):
        return node_mask(flags_of(cond), randn_like(x, generator))

    def prior(self, n, shape, cond=None, generator=None, device="cpu", dtype=torch.float32):
        z = self.noise_like(torch.empty((n, *shape), device=device, dtype=dtype), generator, cond)
        return z * self.prior_std()


class _AdjacencyNoise:
    """Adjacency component: symmetric zero-diagonal noise and prior masked by the flags."""

    def noise_like(self, x, generator=None, cond=None):
        return adj_mask(flags_of(cond), symmetric_noise(randn_like(x, generator)))

    def prior(self, n, shape, cond=None, generator=None, device="cpu", dtype=torch.float32):
        z = self.noise_like(torch.empty((n, *shape), device=device, dtype=dtype), generator, cond)
        return z * self.prior_std()


class NodeVP(_NodeNoise, VP):
    """VP SDE over node features X (B, N, F), flag-masked."""


class NodeVE(_NodeNoise, VE):
    """VE SDE over node features X (B, N, F), flag-masked."""


class AdjacencyVP(_AdjacencyNoise, VP):
    """VP SDE over a symmetric adjacency A (B, N, N): symmetric zero-diagonal, flag-masked noise."""


class AdjacencyVE(_AdjacencyNoise, VE):
    """VE SDE over a symmetric adjacency A (B, N, N): symmetric zero-diagonal, flag-masked noise."""


# ----------------------------------------------------------------------------- config
class ComponentSDE(BaseModel):
    """One component's SDE: ``vp`` (beta_min = lo, beta_max = hi) or ``ve`` (sigma_min = lo,
    sigma_max = hi)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    sde: Literal["vp", "ve"] = Field(..., description="'vp' or 've'")
    lo: float = Field(..., gt=0, description="beta_min (VP) or sigma_min (VE)")
    hi: float = Field(..., gt=0, description="beta_max (VP) or sigma_max (VE)")

    @model_validator(mode="after")
    def _order(self):
        if self.hi <= self.lo:
            raise ValueError(f"hi ({self.hi}) must exceed lo ({self.lo})")
        return self


#: the paper's per-dataset SDEs (GDSS configs): (X, A)
PRESETS: dict[str, tuple[ComponentSDE, ComponentSDE]] = {
    "community-small": (ComponentSDE(sde="vp", lo=0.1, hi=1.0), ComponentSDE(sde="vp", lo=0.1, hi=1.0)),
    "ego-small": (ComponentSDE(sde="vp", lo=0.1, hi=1.0), ComponentSDE(sde="vp", lo=0.1, hi=1.0)),
    "grid": (ComponentSDE(sde="vp", lo=0.1, hi=1.0), ComponentSDE(sde="vp", lo=0.2, hi=0.8)),
    "enzymes": (ComponentSDE(sde="vp", lo=0.1, hi=1.0), ComponentSDE(sde="ve", lo=0.2, hi=1.0)),
    "qm9": (ComponentSDE(sde="ve", lo=0.1, hi=1.0), ComponentSDE(sde="ve", lo=0.1, hi=1.0)),
}


class GDSSConfig(ComponentConfig):
    preset: Literal["community-small", "ego-small", "grid", "enzymes", "qm9"] = Field(
        "community-small", description="dataset whose SDE pair (from the paper) is the default")
    x: Optional[ComponentSDE] = Field(None, description="node-feature SDE (overrides the preset)")
    adj: Optional[ComponentSDE] = Field(None, description="adjacency SDE (overrides the preset)")
    max_nodes: int = Field(20, ge=1, le=4096, description="N, nodes per (padded) graph")
    num_features: int = Field(10, ge=1, description="F, node feature channels")
    node_counts: Optional[list[float]] = Field(
        None, description="weights of graph sizes 1..max_nodes for unconditional sampling "
                          "(None: every graph has max_nodes nodes)")
    train_eps: float = Field(1e-5, gt=0, lt=1, description="training times t ~ U(train_eps, 1)")
    sampling_eps: float = Field(1e-3, gt=0, lt=1, description="sampling ends at t = sampling_eps")

    @model_validator(mode="after")
    def _counts(self):
        if self.node_counts is not None:
            if len(self.node_counts) != self.max_nodes:
                raise ValueError(f"node_counts has {len(self.node_counts)} weights; give one per graph size "
                                 f"1..max_nodes ({self.max_nodes})")
            if any(w < 0 for w in self.node_counts) or sum(self.node_counts) <= 0:
                raise ValueError("node_counts must be non-negative weights with a positive sum")
        return self


def _component(spec: ComponentSDE, vp_cls, ve_cls, cfg: GDSSConfig):
    eps = dict(train_eps=cfg.train_eps, sampling_eps=cfg.sampling_eps)
    if spec.sde == "vp":
        return vp_cls(beta_min=spec.lo, beta_max=spec.hi, **eps)
    return ve_cls(sigma_min=spec.lo, sigma_max=spec.hi, **eps)


class GDSS(ProductProcess):
    """GDSS: independent VP / VE SDEs over node features X and a symmetric adjacency A, node
    flags (B, N) as the condition."""

    Config = GDSSConfig
    preferred_samplers = ("s4", "pc")
    default_parameterization = "eps"

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        cfg = self.config
        x_spec, a_spec = PRESETS[cfg.preset]
        self._components = {
            "adj": _component(cfg.adj or a_spec, AdjacencyVP, AdjacencyVE, cfg),
            "x": _component(cfg.x or x_spec, NodeVP, NodeVE, cfg),
        }

    @property
    def components(self) -> Mapping[str, Any]:
        return self._components

    def shape_for(self, nodes: int) -> dict[str, tuple[int, ...]]:
        """Per-sample shape of a state of ``nodes`` nodes (``sample_shape`` at max_nodes)."""
        return {"adj": (nodes, nodes), "x": (nodes, self.config.num_features)}

    @property
    def sample_shape(self) -> dict[str, tuple[int, ...]]:
        return self.shape_for(self.config.max_nodes)

    @property
    def train_t_min(self) -> float:  # type: ignore[override]
        return float(self.config.train_eps)

    def sample_time(self, n, generator=None, device="cpu"):
        eps = self.config.train_eps
        return eps + (1.0 - eps) * rand((n,), generator, device, torch.float32)

    def sample_cond(self, n, generator=None, device="cpu"):
        """Node flags for ``n`` graphs: sizes drawn from ``node_counts`` (one uniform draw per
        sample from its own generator), the first ``size`` nodes flagged."""
        c = self.config
        if c.node_counts is None:
            return torch.ones(n, c.max_nodes, device=device)
        w = torch.tensor(c.node_counts, dtype=torch.float64)
        cdf = torch.cumsum(w / w.sum(), 0)
        u = rand((n,), generator, "cpu", torch.float64)
        sizes = torch.searchsorted(cdf, u, right=True).clamp_max(c.max_nodes - 1) + 1
        return (torch.arange(c.max_nodes).unsqueeze(0) < sizes.unsqueeze(1)).to(device=device, dtype=torch.float32)

    def conformance_example(self, n, generator=None):
        """Random graphs of 3..max_nodes nodes (edge probability 0.5) with degree one-hot features."""
        c = self.config
        sizes = 1 + (rand((n,), generator, "cpu", torch.float64) * c.max_nodes).long().clamp(0, c.max_nodes - 1)
        flags = (torch.arange(c.max_nodes).unsqueeze(0) < sizes.unsqueeze(1)).float()
        up = (rand((n, c.max_nodes, c.max_nodes), generator, "cpu") < 0.5).float().triu(1)
        adj = adj_mask(flags, up + up.transpose(1, 2))
        from .data import degree_features

        return {"x": degree_features(adj, flags, c.num_features), "adj": adj}, flags

    def prior(self, n, shape, cond=None, generator=None, device="cpu", dtype=torch.float32):
        """N(0, prior std^2) per component, masked by the flags. Flags narrower than
        ``max_nodes`` (B, k) give states of k nodes (no padding beyond them): sampling graphs of
        one size k then costs what a k-node model would (:func:`diffusekit_gdss.sample_by_size`)."""
        flags = flags_of(cond)
        if flags is not None and flags.shape[1] < self.config.max_nodes and shape == self.sample_shape:
            shape = self.shape_for(flags.shape[1])
        return super().prior(n, shape, cond=cond, generator=generator, device=device, dtype=dtype)

    def compact(self, x0, cond=None):
        """Trim the padded nodes beyond the last node flagged in any graph of the batch (flags,
        X rows, A rows and columns). Padded nodes carry no noise, no score and no loss, and the
        networks are padding-invariant, so the per-graph losses are those of the padded batch."""
        flags = flags_of(cond)
        if flags is None:
            return x0, cond
        used = torch.nonzero(flags.sum(0) > 0).flatten()
        k = int(used.max()) + 1 if used.numel() else 1
        if k >= flags.shape[1]:
            return x0, cond
        return {"adj": x0["adj"][:, :k, :k], "x": x0["x"][:, :k]}, flags[:, :k]

    def check_state(self, x, shape=None, loc="x"):
        """A dict {"adj": (B, N, N), "x": (B, N, F)}; N may be below max_nodes (a batch
        trimmed by :meth:`compact`)."""
        from diffusekit.errors import ShapeError

        if isinstance(x, Mapping) and torch.is_tensor(x.get("adj")) and x["adj"].ndim == 3 and shape is not None:
            n = x["adj"].shape[1]
            if n < self.config.max_nodes and shape == self.sample_shape:
                shape = self.shape_for(n)
        super().check_state(x, shape, loc)
        a = x["adj"]
        if a.ndim != 3 or a.shape[1] != a.shape[2]:
            raise ShapeError(f"{loc}.adj: expected (batch, N, N) adjacency matrices, got {tuple(a.shape)}")


__all__ = ["GDSS", "GDSSConfig", "ComponentSDE", "PRESETS", "NodeVP", "NodeVE", "AdjacencyVP", "AdjacencyVE",
           "node_mask", "adj_mask", "symmetric_noise", "flags_of"]

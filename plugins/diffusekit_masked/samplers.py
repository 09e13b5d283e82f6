"""Samplers for the masked process: ``ancestral`` (MDLM), ``first-hitting`` (Zheng et al. 2024)
and ``confidence`` (MaskGIT-style ordering). All categorical draws go through
:func:`categorical.sample_categorical` in ``precision`` (float64 by default).

The samplers need the absorbing state (:class:`~diffusekit.process.Absorbing`, ``mask_id``).
Every sampler starts from a state whose masked positions are filled; unmasked positions of the
initial state (a prefix, an inpainting context) are never changed.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

import torch
from pydantic import Field

from diffusekit.config import ComponentConfig
from diffusekit.network import time_conditioned
from diffusekit.process import Absorbing
from diffusekit.random import rand
from diffusekit.sampler import Plan, Sampler, SamplerConfig, StepSampler

from .categorical import Precision, dtype_of, sample_categorical


def _probs(pred, precision: str) -> torch.Tensor:
    """p(x0 | x_t) over the vocab_size + 1 ids (mask column 0), in the sampling precision."""
    return torch.softmax(pred.logits.to(dtype_of(precision)), dim=-1)


def _time_agnostic(denoiser) -> bool:
    """The denoiser's network declares ``time_conditioned = False`` (:class:`diffusekit.network.Network`)."""
    return not time_conditioned(denoiser.network)


# --------------------------------------------------------------------------- ancestral
class AncestralConfig(SamplerConfig):
    steps: int = Field(1000, ge=1, le=1_000_000, description="number of steps on a uniform grid 1 -> 0")
    precision: Precision = Field("float64", description="dtype of the categorical draws")
    cache: bool = Field(True, description="reuse the last prediction when no token changed in the previous "
                                          "step (only for networks with time_conditioned = False; one host "
                                          "sync per step to decide)")
    final: Literal["sample", "argmax"] = Field(
        "sample", description="last step (t -> 0): sample every remaining mask (exact) or take the argmax (MDLM)")


class Ancestral(StepSampler):
    """MDLM ancestral steps t -> s: a masked token becomes v with probability
    (alpha_s - alpha_t) / (1 - alpha_t) p(v | x_t) and stays masked with (1 - alpha_s) / (1 - alpha_t)
    (docs/plugins/masked.md). Tokens are sampled independently given x_t, so with few steps the
    sampler factorises the joint (its known error); at s = 0 every mask is filled, so the
    result never contains a mask (or NaN: the plan has no division at t = 0).
    """

    Config = AncestralConfig
    requires = (Absorbing,)
    stochastic = True
    accepts_parameterizations = frozenset({"logits"})

    @property
    def caches_predictions(self) -> bool:  # type: ignore[override]
        return self.config.cache

    def build_plan(self, process) -> Plan:
        t = torch.linspace(1.0, 0.0, self.config.steps + 1, dtype=torch.float64)
        a_t, a_s = process.alpha(t[:-1]), process.alpha(t[1:])
        unmask = (a_s - a_t) / (1 - a_t)
        return Plan(t, {"unmask": unmask, "stay": 1 - unmask})

    def plan(self, process, x):
        key = (id(process), x.device)
        cache = self.__dict__.setdefault("_plans", {})
        if key not in cache:
            cache.clear()
            cache[key] = self.build_plan(process).to(x.device, dtype_of(self.config.precision))
        return cache[key]

    def init_carry(self, plan, x, process, cond):
        return {"probs": None, "changed": True}

    def step(self, x, i, plan, denoiser, cond, generator, carry):
        process = denoiser.process
        mask_id = process.mask_id
        reuse = (self.config.cache and carry["probs"] is not None and _time_agnostic(denoiser)
                 and not bool(carry["changed"]))  # the only host sync, and only with caching on
        pred = None
        if reuse:
            probs = carry["probs"]
        else:
            t = plan.t[i].to(torch.float32).expand(x.shape[0])
            pred = denoiser(x, t, cond)
            probs = _probs(pred, self.config.precision)
        is_mask = x == mask_id
        last = i == plan.num_steps - 1
        if last and self.config.final == "argmax":
            new = probs.argmax(-1)
        else:
            # categorical over (tokens scaled by the unmask probability, mask column = stay)
            cat = probs * plan.coef["unmask"][i]
            cat[..., mask_id] = plan.coef["stay"][i]
            new = sample_categorical(cat, generator, self.config.precision)
        x_next = torch.where(is_mask, new, x)
        changed = (x_next != x).any() if self.config.cache else True
        return x_next, {"probs": probs, "changed": changed}, pred


# --------------------------------------------------------------------------- first hitting
class FirstHittingConfig(ComponentConfig):
    precision: Precision = Field("float64", description="dtype of the time and token draws")


class FirstHitting(Sampler):
    """First-hitting sampler (FHS, Zheng et al. 2024, Alg. 1): with n masked tokens at time t,
    the next unmasking time is s = alpha^{-1}(1 - (1 - alpha_t) u^{1/n}), u ~ U(0, 1) (the
    largest of n first-hitting times; linear schedule: s = t u^{1/n}); one masked position,
    chosen uniformly, is then drawn from p(. | x_t) at time s. Exactly one network call per
    masked token (L calls from the all-mask prior); the law equals the continuous-time
    reverse process. No step count: ``steps`` is not a parameter. Steps are sync-free;
    the number of masked tokens is read once at the start.
    """

    Config = FirstHittingConfig
    requires = (Absorbing,)
    stochastic = True
    accepts_parameterizations = frozenset({"logits"})

    def expected_nfe(self) -> Optional[int]:
        return None  # = number of masked tokens in the initial state

    def sample(self, denoiser, process, x, cond=None, generator=None, callback=None):
        mask_id = process.mask_id
        dt = dtype_of(self.config.precision)
        b, length = x.shape
        n = (x == mask_id).sum(1)                              # (B,) masked tokens per sample
        steps = int(n.max()) if x.numel() else 0               # one sync, before the loop
        t = torch.ones(b, dtype=dt, device=x.device)
        for i in range(steps):
            active = n > 0
            u = rand((b,), generator, x.device, dt)
            nf = n.clamp_min(1).to(dt)
            a_s = 1 - (1 - process.alpha(t)) * u ** (1 / nf)
            s = torch.where(active, process.t_of_alpha(a_s), t)
            pred = denoiser(x, s.to(torch.float32), cond)
            # pick one masked position uniformly: argmax of uniforms over masked positions
            scores = rand((b, length), generator, x.device, dt).masked_fill(x != mask_id, -1.0)
            pos = scores.argmax(1)
            logits = pred.logits.gather(1, pos[:, None, None].expand(b, 1, pred.logits.shape[-1])).squeeze(1)
            probs = torch.softmax(logits.to(dt), dim=-1)        # only the chosen position: (B, V + 1)
            tok = sample_categorical(probs, generator, self.config.precision)
            cur = x.gather(1, pos[:, None]).squeeze(1)
            x = x.scatter(1, pos[:, None], torch.where(active, tok, cur)[:, None])
            n = n - active.long()
            t = s
            if callback is not None:
                out = callback({"i": i, "t": s, "x": x, "prediction": pred})
                if out is not None:
                    x = out
                    n = (x == mask_id).sum(1)
        return x


# --------------------------------------------------------------------------- confidence
class ConfidenceConfig(SamplerConfig):
    steps: int = Field(16, ge=1, le=100_000, description="number of network calls")
    precision: Precision = Field("float64", description="dtype of the categorical draws")
    temperature: float = Field(1.0, ge=0, description="token sampling temperature (0: argmax)")
    choice_noise: float = Field(0.0, ge=0, description="MaskGIT choice temperature: Gumbel noise added "
                                                         "to log-confidence, annealed linearly to 0")
    schedule: Literal["process", "cosine", "linear"] = Field(
        "process", description="fraction still masked after step k: the process's 1 - alpha, or "
                               "MaskGIT's cosine / linear")


class Confidence(StepSampler):
    """Confidence-ordered unmasking (MaskGIT, Chang et al. 2022): each step samples a token for
    every masked position, then keeps the ones with the highest log p(token) (optionally with
    annealed Gumbel noise) so that a fraction gamma(t_{k+1}) of the initially masked tokens
    stays masked; at the last step every mask is filled. Not an exact sampler of the model:
    a deterministic-order heuristic that often helps few-step quality (mdlm#35, #36)."""

    Config = ConfidenceConfig
    requires = (Absorbing,)
    stochastic = True
    accepts_parameterizations = frozenset({"logits"})

    def build_plan(self, process) -> Plan:
        k = self.config.steps
        t = torch.linspace(1.0, 0.0, k + 1, dtype=torch.float64)
        if self.config.schedule == "process":
            frac = 1 - process.alpha(t) / 1.0
            frac = (frac - frac[-1]) / (frac[0] - frac[-1])  # 1 at the start, 0 at the end
        elif self.config.schedule == "cosine":
            frac = torch.cos(0.5 * torch.pi * (1 - t))
        else:
            frac = t.clone()
        frac[-1] = 0.0
        return Plan(t, {"frac": frac[1:], "noise": self.config.choice_noise * t[1:]})

    def plan(self, process, x):
        key = (id(process), x.device)
        cache = self.__dict__.setdefault("_plans", {})
        if key not in cache:
            cache.clear()
            cache[key] = self.build_plan(process).to(x.device, torch.float64)
        return cache[key]

    def init_carry(self, plan, x, process, cond):
        return {}

    def step(self, x, i, plan, denoiser, cond, generator, carry):
        mask_id = denoiser.process.mask_id
        if i == 0:  # masked tokens in the initial state, the reference for the unmasking schedule
            carry = {"n0": (x == mask_id).sum(1)}
        dt = dtype_of(self.config.precision)
        t = plan.t[i].to(torch.float32).expand(x.shape[0])
        pred = denoiser(x, t, cond)
        logp = pred.logits.to(dt)
        if self.config.temperature == 0:
            cand = logp.argmax(-1)
        else:
            cand = sample_categorical(torch.softmax(logp / self.config.temperature, -1), generator,
                                      self.config.precision)
        conf = logp.gather(-1, cand[..., None]).squeeze(-1)
        u = rand(x.shape, generator, x.device, dt).clamp_min(1e-300)
        conf = conf + plan.coef["noise"][i].to(dt) * -torch.log(-torch.log(u))
        is_mask = x == mask_id
        conf = conf.masked_fill(~is_mask, float("-inf"))
        keep_masked = torch.floor(carry["n0"].to(torch.float64) * plan.coef["frac"][i] + 1e-9).long()
        n_reveal = is_mask.sum(1) - keep_masked                               # (B,)
        rank = conf.argsort(dim=1, descending=True).argsort(dim=1)
        reveal = is_mask & (rank < n_reveal[:, None])
        return torch.where(reveal, cand, x), carry, pred

"""Test-side reference pieces: a deterministic DDIM sampler (Song et al. 2021, eq. 12 with
eta = 0: x_s = a_s x0_hat + c_s eps_hat) that reads x0 and eps separately (``renoise_eps``),
and the class-conditional oracle problems shared by the guidance tests."""

from __future__ import annotations

import torch

import diffusekit as dk
from diffusekit.sampler import Plan, SamplerConfig, StepSampler
from diffusekit.process import AffineGaussian, bcast
from diffusekit.testing import GaussianMixture
from diffusekit_guidance.oracles import ClassConditionalMixture, ClassConditionalOracle


class ReferenceDDIM(StepSampler):
    """DDIM (eta = 0) on a uniform grid; the last step lands on t_min."""

    Config = SamplerConfig
    requires = (AffineGaussian,)
    renoise_eps = True

    def build_plan(self, process):
        t = torch.linspace(process.t_max, process.t_min, self.config.steps + 1, dtype=torch.float64)
        a, _, c = process.coefficients(t)
        return Plan(t, {"a": a, "c": c})

    def step(self, x, i, plan, denoiser, cond, generator, carry):
        pred = denoiser(x, plan.t[i].expand(x.shape[0]), cond)
        a_s, c_s = plan.coef["a"][i + 1], plan.coef["c"][i + 1]
        return a_s * pred.x0 + c_s * pred.eps, None, pred


def vp():
    return dk.create("process", "vp")


def two_class_mixture() -> ClassConditionalMixture:
    """Four overlapping modes on a ring, classes alternate: CFG purity is visibly < 1 at w = 1."""
    gm = GaussianMixture.ring(k=4, radius=1.0, std=0.45)
    return ClassConditionalMixture(gm, [0, 1, 0, 1])


def conditional_pipeline(data: ClassConditionalMixture, sampler, guidance=None, process=None):
    process = process or vp()
    return dk.Pipeline(process=process, network=ClassConditionalOracle(data, process), parameterization="x0",
                       sampler=sampler, guidance=guidance,
                       conditioner={"name": "label", "num_classes": data.num_classes, "dropout": 0.0},
                       sample_shape=(data.dim,))

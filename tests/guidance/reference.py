"""Shared pieces of the guidance tests: the class-conditional oracle problem and samplers."""

from __future__ import annotations

import torch

import diffusekit as dk
from diffusekit.testing import GaussianMixture
from diffusekit_guidance.oracles import ClassConditionalMixture, ClassConditionalOracle


def ddim(steps: int, eta: float = 0.0):
    """The plugin's ``ddim-renoise`` sampler (DDIM reading x0 and eps separately)."""
    return dk.create("sampler", "ddim-renoise", steps=steps, eta=eta)


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

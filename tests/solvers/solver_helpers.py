"""Shared helpers of the solver tests."""
import torch

import diffusekit as dk
from diffusekit.testing.oracles import GaussianMixture, oracle_pipeline


def make_pipe(process, mixture, sampler, parameterization="x0", **kw):
    proc = dk.create("process", process, **kw) if isinstance(process, str) else process
    return oracle_pipeline(proc, mixture, sampler=sampler, parameterization=parameterization)


def gaussian_1d():
    """x0 ~ N(0.3, 0.5^2) in 2-D: the PF-ODE is linear, so its exact solution is known."""
    return GaussianMixture(torch.tensor([[0.3, -0.2]]), 0.5)


def seeds(n, start=0):
    return [torch.Generator().manual_seed(start + i) for i in range(n)]

"""Agreement with k-diffusion on the same sigmas (skipped when k-diffusion is absent)."""

import pytest
import torch

import diffusekit as dk

from solver_helpers import make_pipe
from diffusekit_solvers.gaussian import point, t_of_sigma
from diffusekit_solvers.peers import kdiffusion_sampling, run_kdiffusion, sigma_form_oracle

ks = kdiffusion_sampling()
pytestmark = pytest.mark.skipif(ks is None, reason="k-diffusion not installed (pip install diffusekit[bench])")

CASES = [("euler", "euler", {}), ("dpmpp_2m", "dpm-solver++", {"variant": "2M", "lower_order_final": False}),
         ("heun", "heun", {})]


@pytest.mark.parametrize("process", ["edm", "vp"])
@pytest.mark.parametrize("kname,name,params", CASES, ids=[c[0] for c in CASES])
def test_agrees_with_k_diffusion_on_the_same_sigmas(process, kname, name, params, ring):
    torch.set_default_dtype(torch.float64)
    try:
        proc = dk.create("process", process)
        p_hi, p_lo = point(proc, proc.t_max), point(proc, proc.t_min)
        sigmas = ks.get_sigmas_karras(8, p_lo.sigma, p_hi.sigma, rho=7.0).double()  # 8 sigmas then 0
        times = [t_of_sigma(proc, float(s)) for s in sigmas[:-1]] + [0.0]
        x_T = proc.prior(256, (2,), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        sampler = dk.create("sampler", name, steps=len(times) - 1,
                            schedule={"name": "explicit", "times": times}, **params)
        pipe = make_pipe(proc, ring, sampler)
        ours = pipe.sample(256, x_init=x_T)
        theirs, nfe = run_kdiffusion(kname, sigma_form_oracle(ring), x_T / p_hi.a, sigmas)
        assert pipe.last_nfe == nfe
        torch.testing.assert_close(ours, theirs, rtol=1e-3, atol=1e-3 * float(theirs.abs().max()))
    finally:
        torch.set_default_dtype(torch.float32)

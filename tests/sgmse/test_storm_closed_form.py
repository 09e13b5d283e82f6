"""StoRM diagnosis on the complex Gaussian toy (x0 ~ CN(mu, s^2), noisy y, predictive estimate
y_hat between them): the prior is centred on y_hat (the condition stack's last entry), and the
storm sampler with the exact score of the OUVE toward y_hat returns CN(mu, s^2) from that prior,
far from y_hat. So the condition order, the prior, the time range and the last step are right;
a trained StoRM that ends below its own starting point is not explained by the sampler."""

import math

import torch

import diffusekit as dk
from diffusekit_sgmse.processes import OUVE

from .oracles import ComplexGaussianOracle

N, S = 4000, 0.3
MU = torch.tensor([[0.5 - 0.2j, -0.3 + 0.4j], [0.1 + 0.0j, -0.6 - 0.5j]], dtype=torch.complex128)
Y = torch.tensor([[0.2 + 0.3j, 0.4 - 0.1j], [-0.2 + 0.2j, 0.0 + 0.6j]], dtype=torch.complex128)
YHAT = 0.7 * MU + 0.3 * Y


def _stack(n):
    return torch.stack([Y.expand(n, 2, 2), YHAT.expand(n, 2, 2)], 1)


def test_storm_prior_is_centred_on_the_predictive_estimate():
    proc = OUVE()
    x = proc.prior(N, (2, 2), cond=_stack(N), generator=torch.Generator().manual_seed(0), dtype=torch.complex128)
    sigma1 = float(proc.coefficients(torch.tensor(1.0, dtype=torch.float64))[2])
    assert (x.mean(0) - YHAT).abs().max() < 5 * sigma1 / math.sqrt(N)
    assert abs(float((x - YHAT).abs().pow(2).mean().sqrt()) - sigma1) < 0.02


def test_storm_with_the_exact_score_recovers_the_clean_distribution_from_its_prior():
    proc = OUVE()
    pipe = dk.Pipeline(process=proc, network=ComplexGaussianOracle(proc, MU, S, "eps"),
                       parameterization="sgmse-score", sampler={"name": "storm", "steps": 50})
    cond = _stack(N)
    x_init = proc.prior(N, (2, 2), cond=cond, generator=torch.Generator().manual_seed(0), dtype=torch.complex128)
    x = pipe.sample(N, cond=cond, x_init=x_init, generator=torch.Generator().manual_seed(1))
    assert pipe.last_nfe == 100
    assert (x.mean(0) - MU).abs().max() < 5 * S / math.sqrt(N) + 0.01  # y_hat is 0.38 away from mu
    var = (x - x.mean(0)).abs().pow(2).mean(0)
    assert torch.allclose(var, torch.full_like(var, S * S), rtol=0.1)


def test_storm_returns_the_predictive_estimate_when_it_is_already_clean():
    """The "zero diffusion" limit: if the clean signal is y_hat itself (a point mass, exact score),
    StoRM must give y_hat back from its prior y_hat + sigma(1) z: the reverse process removes
    exactly the noise the prior added and never drifts toward y."""
    proc = OUVE()
    pipe = dk.Pipeline(process=proc, network=ComplexGaussianOracle(proc, YHAT, 1e-3, "eps"),
                       parameterization="sgmse-score", sampler={"name": "storm", "steps": 50})
    n = 500
    cond = _stack(n)
    x_init = proc.prior(n, (2, 2), cond=cond, generator=torch.Generator().manual_seed(0), dtype=torch.complex128)
    x = pipe.sample(n, cond=cond, x_init=x_init, generator=torch.Generator().manual_seed(1))
    assert float((x - YHAT).abs().max()) < 0.02  # prior noise was sigma(1) = 0.39

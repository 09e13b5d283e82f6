"""Fast Gaussian solvers (DDIM, DPM-Solver, DPM-Solver++, UniPC, DEIS, EDM Heun / Euler) for
every AdditiveGaussian or DenoisingODE process. This module holds only hook
implementations; ``fit_gaussian_stats`` (analytical teleportation) is re-exported for users."""

from diffusekit import hookimpl

from .ddim import DDIM
from .deis import DEIS
from .dpm_solver import DPMSolver, DPMSolverPP
from .edm import EDMEuler, EDMHeun
from .unipc import UniPC
from .teleport import fit_gaussian_stats

DIFFUSEKIT_API = ">=1,<2"

__all__ = ["fit_gaussian_stats"]


@hookimpl
def register_samplers(register):
    register("heun", EDMHeun, description="EDM Heun (Karras et al. 2022 Alg. 2), churn optional; NFE 2N-1")
    register("euler", EDMEuler, description="EDM Euler on dx/dsigma = (x - D)/sigma, churn optional")
    register("ddim", DDIM, description="DDIM (eta) for any AdditiveGaussian / sigma process")
    register("dpm-solver", DPMSolver, description="DPM-Solver-1/2/3 singlestep, noise prediction (steps = NFE)")
    register("dpm-solver++", DPMSolverPP, description="DPM-Solver++ 2M (default)/3M/2S/SDE, data prediction, thresholding")
    register("unipc", UniPC, description="UniPC bh1/bh2 predictor-corrector, data prediction")
    register("deis", DEIS, description="DEIS tAB multistep, noise prediction")

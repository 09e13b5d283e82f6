"""Score-SDE plugin (Song et al. 2021): VP / sub-VP / VE processes and their discrete DDPM /
SMLD forms, Gaussian parameterizations, reverse-SDE, predictor-corrector and probability-flow
samplers, PF-ODE likelihood (``likelihood.py``, reached through ``process.log_likelihood``),
replacement inpainting / colorization guidance, reference networks (MLP, U-Net) and toy
datasets. This module holds only hook implementations."""

from diffusekit import hookimpl

from . import datasets as ds
from .networks import MLP
from .parameterizations import X0, Eps, Score, V
from .replacement import Colorize, Inpaint
from .processes import DDPM, SMLD, VE, VP, SubVP
from .ode import ProbabilityFlowODE
from .pc import PredictorCorrector
from .samplers import Ancestral, EulerMaruyama, ReverseDiffusion
from .unet import UNet

DIFFUSEKIT_API = ">=1,<2"


@hookimpl
def register_processes(register):
    register("vp", VP)
    register("subvp", SubVP)
    register("ve", VE)
    register("ddpm", DDPM)
    register("smld", SMLD)


@hookimpl
def register_parameterizations(register):
    register("eps", Eps)
    register("x0", X0)
    register("v", V)
    register("score", Score)


@hookimpl
def register_samplers(register):
    register("euler-maruyama", EulerMaruyama)
    register("reverse-diffusion", ReverseDiffusion)
    # "ancestral" is taken by the masked plugin (discrete); the Gaussian form has its own name
    register("sde-ancestral", Ancestral)
    register("pc", PredictorCorrector)
    register("ode", ProbabilityFlowODE)


@hookimpl
def register_guidance(register):
    register("inpaint", Inpaint)
    register("colorize", Colorize)


@hookimpl
def register_networks(register):
    register("mlp", MLP)
    register("unet", UNet)


@hookimpl
def register_datasets(register):
    register("gmm", ds.gaussian_mixture, config=ds.ToyConfig)
    register("checkerboard", ds.checkerboard, config=ds.ToyConfig)
    register("moons", ds.moons, config=ds.ToyConfig)
    register("swissroll", ds.swiss_roll, config=ds.ToyConfig)
    register("digits", ds.digits, config=ds.DigitsConfig)

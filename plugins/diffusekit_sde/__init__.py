"""Score-SDE plugin (Song et al. 2021): VP / sub-VP / VE processes, Gaussian
parameterizations, reverse-SDE and probability-flow samplers, reference networks and toy
datasets. This module holds only hook implementations."""

from diffusekit import hookimpl

from . import datasets as ds
from .networks import MLP
from .parameterizations import X0, Eps, Score, V
from .processes import VE, VP, SubVP
from .samplers import EulerMaruyama, ProbabilityFlowODE

DIFFUSEKIT_API = ">=1,<2"


@hookimpl
def register_processes(register):
    register("vp", VP)
    register("subvp", SubVP)
    register("ve", VE)


@hookimpl
def register_parameterizations(register):
    register("eps", Eps)
    register("x0", X0)
    register("v", V)
    register("score", Score)


@hookimpl
def register_samplers(register):
    register("euler-maruyama", EulerMaruyama)
    register("ode", ProbabilityFlowODE)


@hookimpl
def register_networks(register):
    register("mlp", MLP)


@hookimpl
def register_datasets(register):
    register("gmm", ds.gaussian_mixture, config=ds.ToyConfig)
    register("checkerboard", ds.checkerboard, config=ds.ToyConfig)
    register("moons", ds.moons, config=ds.ToyConfig)
    register("swissroll", ds.swiss_roll, config=ds.ToyConfig)
    register("digits", ds.digits, config=ds.DigitsConfig)

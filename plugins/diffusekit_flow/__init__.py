"""Flow matching and rectified flow (Lipman et al. 2022; Liu et al. 2022; Albergo &
Vanden-Eijnden 2023; Tong et al. 2023; Esser et al. 2024): the ``rectified-flow`` and
``interpolant`` processes, the ``velocity`` parameterization (plain flow-matching loss with
independent, minibatch-OT, Sinkhorn or paired couplings), the flow ODE samplers ``flow-euler``,
``flow-heun``, ``flow-midpoint`` and the marginal-preserving ``flow-sde``, reflow
(:func:`reflow_pairs`, :func:`reflow_pipeline`, :func:`straightness`) and two recipes.
This module holds only hook implementations; see docs/plugins/flow.md."""

from diffusekit import hookimpl

from .oracles import MixtureVelocity, velocity_oracle_pipeline
from .processes import InterpolantProcess, RectifiedFlow
from .recipes import digits_recipe, moons_recipe
from .reflow import reflow_pairs, reflow_pipeline, straightness
from .samplers import FlowEuler, FlowHeun, FlowMidpoint, FlowSDE
from .velocity import Velocity, velocity_of

DIFFUSEKIT_API = ">=1,<2"

__all__ = ["reflow_pairs", "reflow_pipeline", "straightness", "velocity_of", "MixtureVelocity",
           "velocity_oracle_pipeline"]


@hookimpl
def register_processes(register):
    register("rectified-flow", RectifiedFlow)
    register("interpolant", InterpolantProcess)


@hookimpl
def register_parameterizations(register):
    register("velocity", Velocity)


@hookimpl
def register_samplers(register):
    register("flow-euler", FlowEuler)
    register("flow-heun", FlowHeun)
    register("flow-midpoint", FlowMidpoint)
    register("flow-sde", FlowSDE)


@hookimpl
def register_recipes(register):
    register("rectified-flow-moons", moons_recipe)
    register("rectified-flow-digits", digits_recipe)

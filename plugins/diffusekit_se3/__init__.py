"""SE(3) diffusion plugin: point-cloud registration / 6D pose estimation as denoising on the
Lie group SE(3) (Jiang et al. 2023, "SE(3) Diffusion Model-based Point Cloud Registration for
Robust 6D Object Pose Estimation"). This module holds only hook implementations; see
docs/plugins/se3.md."""

from diffusekit import hookimpl

from . import data as _data
from .cli import configure_register, run_register
from .networks import KabschOracle, RegistrationConfig, RegistrationNet
from .parameterization import Pose
from .processes import IGSO3Diffusion, SE3Diffusion
from .recipes import se3_recipe
from .samplers import SE3Ancestral

DIFFUSEKIT_API = ">=1,<2"


@hookimpl
def register_processes(register):
    register("se3", SE3Diffusion)
    register("igso3", IGSO3Diffusion)


@hookimpl
def register_parameterizations(register):
    register("pose", Pose)


@hookimpl
def register_samplers(register):
    register("se3-ancestral", SE3Ancestral)


@hookimpl
def register_networks(register):
    register("registration", RegistrationNet, config=RegistrationConfig)
    register("kabsch", KabschOracle)


@hookimpl
def register_datasets(register):
    register("registration-pairs", _data.registration_pairs, config=_data.RegistrationDataConfig)


@hookimpl
def register_recipes(register):
    register("se3-registration", se3_recipe)


@hookimpl
def register_commands(register):
    register("register", run_register, configure=configure_register,
             description="estimate the pose of a source point cloud on a model cloud with a trained SE(3) run")

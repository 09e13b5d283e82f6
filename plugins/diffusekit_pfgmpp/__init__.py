"""PFGM++ plugin (Xu et al. 2023): the augmented-dimension Poisson-flow process ``pfgmpp``, its
D -> inf limit ``edm`` (Karras et al. 2022) and the EDM preconditioning ``edm``. Sampling uses
the EDM Heun / Euler samplers on the Karras grid. This module holds only hook implementations."""

from diffusekit import hookimpl

from .parameterization import EDMPrecond
from .processes import EDM, PFGMPP

DIFFUSEKIT_API = ">=1,<2"


@hookimpl
def register_processes(register):
    register("pfgmpp", PFGMPP, description="PFGM++ with augmented dimension D (heavy-tailed kernel, EDM ODE)")
    register("edm", EDM, description="EDM (Karras et al. 2022): the D -> inf limit of PFGM++")


@hookimpl
def register_parameterizations(register):
    register("edm", EDMPrecond, description="EDM preconditioning: c_skip x + c_out F(c_in x, ln(sigma)/4)")

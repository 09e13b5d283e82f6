"""The core's own plugin: generic time grids, the pass-through conditioner, the MMD metric and
the generic sample writers.

Loaded through the ``diffusekit`` entry-point group like any third-party plugin.
"""

from .conditioner import PassThrough
from .hookspecs import hookimpl
from .metrics import MMD
from .timegrids import Explicit, Karras, LogSNR, Quadratic, Uniform
from .writers import BUILTIN_WRITERS

DIFFUSEKIT_API = ">=1,<2"


@hookimpl
def register_schedules(register):
    register("uniform", Uniform)
    register("quadratic", Quadratic)
    register("logsnr", LogSNR)
    register("karras", Karras)
    register("edm", Karras, description="EDM grid: Karras rho-schedule on sigma (rho = 7)")
    register("explicit", Explicit)


@hookimpl
def register_conditioners(register):
    register("passthrough", PassThrough)


@hookimpl
def register_metrics(register):
    register("mmd", MMD, description="unbiased squared MMD (sum of RBF kernels) between a sample set and a reference set")


@hookimpl
def register_writers(register):
    for name, cls in BUILTIN_WRITERS.items():
        register(name, cls)

"""Guidance and conditioning plugin: label / array conditioners; cfg, cfg++, classifier, dps,
smc (Feynman-Kac correctors) and svdd guidance; the ddim-renoise sampler (DDIM reading x0 and
eps separately, for cfg++). This module holds only hook implementations."""

from diffusekit import hookimpl

from .cfg import CFG, CFGPlusPlus
from .classifier import ClassifierGuidance
from .conditioners import ArrayConditioner, LabelConditioner
from .dps import DPS
from .samplers import DDIMRenoise
from .smc import SMC
from .svdd import SVDD

DIFFUSEKIT_API = ">=1,<2"


@hookimpl
def register_conditioners(register):
    register("label", LabelConditioner)
    register("array", ArrayConditioner)


@hookimpl
def register_guidance(register):
    register("cfg", CFG)
    register("cfg++", CFGPlusPlus)
    register("classifier", ClassifierGuidance)
    register("dps", DPS)
    register("smc", SMC)
    register("svdd", SVDD)


@hookimpl
def register_samplers(register):
    register("ddim-renoise", DDIMRenoise)

"""Masked (absorbing-state) discrete diffusion plugin (MDLM / MD4 / first-hitting sampler):
process ``masked``, parameterization ``logits`` (SUBS), samplers ``ancestral``,
``first-hitting`` and ``confidence``, network ``transformer``, datasets ``markov`` and
``pydoc``. This module holds only hook implementations."""

from diffusekit import hookimpl

from . import datasets as ds
from .networks import Transformer
from .parameterization import Logits
from .process import Masked
from .samplers import Ancestral, Confidence, FirstHitting

DIFFUSEKIT_API = ">=1,<2"


@hookimpl
def register_processes(register):
    register("masked", Masked)


@hookimpl
def register_parameterizations(register):
    register("logits", Logits)


@hookimpl
def register_samplers(register):
    register("ancestral", Ancestral)
    register("first-hitting", FirstHitting)
    register("confidence", Confidence)


@hookimpl
def register_networks(register):
    register("transformer", Transformer)


@hookimpl
def register_datasets(register):
    register("markov", ds.markov, config=ds.MarkovConfig)
    register("pydoc", ds.pydoc, config=ds.PydocConfig)

"""SGMSE plugin: score-based speech enhancement (SGMSE+ OUVE, Schroedinger bridge, StoRM) on
compressed complex STFTs, with a synthetic espeak-ng corpus, metrics, the ``enhance`` command
and the ``sgmse`` recipe. This module holds only hook implementations."""

from diffusekit import hookimpl

from . import data as _data
from .cli import configure_enhance, run_enhance
from .metrics import estoi, pesq_wb, si_sdr
from .networks import NCSNpp
from .parameterizations import Predictive, SGMSEData, SGMSEScore
from .processes import OUVE, SchroedingerBridge
from .recipes import sgmse_recipe, sgmse_sb_recipe
from .samplers import SBODE, SBSDE, SGMSEODE, SGMSEPC, OneStep, Storm

DIFFUSEKIT_API = ">=1,<2"


@hookimpl
def register_processes(register):
    register("ouve", OUVE)
    register("sb", SchroedingerBridge)


@hookimpl
def register_parameterizations(register):
    register("sgmse-score", SGMSEScore)
    register("sgmse-x0", SGMSEData)
    register("predictive", Predictive)


@hookimpl
def register_samplers(register):
    register("sgmse-pc", SGMSEPC)
    register("sgmse-ode", SGMSEODE)
    register("storm", Storm)
    register("sb-ode", SBODE)
    register("sb-sde", SBSDE)
    register("one-step", OneStep)


@hookimpl
def register_networks(register):
    register("ncsnpp", NCSNpp)


@hookimpl
def register_datasets(register):
    register("sgmse-synthetic", _data.spectrogram_dataset, config=_data.SpectrogramDataConfig)


@hookimpl
def register_metrics(register):
    register("si-sdr", si_sdr, per_item=True)
    register("pesq-wb", pesq_wb, per_item=True)
    register("estoi", estoi, per_item=True)


@hookimpl
def register_recipes(register):
    register("sgmse", sgmse_recipe)
    register("sgmse-sb", sgmse_sb_recipe)


@hookimpl
def register_commands(register):
    register("enhance", run_enhance, configure=configure_enhance,
             description="enhance noisy speech (WAV file or directory) with a trained SGMSE run")

"""Bridge plugin: the (a, b, c) family of diffusion bridges pinned at a condition (FrameBridge /
Bridge-TTS g_max, DDBM VP and VE, Schrodinger bridge with a VE schedule), their eps_psi and v
parameterizations, SDE / ODE / Heun bridge samplers, SNR-aligned fine-tuning of a diffusion
network, the neural prior, and image-to-video on moving digits. This module holds only hook
implementations; see docs/plugins/bridge.md."""

from diffusekit import hookimpl

from .data import MovingDigitsConfig, moving_digits
from .networks import VideoUNet
from .parameterizations import EpsPsi, VPsi
from .processes import Bridge
from .recipes import diffusion_i2v_recipe, framebridge_recipe
from .saf import SAF
from .samplers import BridgeHeun, BridgeODE, BridgeSDE
from .writers import GifStripWriter

DIFFUSEKIT_API = ">=1,<2"


@hookimpl
def register_processes(register):
    register("bridge", Bridge)


@hookimpl
def register_parameterizations(register):
    register("eps-psi", EpsPsi)
    register("v-psi", VPsi)
    register("saf", SAF)


@hookimpl
def register_samplers(register):
    register("bridge-sde", BridgeSDE)
    register("bridge-ode", BridgeODE)
    register("bridge-heun", BridgeHeun)


@hookimpl
def register_networks(register):
    register("video-unet", VideoUNet)


@hookimpl
def register_datasets(register):
    register("moving-digits", moving_digits, config=MovingDigitsConfig)


@hookimpl
def register_recipes(register):
    register("framebridge-digits", framebridge_recipe)
    register("diffusion-i2v-digits", diffusion_i2v_recipe)


@hookimpl
def register_writers(register):
    register("gif-strip", GifStripWriter)

"""diffusekit template plugin: hook implementations only (what the plugin contributes)."""

from diffusekit import hookimpl

from .commands import configure_hello, hello
from .samplers import DDIM

#: Range of the diffusekit plugin API this plugin supports (PEP 440 specifier).
DIFFUSEKIT_API = ">=1,<2"


@hookimpl
def register_samplers(register):
    register("template-ddim", DDIM)


@hookimpl
def register_commands(register):
    register("template-hello", hello, configure=configure_hello,
             description="print a greeting and the template plugin's components")

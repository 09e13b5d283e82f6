"""GDSS graph plugin (Jo, Lee, Hwang 2022, "Score-based Generative Modeling of Graphs via the
System of Stochastic Differential Equations"): the joint node / adjacency SDE process
``gdss``, the ScoreNetworkX / ScoreNetworkA network ``gdss-net``, the S4 solver ``s4``,
run-time generated graph and molecule datasets (bond orders, RDKit validity), graph MMD metrics, networkx interop and sample writers.
This module holds only hook implementations (and re-exports ``to_networkx`` and ``sample_by_size``); see
docs/plugins/gdss.md."""

from diffusekit import hookimpl

from . import data as _data
from . import molecules as _molecules
from .interop import GraphGridWriter, GraphJSONWriter, sample_by_size, to_networkx
from .metrics import METRICS
from .networks import GDSSNetwork
from .processes import GDSS
from .recipes import community_small_recipe, grid_recipe, molecules_recipe
from .s4 import S4

DIFFUSEKIT_API = ">=1,<2"


@hookimpl
def register_processes(register):
    register("gdss", GDSS)


@hookimpl
def register_samplers(register):
    register("s4", S4)


@hookimpl
def register_networks(register):
    register("gdss-net", GDSSNetwork)


@hookimpl
def register_datasets(register):
    register("community-small", _data.community_small_dataset, config=_data.GraphDataConfig)
    register("ego-small", _data.ego_small_dataset, config=_data.GraphDataConfig)
    register("grid", _data.grid_dataset, config=_data.GridDataConfig)
    register("molecules", _molecules.molecules_dataset, config=_molecules.MoleculeDataConfig)


@hookimpl
def register_metrics(register):
    for name, fn in METRICS.items():
        register(name, fn, description=(fn.__doc__ or "").strip().splitlines()[0])


@hookimpl
def register_writers(register):
    register("graph-json", GraphJSONWriter)
    register("graph-png", GraphGridWriter)


@hookimpl
def register_recipes(register):
    register("gdss-community-small", community_small_recipe)
    register("gdss-grid", grid_recipe)
    register("gdss-molecules", molecules_recipe)


__all__ = ["to_networkx", "sample_by_size"]

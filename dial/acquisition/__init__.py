"""Active learning over patches: where annotating next helps most.

Each acquisition function is a small :class:`~dial.acquisition.strategies.Strategy`
registered by name; it turns a model and an image into a per-pixel priority
map. :mod:`~dial.acquisition.ranking` cuts that map into patches, and
:mod:`~dial.acquisition.cost` estimates how many clicks a patch would take.
"""
from dial.acquisition.cost import click_cost, click_cost_map
from dial.acquisition.model import AcquisitionModel
from dial.acquisition.ranking import RankedPatch, patch_grid, rank_patches
from dial.acquisition.strategies import STRATEGIES, Strategy, UncertaintyResult, get_strategy

__all__ = [
    "AcquisitionModel", "RankedPatch", "STRATEGIES", "Strategy", "UncertaintyResult", "click_cost",
    "click_cost_map", "get_strategy", "patch_grid", "rank_patches",
]

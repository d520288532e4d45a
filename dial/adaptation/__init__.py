"""Adapting a model to the user's clicks (DISCA) and choosing when to do it."""
from dial.adaptation.disca import (
    DEFAULT_LEARNING_RATES, VARIANTS, DiscaAdapter, DiscaSettings, click_targets, crop_windows, disca_loss,
)

__all__ = ["DEFAULT_LEARNING_RATES", "VARIANTS", "DiscaAdapter", "DiscaSettings", "click_targets",
           "crop_windows", "disca_loss"]

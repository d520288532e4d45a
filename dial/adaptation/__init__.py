"""Adapting a model to the user's clicks (DISCA) and choosing when to do it."""
from dial.adaptation.settings import DEFAULT_LEARNING_RATES, VARIANTS, DiscaSettings

# The adapter and its losses import torch; they load on first use, so that
# reading the settings (the command line's parser does) stays light.
_FROM_DISCA = ("DiscaAdapter", "click_targets", "crop_windows", "disca_loss")


def __getattr__(name):
    if name in _FROM_DISCA:
        from dial.adaptation import disca

        return getattr(disca, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["DEFAULT_LEARNING_RATES", "VARIANTS", "DiscaAdapter", "DiscaSettings", "click_targets",
           "crop_windows", "disca_loss"]

"""The ways ``dial eval`` uses clicks, by name: what its parser offers without importing the refiners
(torch). dial.evaluation.refiners.REFINERS maps each name to its refiner."""

MODES = ("ac", "disca", "both", "superpixel", "ac-superpixel")

"""How an evaluation turns clicks into a new prediction, one class per ``--mode``.

A refiner owns one image at a time: ``start`` gives the click-free map and
``add_click`` the map after one more click. AC re-predicts with the clicks as
input channels; DISCA adapts a copy of the torch model on the clicks first;
``both`` chooses per click. Every factory takes ``(predictor, context)``;
AC needs only the predictor, adaptation needs the repository and model
named in the context. ``acquisition_model`` hands a strategy the model as the
refiner now predicts with it, for re-ranking patches after each click.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np
from scipy import ndimage

from dial.acquisition.model import AcquisitionModel
from dial.adaptation.disca import DiscaAdapter, DiscaSettings
from dial.clicks import Click
from dial.inference.classwise import class_argmax
from dial.inference.predictors import Predictor
from dial.inference.superpixels import relabel_clicked_superpixels, slic_segments
from dial.inference.tiling import predict_labels
from dial.model.repository import ModelRepository


class Refiner(Protocol):
    clicks: list[Click]

    def start(self, image: np.ndarray) -> np.ndarray:
        """The click-free ``(H, W)`` label map; forgets any previous image's clicks."""

    def add_click(self, click: Click) -> np.ndarray:
        """The ``(H, W)`` label map after this click."""

    def acquisition_model(self, base: AcquisitionModel) -> AcquisitionModel:
        """``base`` as this refiner now predicts (with ``clicks`` as input), for scoring patches."""


@dataclass(frozen=True)
class RefinerContext:
    """What refiners beyond AC need: the torch model and how to adapt it."""

    repo: ModelRepository | None = None
    model: str | None = None
    disca: DiscaSettings = field(default_factory=DiscaSettings)
    # Keep adapted weights from one image to the next (DISCA's sequential learning).
    sequential: bool = False
    # ``both``: adapt only when the wrongly labelled region under a click is at least this large.
    min_region_px: int = 4096


class AnnotationsAsChannels:
    """DISIR: clicks enter as distance-cone channels; the weights never change."""

    def __init__(self, predictor: Predictor, context: RefinerContext | None = None):
        self.predictor = predictor
        self.image: np.ndarray | None = None
        self.clicks: list[Click] = []

    def start(self, image: np.ndarray) -> np.ndarray:
        self.image, self.clicks = image, []
        return predict_labels(self.predictor, image)

    def add_click(self, click: Click) -> np.ndarray:
        self.clicks.append(click)
        return predict_labels(self.predictor, self.image, self.clicks)

    def acquisition_model(self, base: AcquisitionModel) -> AcquisitionModel:
        return base  # the weights never change; the clicks are the only new input


class ClicksWithSuperpixels(AnnotationsAsChannels):
    """AC, then each click's SLIC superpixel takes its class where the AC map agrees with the clicked pixel.

    The learned response and the superpixel rule together: the network
    decides first with the clicks as input, and the rule then carries a
    click as far as its superpixel wherever the network did not, so the
    clicked pixels always end in their click's class.
    """

    def start(self, image: np.ndarray) -> np.ndarray:
        self.segments = slic_segments(image)
        return super().start(image)

    def add_click(self, click: Click) -> np.ndarray:
        labels = super().add_click(click)
        return relabel_clicked_superpixels(labels, self.segments, self.clicks)


class ContinualAdaptation:
    """DISCA: after each click, adapt the weights on every click so far, then predict with AC."""

    def __init__(self, predictor: Predictor, context: RefinerContext | None = None):
        context = context or RefinerContext()
        if context.repo is None or context.model is None:
            raise ValueError("adaptation needs the model repository and the model name")
        model, manifest = context.repo.load_torch(context.model)
        self.context = context
        self.adapter = DiscaAdapter(model, manifest, context.disca, copy_model=False)
        self.base_state = self.adapter.state_dict()
        self.provider = self.adapter.predictor().provider
        self.clicks: list[Click] = []
        self.labels: np.ndarray | None = None

    def start(self, image: np.ndarray) -> np.ndarray:
        if not self.context.sequential:
            self.adapter.load_state_dict(self.base_state)
        self.clicks = []
        self.labels = class_argmax(self.adapter.start(image))
        return self.labels

    def should_adapt(self, click: Click) -> bool:
        return True

    def add_click(self, click: Click) -> np.ndarray:
        self.clicks.append(click)
        if self.should_adapt(click):
            self.adapter.adapt(self.clicks)
        self.labels = self.adapter.predict_labels(self.clicks)
        return self.labels

    def acquisition_model(self, base: AcquisitionModel) -> AcquisitionModel:
        # The adapted network is already in eval mode and channels_last.
        return base.with_network(self.adapter.model)


class AdaptOnLargeErrors(ContinualAdaptation):
    """AC for small, local errors; DISCA when a click lands in a large wrongly labelled region.

    The region is the 4-connected component of the current label under the
    click, which the click says is wrong: an upper bound of the error region
    that needs no ground truth, so a real user's click is judged the same way.
    """

    def should_adapt(self, click: Click) -> bool:
        return wrong_region_px(self.labels, click) >= self.context.min_region_px


class SuperpixelBaseline:
    """No learning: each click relabels its SLIC superpixel where the map agrees with the clicked pixel.

    It starts from the model's click-free map and never runs the network
    again, so it is the yardstick a click-aware network has to beat on the
    same images.
    """

    def __init__(self, predictor: Predictor, context: RefinerContext | None = None):
        self.predictor = predictor
        self.clicks: list[Click] = []
        self.labels: np.ndarray | None = None
        self.segments: np.ndarray | None = None

    def start(self, image: np.ndarray) -> np.ndarray:
        self.clicks = []
        self.segments = slic_segments(image)
        self.labels = predict_labels(self.predictor, image)
        return self.labels

    def add_click(self, click: Click) -> np.ndarray:
        self.clicks.append(click)
        self.labels = relabel_clicked_superpixels(self.labels, self.segments, [click])
        return self.labels

    def acquisition_model(self, base: AcquisitionModel) -> AcquisitionModel:
        return base  # the network is never changed nor given the clicks


def wrong_region_px(labels: np.ndarray, click: Click) -> int:
    """Size of the connected region of the label under ``click``, or 0 when the click agrees with it."""
    current = labels[click.row, click.col]
    if current == click.class_id:
        return 0
    components, _ = ndimage.label(labels == current)
    return int(np.count_nonzero(components == components[click.row, click.col]))


REFINERS: dict[str, Callable[..., Refiner]] = {
    "ac": AnnotationsAsChannels,
    "disca": ContinualAdaptation,
    "both": AdaptOnLargeErrors,
    "superpixel": SuperpixelBaseline,
    "ac-superpixel": ClicksWithSuperpixels,
}

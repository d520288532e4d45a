"""Class-axis reductions against numpy's and the textbook probability-space definitions."""
import math

import numpy as np
import pytest

from dial.inference.classwise import (
    argmax_and_max, class_argmax, entropy_from_logits, logits_of, margin_from_logits)
from dial.inference.predictors import softmax


def entropy(probs):
    """-sum(p log p) / log K, the definition itself."""
    return -(probs * np.log(np.maximum(probs, 1e-30))).sum(axis=0) / math.log(probs.shape[0])


def margin(probs):
    """MetaSeg's D = 1 - p1 + p2, the definition itself."""
    ranked = np.sort(probs, axis=0)
    return 1.0 - ranked[-1] + ranked[-2]


@pytest.mark.parametrize("n_classes", [2, 6, 17])
def test_argmax_matches_numpy_including_ties(n_classes):
    rng = np.random.default_rng(n_classes)
    # Rounded scores make ties common; numpy keeps the first maximum, so must we.
    scores = np.round(rng.standard_normal((n_classes, 40, 30)), 1).astype(np.float32)
    labels, best = argmax_and_max(scores)
    assert labels.dtype == np.uint8
    assert np.array_equal(labels, scores.argmax(axis=0))
    assert np.array_equal(best, scores.max(axis=0))
    assert np.array_equal(class_argmax(scores), labels)


def test_argmax_refuses_more_classes_than_uint8_holds():
    with pytest.raises(ValueError, match="256"):
        class_argmax(np.zeros((257, 2, 2), np.float32))


def test_entropy_from_logits_matches_entropy_of_softmax():
    rng = np.random.default_rng(0)
    logits = (rng.standard_normal((6, 50, 40)) * 4).astype(np.float32)
    expected = entropy(softmax(logits.copy(), axis=0))
    got, labels = entropy_from_logits(logits.copy())
    assert np.allclose(got, expected, atol=1e-5)
    assert np.array_equal(labels, logits.argmax(axis=0))


def test_entropy_from_logits_at_the_extremes():
    certain = np.zeros((4, 1, 2), np.float32)
    certain[2] = 200.0  # exp of the others underflows to exactly 0
    uniform = np.full((4, 1, 2), 3.0, np.float32)
    h_certain, l_certain = entropy_from_logits(certain)
    h_uniform, _ = entropy_from_logits(uniform)
    assert np.all(h_certain == 0) and np.all(l_certain == 2)
    assert np.allclose(h_uniform, 1.0, atol=1e-6)
    two = np.array([[[0.0]], [[math.log(3.0)]]], np.float32)  # p = (1/4, 3/4)
    expected = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75)) / math.log(2)
    assert np.allclose(entropy_from_logits(two)[0], expected, atol=1e-6)


@pytest.mark.parametrize("n_classes", [2, 6])
def test_margin_from_logits_matches_margin_of_softmax(n_classes):
    rng = np.random.default_rng(n_classes)
    logits = (rng.standard_normal((n_classes, 50, 40)) * 4).astype(np.float32)
    logits[:, 0, :2] = 1.5  # a tie for first: margin 1
    expected = margin(softmax(logits.copy(), axis=0))
    got, labels = margin_from_logits(logits.copy())
    assert np.allclose(got, expected, atol=1e-5)
    assert np.allclose(got[0, :2], 1.0)
    assert np.array_equal(labels, logits.argmax(axis=0))


def test_probabilities_reduce_through_their_logits():
    rng = np.random.default_rng(3)
    probs = softmax((rng.standard_normal((5, 30, 20)) * 3).astype(np.float32), axis=0)
    probs[:, 0, 0] = [1, 0, 0, 0, 0]  # certain, with exact zeros
    probs[:, 0, 1] = 0.2  # uniform
    logits = logits_of(probs)
    h, labels = entropy_from_logits(logits)
    d, _ = margin_from_logits(logits)
    assert np.allclose(h, entropy(probs), atol=1e-5) and np.allclose(d, margin(probs), atol=1e-5)
    assert np.allclose([h[0, 0], d[0, 0]], 0, atol=1e-6) and np.allclose([h[0, 1], d[0, 1]], 1, atol=1e-6)
    assert np.array_equal(labels, probs.argmax(axis=0))

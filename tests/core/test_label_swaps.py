"""The label-swap and prior-corruption samplers on hand-made masks."""
import numpy as np

from dial.training.label_swaps import candidate_segments, corrupt_prior, swap_labels


def three_fields() -> np.ndarray:
    """A 40 x 60 mask: class 0 left, class 1 middle, class 2 right, a 4 x 4 speck of 2 in the left field."""
    mask = np.zeros((40, 60), dtype=np.uint8)
    mask[:, 20:40] = 1
    mask[:, 40:] = 2
    mask[5:9, 5:9] = 2
    return mask


def test_candidates_are_whole_components_above_the_size_floor():
    mask = three_fields()
    found = candidate_segments(mask, min_px=100)
    assert sorted(int(f.sum()) for f in found) == [784, 800, 800]  # the speck (16 px) is too small
    assert all(len(np.unique(mask[f])) == 1 for f in found)


def test_superpixel_candidates_split_at_superpixels_and_classes():
    mask = three_fields()
    segments = np.zeros_like(mask, dtype=np.int32)
    segments[20:] = 1  # two superpixels: top and bottom halves
    found = candidate_segments(mask, segments, min_px=100)
    assert len(found) == 6
    assert all(len(np.unique(mask[f])) == 1 and len(np.unique(segments[f])) == 1 for f in found)


def test_a_swap_relabels_whole_segments_and_clicks_say_the_new_class_inside_them():
    mask = three_fields()
    for seed in range(20):
        out, clicks = swap_labels(mask, np.random.default_rng(seed), 4, max_swaps=2, min_px=100)
        changed = out != mask
        assert changed.any() and 1 <= len(clicks) <= 6
        labelled = [f for f in candidate_segments(mask, min_px=100) if changed[f].any()]
        assert 1 <= len(labelled) <= 2
        for segment in labelled:
            assert changed[segment].all()  # the whole segment, not part of it
            assert len(np.unique(out[segment])) == 1 and out[segment][0] != mask[segment][0]
        assert not changed[~np.any(labelled, axis=0)].any()
        for click in clicks:
            assert changed[click.row, click.col] and out[click.row, click.col] == click.class_id
        assert mask[6, 6] == 2  # the input is not changed


def test_no_swap_without_a_large_enough_segment_or_a_second_class():
    mask = three_fields()
    out, clicks = swap_labels(mask, np.random.default_rng(0), 3, min_px=10_000)
    assert clicks == [] and np.array_equal(out, mask)
    out, clicks = swap_labels(np.zeros((8, 8), np.uint8), np.random.default_rng(0), 1, min_px=1)
    assert clicks == []


def test_ignore_pixels_are_never_swapped():
    mask = np.full((30, 30), 255, dtype=np.uint8)
    mask[:, :15] = 0
    out, clicks = swap_labels(mask, np.random.default_rng(1), 2, min_px=50)
    assert (out[:, 15:] == 255).all() and (out[:, :15] == 1).all() and clicks


def test_a_corrupted_prior_is_wrong_but_plausible_and_keeps_ignore():
    mask = three_fields()
    mask[0, :] = 255
    differs = 0
    for seed in range(10):
        prior = corrupt_prior(mask, np.random.default_rng(seed), 3, min_px=10)
        assert prior.shape == mask.shape and prior.dtype == mask.dtype
        assert (prior[0] == 255).all() and (prior[1:] != 255).all()
        assert set(np.unique(prior[1:])) <= {0, 1, 2}
        wrong = (prior != mask)[1:].mean()
        assert wrong < 0.9  # still a map of the same scene, not noise
        differs += wrong > 0
    assert differs >= 8
    assert mask[6, 6] == 2


def test_dropping_a_component_fills_it_with_its_surroundings():
    mask = three_fields()
    prior = corrupt_prior(mask, np.random.default_rng(0), 3, p_morph=0, p_drop=1.0, p_swap=0, min_px=10)
    assert (prior[5:9, 5:9] == 0).all()  # the speck of 2 is lost into the field of 0 around it


def test_eroding_or_dilating_moves_borders_but_keeps_the_object_and_the_crop_edge():
    from scipy import ndimage

    mask = np.zeros((20, 20), dtype=np.uint8)
    mask[5:15, 5:15] = 1
    moved = 0
    for seed in range(10):
        prior = corrupt_prior(mask, np.random.default_rng(seed), 2, p_morph=1.0, max_radius_px=2, p_drop=0,
                              p_swap=0)
        ones = prior == 1
        moved += int(ones.sum()) != 100
        # Both classes move by at most 2 px each, so the square stays one object around its centre,
        # and the crop's edge is no border of the background: the corners stay background.
        assert prior[10, 10] == 1 and ndimage.label(ones)[1] == 1
        assert not ones[:1].any() and not ones[-1:].any() and not ones[:, :1].any() and not ones[:, -1:].any()
    assert moved >= 7

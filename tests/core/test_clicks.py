import numpy as np
import pytest
from scipy import ndimage

from dial.clicks import Click, ClickEncoding, clicks_in_window, encode_clicks


def test_cone_peaks_at_click_and_vanishes_at_radius():
    channels = encode_clicks([Click(10, 12, 1)], (32, 32), n_classes=3, radius_px=5)
    assert channels.shape == (3, 32, 32) and channels.dtype == np.float32
    assert channels[1, 10, 12] == pytest.approx(1.0)
    assert channels[1, 10, 15] == pytest.approx(1 - 3 / 5)
    assert channels[1, 10, 17] == 0.0  # exactly at the radius
    assert channels[0].sum() == 0 and channels[2].sum() == 0


def test_matches_a_euclidean_distance_transform_per_class():
    clicks = [Click(5, 5, 0), Click(20, 25, 0), Click(12, 3, 2)]
    got = encode_clicks(clicks, (30, 40), n_classes=3, radius_px=8)
    for c in range(3):
        seeds = np.ones((30, 40), bool)
        for k in clicks:
            if k.class_id == c:
                seeds[k.row, k.col] = False
        if seeds.all():
            expected = np.zeros((30, 40), np.float32)
        else:
            expected = np.clip(1 - ndimage.distance_transform_edt(seeds) / 8, 0, None)
        np.testing.assert_allclose(got[c], expected, atol=1e-6)


def test_window_encoding_equals_the_same_pixels_of_the_whole_image():
    clicks = [Click(3, 60, 1), Click(40, 33, 0)]  # the first lies outside the window but reaches into it
    whole = encode_clicks(clicks, (64, 96), 2, radius_px=10)
    window = encode_clicks(clicks, (32, 32), 2, radius_px=10, origin=(0, 64))
    np.testing.assert_array_equal(window, whole[:, 0:32, 64:96])
    assert window[1].max() > 0


def test_unknown_class_is_rejected():
    with pytest.raises(ValueError, match="class_id 3"):
        encode_clicks([Click(0, 0, 3)], (8, 8), n_classes=3, radius_px=2)


def test_clicks_in_window_keeps_those_whose_cone_reaches_it():
    clicks = [Click(0, 0, 0), Click(50, 50, 0), Click(20, 41, 0)]
    near = clicks_in_window(clicks, (10, 10, 20, 20), margin_px=12)
    assert near == [Click(0, 0, 0), Click(20, 41, 0)]


def test_encoding_parameters_round_trip_and_validate():
    enc = ClickEncoding(radius_px=7)
    assert ClickEncoding.from_dict(enc.to_dict()) == enc
    with pytest.raises(ValueError):
        ClickEncoding.from_dict({"kind": "binary_disc", "radius_px": 3})
    with pytest.raises(ValueError):
        ClickEncoding.from_dict({"kind": "distance_cone", "radius_px": 0})

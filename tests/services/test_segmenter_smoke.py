import numpy as np

from tests.support.synthetic import make_scene


def test_predict_round_trip(segmenter, tiny_manifest):
    from dial_client import Click, SegmenterClient

    address, _ = segmenter
    scene = make_scene(160, 200, seed=3)
    with SegmenterClient(address) as client:
        result = client.predict(scene.image, clicks=[Click(10, 20, 2)], model="tiny", return_probabilities=True)
    assert result.labels.shape == (160, 200)
    assert result.probabilities.shape == (6, 160, 200)
    assert np.allclose(result.probabilities.sum(axis=0), 1.0, atol=6 / 255 + 1e-3)
    assert (result.labels == result.probabilities.argmax(axis=0)).mean() > 0.95


import numpy as np
import pytest

from dial.annotator import SimulatedAnnotator
from dial.clicks import Click


def scene_with_squares(squares, shape=(64, 64), background=0):
    """Truth with ``(row, col, side, class_id)`` squares; the prediction is all ``background``."""
    truth = np.full(shape, background, dtype=np.uint8)
    for row, col, side, class_id in squares:
        truth[row: row + side, col: col + side] = class_id
    prediction = np.full(shape, background, dtype=np.uint8)
    return prediction, truth


def inside(click, row, col, side):
    return row <= click.row < row + side and col <= click.col < col + side


def test_clicks_the_centre_of_the_largest_error_with_its_true_class():
    prediction, truth = scene_with_squares([(5, 5, 5, 1), (30, 20, 9, 2)])
    annotator = SimulatedAnnotator(n_classes=3)
    click = annotator.next_click(prediction, truth)
    assert click == Click(row=34, col=24, class_id=2)
    assert annotator.clicks == [click]


def test_largest_is_compared_across_classes():
    prediction, truth = scene_with_squares([(5, 5, 11, 1), (40, 40, 7, 2)])
    click = SimulatedAnnotator(n_classes=3).next_click(prediction, truth)
    assert click == Click(row=10, col=10, class_id=1)


def test_touching_regions_of_different_true_classes_are_separate():
    # A 10x20 block split into two true classes: neither half is the whole block.
    prediction = np.zeros((30, 30), np.uint8)
    truth = np.zeros((30, 30), np.uint8)
    truth[5:15, 5:15] = 1
    truth[5:15, 15:27] = 2  # the larger half: 10 x 12
    click = SimulatedAnnotator(n_classes=3).next_click(prediction, truth)
    assert click.class_id == 2
    assert 5 <= click.row < 15 and 15 <= click.col < 27


def test_wrong_pixels_of_a_predicted_class_are_clicked_with_the_true_class():
    truth = np.zeros((20, 20), np.uint8)
    prediction = np.zeros((20, 20), np.uint8)
    prediction[2:9, 2:9] = 3  # a false positive of class 3 on class-0 ground
    click = SimulatedAnnotator(n_classes=4).next_click(prediction, truth)
    assert click == Click(row=5, col=5, class_id=0)


def test_image_border_counts_as_region_boundary():
    # A band along the top edge, 7 px high: its middle row is 3, not the edge.
    truth = np.zeros((20, 21), np.uint8)
    truth[:7, :] = 1
    prediction = np.zeros_like(truth)
    assert SimulatedAnnotator(n_classes=2).next_click(prediction, truth).row == 3
    corner = np.zeros((20, 21), np.uint8)
    corner[:7, :7] = 1
    assert SimulatedAnnotator(n_classes=2).next_click(prediction, corner) == Click(3, 3, 1)


def test_ignore_pixels_are_never_errors_and_never_clicked():
    prediction, truth = scene_with_squares([(10, 10, 9, 1)], shape=(40, 40))
    truth[14, :] = 255  # splits the square; its centre row is unannotated
    truth[25:40, 0:40] = 255
    prediction[25:40, 0:40] = 1  # a big "error" on ignore pixels only
    annotator = SimulatedAnnotator(n_classes=2)
    for _ in range(6):
        click = annotator.next_click(prediction, truth)
        assert truth[click.row, click.col] == 1
    everything_ignored = np.full((8, 8), 255, np.uint8)
    assert annotator.next_click(np.zeros((8, 8), np.uint8), everything_ignored) is None


def test_region_restricts_the_search_and_keeps_full_image_coordinates():
    prediction, truth = scene_with_squares([(5, 5, 15, 1), (40, 44, 5, 2)])
    annotator = SimulatedAnnotator(n_classes=3)
    click = annotator.next_click(prediction, truth, region=(32, 32, 32, 32))
    assert click == Click(row=42, col=46, class_id=2)
    # A window over part of the big square: its border is the region's border.
    click = annotator.next_click(prediction, truth, region=(0, 0, 12, 64))
    assert click.class_id == 1 and inside(click, 5, 5, 7)
    assert annotator.next_click(prediction, truth, region=(30, 0, 5, 5)) is None


@pytest.mark.parametrize("region", [(-1, 0, 5, 5), (60, 60, 10, 10), (0, 0, 0, 5)])
def test_region_outside_the_image_is_rejected(region):
    prediction, truth = scene_with_squares([(5, 5, 5, 1)])
    with pytest.raises(ValueError, match="region"):
        SimulatedAnnotator(n_classes=2).next_click(prediction, truth, region=region)


def test_no_error_gives_none_and_records_nothing():
    truth = np.random.default_rng(0).integers(0, 3, (16, 16)).astype(np.uint8)
    annotator = SimulatedAnnotator(n_classes=3)
    assert annotator.next_click(truth.copy(), truth) is None
    assert annotator.clicks == []


SQUARES = [(2 + 12 * (i // 4), 2 + 16 * (i % 4), side, 1) for i, side in enumerate([9, 8, 7, 6, 5, 4, 3, 2])]


def blob_of(click):
    return next(i for i, (r, c, side, _) in enumerate(SQUARES) if inside(click, r, c, side))


def test_random_top_k_is_reproducible_and_stays_in_the_top_k():
    prediction, truth = scene_with_squares(SQUARES, shape=(32, 64))

    def run(seed):
        annotator = SimulatedAnnotator(n_classes=2, random_top_k=4, seed=seed)
        return [blob_of(annotator.next_click(prediction, truth)) for _ in range(30)]

    first = run(7)
    assert first == run(7)
    assert set(first) <= {0, 1, 2, 3}
    assert len(set(first)) > 1
    assert first != run(8)


def test_random_top_k_restarts_on_reset():
    prediction, truth = scene_with_squares(SQUARES, shape=(32, 64))
    annotator = SimulatedAnnotator(n_classes=2, random_top_k=8, seed=1)
    first = [annotator.next_click(prediction, truth) for _ in range(5)]
    annotator.reset()
    assert annotator.clicks == []
    assert [annotator.next_click(prediction, truth) for _ in range(5)] == first


def test_largest_mode_keeps_clicking_the_big_class_but_cycling_reaches_the_small_one():
    prediction, truth = scene_with_squares([(5, 5, 30, 1), (50, 50, 3, 2)])
    largest = SimulatedAnnotator(n_classes=3)
    assert [largest.next_click(prediction, truth).class_id for _ in range(3)] == [1, 1, 1]
    cycling = SimulatedAnnotator(n_classes=3, mode="class_cycling")
    clicks = [cycling.next_click(prediction, truth) for _ in range(4)]
    assert [c.class_id for c in clicks] == [1, 2, 1, 2]
    assert clicks[1] == Click(row=51, col=51, class_id=2)


def test_a_pixel_already_clicked_is_not_clicked_again():
    prediction, truth = scene_with_squares([(10, 10, 9, 1)])
    annotator = SimulatedAnnotator(n_classes=2)
    first = annotator.next_click(prediction, truth)
    second = annotator.next_click(prediction, truth)
    assert first == Click(14, 14, 1)
    assert second != first and inside(second, 10, 10, 9)
    # A one-pixel region can only be clicked where it is.
    prediction, truth = scene_with_squares([(3, 3, 1, 1)], shape=(8, 8))
    annotator.reset()
    assert annotator.next_click(prediction, truth) == annotator.next_click(prediction, truth) == Click(3, 3, 1)


def test_undo_removes_the_last_click_and_restores_the_choice():
    prediction, truth = scene_with_squares(SQUARES, shape=(32, 64))
    annotator = SimulatedAnnotator(n_classes=2, mode="class_cycling", random_top_k=5, seed=3)
    kept = annotator.next_click(prediction, truth)
    undone = annotator.next_click(prediction, truth)
    assert annotator.undo() == undone
    assert annotator.clicks == [kept]
    assert annotator.next_click(prediction, truth) == undone
    annotator.reset()
    assert annotator.undo() is None


def test_invalid_inputs_are_rejected():
    with pytest.raises(ValueError, match="mode"):
        SimulatedAnnotator(n_classes=2, mode="smallest")
    with pytest.raises(ValueError, match="random_top_k"):
        SimulatedAnnotator(n_classes=2, random_top_k=0)
    annotator = SimulatedAnnotator(n_classes=2)
    with pytest.raises(ValueError, match="same"):
        annotator.next_click(np.zeros((4, 4), np.uint8), np.zeros((4, 5), np.uint8))
    with pytest.raises(ValueError, match="class ids"):
        annotator.next_click(np.zeros((4, 4), np.uint8), np.full((4, 4), 3, np.uint8))


def test_large_image_finds_the_big_block_among_scattered_noise():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 6, (40, 40)).repeat(50, 0).repeat(50, 1).astype(np.uint8)  # 2000 x 2000
    prediction = truth.copy()
    prediction[rng.random(truth.shape) < 0.02] = 0  # scattered noise errors
    prediction[1000:1301, 200:501] = (truth[1000:1301, 200:501] + 1) % 6  # one big wrong block
    annotator = SimulatedAnnotator(n_classes=6)
    click = annotator.next_click(prediction, truth)
    assert inside(click, 1000, 200, 301)

"""Segment: the visible extent or the whole layer, streamed to the Segmenter, written into the class map."""
from __future__ import annotations

from .errors import PluginError, TaskCancelled
from .workspace import Workspace


def pixel_window(grid, bounds) -> tuple[int, int, int, int]:
    """The grid window (row_off, col_off, height, width) covering map ``bounds`` (xmin, ymin, xmax, ymax) in its CRS."""
    xmin, ymin, xmax, ymax = bounds
    corners = [grid.pixel(x, y) for x in (xmin, xmax) for y in (ymin, ymax)]
    rows, cols = [r for r, _ in corners], [c for _, c in corners]
    r0, c0 = int(max(0, min(rows))), int(max(0, min(cols)))
    r1, c1 = int(min(grid.height, -(-max(rows) // 1))), int(min(grid.width, -(-max(cols) // 1)))
    if r1 <= r0 or c1 <= c0:
        raise PluginError("The extent does not overlap the raster layer; zoom to the layer first.")
    return r0, c0, r1 - r0, c1 - c0


def segment(ws: Workspace, window: tuple[int, int, int, int] | None = None, *, progress=None,
            cancelled=None) -> tuple[int, int, int, int]:
    """Predict ``window`` (default: the whole raster) with the chosen model; returns the window written.

    ``progress(percent)`` follows the server's tiles; ``cancelled()`` returning True stops the job.
    """
    grid, model = ws.require()
    row_off, col_off, height, width = window or (0, 0, grid.height, grid.width)
    image = ws.read_image(row_off, col_off, height, width)

    def on_progress(done: int, total: int) -> None:
        if cancelled is not None and cancelled():
            raise TaskCancelled("Segmentation cancelled; the class map is unchanged.")
        if progress is not None and total:
            progress(100.0 * done / total)

    with ws.settings.segmenter_client() as client:
        result = client.predict_raster(image, model=model.name, version=model.version,
                                       geo=ws.window_geo(row_off, col_off), on_progress=on_progress)
    if cancelled is not None and cancelled():
        raise TaskCancelled("Segmentation cancelled; the class map is unchanged.")
    ws.apply(row_off, col_off, result.labels)
    return row_off, col_off, height, width

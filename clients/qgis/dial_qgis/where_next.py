"""Where next: ranked patches (entropy by default), a next-patch step and marking patches done."""
from __future__ import annotations

from dataclasses import dataclass, field

from .errors import PluginError
from .workspace import Workspace


@dataclass
class Queue:
    """Ranked patches of the layer in full-raster pixel windows, best first, and those marked done."""

    patches: list = field(default_factory=list)   # (rank, score, (row_off, col_off, height, width))
    done: set = field(default_factory=set)

    def next(self):
        return next((p for p in self.patches if p[2] not in self.done), None)

    def mark_done(self, window) -> None:
        self.done.add(tuple(window))

    def remaining(self) -> list:
        return [p for p in self.patches if p[2] not in self.done]


def rank(ws: Workspace, queue: Queue, window: tuple[int, int, int, int] | None = None, *,
         strategy: str = "entropy", max_patches: int = 20) -> Queue:
    """Rank ``window`` (default: the whole layer) with the user's clicks; done patches are not offered again."""
    grid, model = ws.require()
    row_off, col_off, height, width = window or (0, 0, grid.height, grid.width)
    image = ws.read_image(row_off, col_off, height, width)
    exclude = [(r - row_off, c - col_off, h, w) for r, c, h, w in queue.done
               if r >= row_off and c >= col_off and r + h <= row_off + height and c + w <= col_off + width]
    clicks = []
    for c in ws.clicks:
        r, k = grid.pixel(c.x, c.y)
        if row_off <= r < row_off + height and col_off <= k < col_off + width:
            clicks.append(c)
    with ws.settings.acquisition_client() as client:
        patches = client.rank(image, model=model.name, version=model.version, strategy=strategy,
                              max_patches=max_patches, exclude=exclude, clicks=clicks,
                              geo=ws.window_geo(row_off, col_off))
    if not patches:
        raise PluginError("No patch left to rank in this extent.")
    queue.patches = [(p.rank, p.score, (p.window[0] + row_off, p.window[1] + col_off, p.window[2], p.window[3]))
                     for p in patches]
    return queue


def window_bounds(grid, window) -> tuple[float, float, float, float]:
    """Map bounds (xmin, ymin, xmax, ymax) of a pixel window, in the image's CRS."""
    r, c, h, w = window
    xs, ys = zip(*(grid.xy(rr, cc) for rr in (r, r + h) for cc in (c, c + w)))
    return min(xs), min(ys), max(xs), max(ys)

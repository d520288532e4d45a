"""Tiled prediction with overlap and blending, in bounded memory.

Large images are cut into ``tile_px`` windows that overlap by ``overlap_px``
(512 and 128 in the papers). Each tile's logits are weighted by a ramp that
falls towards the tile's edges, where a CNN sees the least context, and
summed. Blending logits rather than probabilities keeps the per-tile work
next to the model to one fused multiply-add: a class map is the argmax of
the weighted sum, and probabilities are one softmax per output pixel instead
of one per tile pixel (1.8x more with a 128 px overlap). Tiles are processed
one tile row at a time and rows are handed out as soon as no later tile can
touch them, so memory is ``O(K x tile_px x width)`` however tall the raster is.
"""
from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from dial.clicks import Click, clicks_in_window
from dial.imagery.georef import Window
from dial.inference.classwise import class_argmax
from dial.inference.inputs import network_input
from dial.inference.predictors import Predictor, softmax

# read(row_off, col_off, height, width) -> the (H, W, B) pixels of that window.
ReadWindow = Callable[[int, int, int, int], np.ndarray]
STRIDE_MULTIPLE = 32


def _starts(size: int, tile: int, overlap: int) -> list[int]:
    if size <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, size - tile, stride))
    starts.append(size - tile)
    return starts


@dataclass(frozen=True)
class TileGrid:
    height: int
    width: int
    tile_px: int
    overlap_px: int

    @property
    def row_starts(self) -> list[int]:
        return _starts(self.height, self.tile_px, self.overlap_px)

    @property
    def col_starts(self) -> list[int]:
        return _starts(self.width, self.tile_px, self.overlap_px)

    @property
    def tile_height(self) -> int:
        return min(self.height, self.tile_px)

    @property
    def tile_width(self) -> int:
        return min(self.width, self.tile_px)

    def __len__(self) -> int:
        return len(self.row_starts) * len(self.col_starts)

    def windows(self) -> list[Window]:
        return [Window(r, c, self.tile_height, self.tile_width) for r in self.row_starts for c in self.col_starts]


def array_reader(image: np.ndarray) -> ReadWindow:
    """A :data:`ReadWindow` over an in-memory ``(H, W, B)`` image."""

    def read(r: int, c: int, h: int, w: int) -> np.ndarray:
        return image[r : r + h, c : c + w]

    return read


def blend_weights(height: int, width: int, overlap_px: int) -> np.ndarray:
    ramp = max(overlap_px // 2, 1)

    def axis(n: int) -> np.ndarray:
        i = np.arange(n, dtype=np.float32)
        return np.clip(np.minimum(i + 1, n - i) / ramp, 1e-3, 1.0)

    return np.outer(axis(height), axis(width)).astype(np.float32)


def pad_to_multiple(x: np.ndarray, multiple: int = STRIDE_MULTIPLE) -> np.ndarray:
    """Pad ``(C, H, W)`` at the bottom/right so H and W are multiples of ``multiple``."""
    _, h, w = x.shape
    ph, pw = (-h) % multiple, (-w) % multiple
    if not ph and not pw:
        return x
    mode = "reflect" if ph < h and pw < w else "edge"
    return np.pad(x, ((0, 0), (0, ph), (0, pw)), mode=mode)


def iter_blended_rows(
    predictor: Predictor,
    read: ReadWindow,
    height: int,
    width: int,
    clicks: Sequence[Click] = (),
    *,
    tile_px: int | None = None,
    overlap_px: int | None = None,
    batch_size: int = 4,
    annotations: bool = True,
    on_tile: Callable[[int, int], None] | None = None,
    output: str = "probabilities",
    tile_outputs: Callable[[np.ndarray], np.ndarray] | None = None,
    channels: int | None = None,
    reduce_rows: Callable[[np.ndarray], Any] | None = None,
    skip_tile: Callable[[int, int, int, int], bool] | None = None,
    on_skipped: Callable[[int], None] | None = None,
) -> Iterator[tuple[int, int, Any]]:
    """Yield ``(row_start, row_stop, block)`` top to bottom.

    ``output`` chooses the block: ``"probabilities"`` ``(K, rows, W)``
    float32, ``"logits"`` (the blended logits), or ``"labels"`` ``(rows, W)``
    uint8, which skips the normalisation altogether.

    ``tile_outputs`` replaces ``predictor.logits`` with any per-tile function
    ``(N, C_in, h, w) -> (N, channels, h, w)``; with ``output="logits"`` its
    channels come back blended with the same weights (acquisition maps use
    this for scores that are not class logits).

    ``reduce_rows`` turns each block into what is yielded instead (it may
    overwrite the block). It runs on the blending thread, in the gaps the
    model leaves, rather than on the caller's thread between model runs.

    ``skip_tile(row, col, height, width)``, when it says True (a tile with
    no data), leaves that tile out: the model never sees it and it adds
    nothing to the blend, so pixels no other tile covers come out as zero
    logits (the caller masks them). ``on_skipped(n)`` is told how many tiles
    of each batch were left out, just before ``on_tile`` counts the batch.
    """
    if output not in ("probabilities", "logits", "labels"):
        raise ValueError(f"unknown output {output!r}")
    manifest = predictor.manifest
    tile_px = tile_px or manifest.tile_px
    overlap_px = manifest.overlap_px if overlap_px is None else overlap_px
    grid = TileGrid(height, width, tile_px, overlap_px)
    th, tw = grid.tile_height, grid.tile_width
    weights = blend_weights(th, tw, overlap_px)
    radius = manifest.click_encoding.radius_px
    n_classes = channels or manifest.n_classes
    run = tile_outputs or predictor.logits
    rows, cols = grid.row_starts, grid.col_starts
    total, done = len(grid), 0

    padded_h, padded_w = -(-th // STRIDE_MULTIPLE) * STRIDE_MULTIPLE, -(-tw // STRIDE_MULTIPLE) * STRIDE_MULTIPLE

    def prepare(r0: int, batch_cols: list[int]) -> tuple[np.ndarray, list[int]]:
        if skip_tile is not None:
            batch_cols = [c0 for c0 in batch_cols if not skip_tile(r0, c0, th, tw)]
        batch = np.empty((len(batch_cols), manifest.in_channels, padded_h, padded_w), dtype=np.float32)
        for slot, c0 in zip(batch, batch_cols):
            near = clicks_in_window(clicks, (r0, c0, th, tw), radius)
            tile = read(r0, c0, th, tw)
            if (padded_h, padded_w) == (th, tw):
                network_input(tile, near, manifest, origin=(r0, c0), annotations=annotations, out=slot)
            else:
                slot[...] = pad_to_multiple(network_input(tile, near, manifest, origin=(r0, c0),
                                                          annotations=annotations))
        return batch, batch_cols

    # Three stages overlap, each on its own thread: reading and encoding the
    # next batch, the model on this one, and blending the previous one into
    # the accumulators (then finishing a tile row). ONNX Runtime and numpy
    # release the GIL, and the model leaves both cores idle for part of each
    # run, so the other stages mostly fit in those gaps.
    batches = [(r0, cols[b : b + batch_size]) for r0 in rows for b in range(0, len(cols), batch_size)]
    prefetch = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tile-prep")
    blender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tile-blend")
    pending = prefetch.submit(prepare, *batches[0])
    next_batch = 1

    # One tile row of accumulators, reused, touched only by the blender
    # thread: row ``acc_top`` (the current tile row's start) is at index 0;
    # after each row the overlap that later tiles still add to moves to the
    # top and the rest is cleared. Labels need no weight sum: dividing by it
    # cannot change the argmax.
    acc = np.zeros((n_classes, th, width), dtype=np.float32)
    wsum = np.zeros((th, width), dtype=np.float32) if output != "labels" else None
    acc_top = 0

    def blend(logits: np.ndarray, batch_cols: list[int]) -> None:
        for z, c0 in zip(logits, batch_cols):
            np.multiply(z, weights, out=z)
            view = acc[:, :, c0 : c0 + tw]
            np.add(view, z, out=view)
            if wsum is not None:
                wsum[:, c0 : c0 + tw] += weights

    def finish_row(final: int) -> tuple[int, int, np.ndarray]:
        nonlocal acc_top
        n = final - acc_top
        if output == "labels":
            block = class_argmax(acc[:, :n])
        else:
            # A pixel only skipped tiles cover has no weight: it gets zero logits, not 0 / 0.
            block = acc[:, :n] / (wsum[None, :n] if skip_tile is None else np.maximum(wsum[None, :n], 1e-12))
            if output == "probabilities":
                block = softmax(block, axis=0)
        if reduce_rows is not None:
            block = reduce_rows(block)
        kept = acc.shape[1] - n
        acc[:, :kept] = acc[:, n:]
        acc[:, kept:] = 0
        if wsum is not None:
            wsum[:kept] = wsum[n:]
            wsum[kept:] = 0
        top, acc_top = acc_top, final
        return top, final, block

    # Futures of the blender, oldest first: blends (None) and finished rows.
    # Waiting on the oldest bounds how many model outputs queue up, and
    # .result() re-raises a blending error here.
    queued: deque = deque()

    def hand_out(keep: int) -> Iterator[tuple[int, int, np.ndarray]]:
        """Pop the oldest futures while more than ``keep`` are queued or the oldest is done."""
        while len(queued) > keep or (queued and queued[0].done()):
            outcome = queued.popleft().result()
            if outcome is not None:
                yield outcome

    try:
        for i, r0 in enumerate(rows):
            for b in range(0, len(cols), batch_size):
                batch_cols = cols[b : b + batch_size]
                batch, kept = pending.result()
                if next_batch < len(batches):
                    pending = prefetch.submit(prepare, *batches[next_batch])
                    next_batch += 1
                if kept:
                    logits = run(batch)[:, :, :th, :tw]
                    queued.append(blender.submit(blend, logits, kept))
                if on_skipped is not None and len(kept) < len(batch_cols):
                    on_skipped(len(batch_cols) - len(kept))
                done += len(batch_cols)
                if on_tile is not None:
                    on_tile(done, total)
                yield from hand_out(keep=2)
            final = rows[i + 1] if i + 1 < len(rows) else height
            queued.append(blender.submit(finish_row, final))
            yield from hand_out(keep=1)
        yield from hand_out(keep=0)
    finally:
        pending.cancel()
        for future in queued:
            future.cancel()
        prefetch.shutdown(wait=True)
        blender.shutdown(wait=True)


def predict_probabilities(
    predictor: Predictor,
    image: np.ndarray,
    clicks: Sequence[Click] = (),
    **kwargs,
) -> np.ndarray:
    """``(K, H, W)`` float32 probabilities for an in-memory ``(H, W, B)`` image."""
    height, width = image.shape[:2]
    out = np.empty((predictor.manifest.n_classes, height, width), dtype=np.float32)
    for top, bottom, block in iter_blended_rows(predictor, array_reader(image), height, width, clicks, **kwargs):
        out[:, top:bottom] = block
    return out


def predict_labels(predictor: Predictor, image: np.ndarray, clicks: Sequence[Click] = (), **kwargs) -> np.ndarray:
    """``(H, W)`` uint8 labels; never holds more than one tile row of probabilities."""
    height, width = image.shape[:2]
    out = np.empty((height, width), dtype=np.uint8)
    for top, bottom, block in iter_blended_rows(predictor, array_reader(image), height, width, clicks,
                                                output="labels", **kwargs):
        out[top:bottom] = block
    return out

"""What a model sees of a raster: a window of it, its bands in the model's order, rescaled to the model's range.

A model fixes its input bands and dtype (its manifest), but rasters come as
they come: a SpaceNet panchromatic chip is one uint16 band of 11-bit values,
while the shipped models take three uint8 bands. :class:`BandMapping` says
which source bands feed the model (1-based, repeats allowed, so one band can
feed three) and which source values span the model's range (0..2047 onto
0..255), and :class:`RasterView` applies it, and a window, to every read of
an open raster, so the tiler reads model-ready tiles one at a time and
memory stays one tile, however large the raster.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from dial.imagery.georef import Window

# The model input range per dtype: what a rescaled source is stretched onto.
DTYPE_MAX = {"uint8": 255, "uint16": 65535}


@dataclass(frozen=True)
class BandMapping:
    """``source_bands``: 1-based source band per model band (empty: the source's own order).
    ``source_range``: the source values ``(min, max)`` mapped linearly onto the model's dtype
    range, clipped outside (None: values pass unchanged, so the dtypes must match)."""

    source_bands: tuple[int, ...] = ()
    source_range: tuple[float, float] | None = None

    @property
    def is_identity(self) -> bool:
        return not self.source_bands and self.source_range is None

    def problems(self, source_bands: int, source_dtype: str, model_bands: int, model_dtype: str
                 ) -> list[tuple[str, str]]:
        """``(part, message)`` for each way the mapping cannot feed this model from this source;
        ``part`` is ``source_bands``, ``source_bands[i]``, ``source_range``, ``bands`` or ``dtype``."""
        out = []
        if self.source_bands:
            if len(self.source_bands) != model_bands:
                out.append(("source_bands", f"lists {len(self.source_bands)} bands, the model takes {model_bands}"))
            for i, band in enumerate(self.source_bands):
                if not 1 <= band <= source_bands:
                    out.append((f"source_bands[{i}]", f"band {band} does not exist; the source has bands "
                                                      f"1..{source_bands}"))
        elif source_bands != model_bands:
            hint = f" (for a 1-band source: source_bands [{', '.join(['1'] * model_bands)}])" if source_bands == 1 else ""
            out.append(("bands", f"the model takes {model_bands} bands, the source has {source_bands}; choose "
                                 f"them with source_bands{hint}"))
        if self.source_range is not None:
            low, high = self.source_range
            if not (np.isfinite(low) and np.isfinite(high) and high > low):
                out.append(("source_range", f"needs finite min < max, got {low}..{high}"))
        elif source_dtype != model_dtype:
            example = " (0..2047 for 11-bit imagery)" if source_dtype == "uint16" else ""
            out.append(("dtype", f"the model takes {model_dtype}, the source is {source_dtype}; set source_range "
                                 f"to the source values that span the model's 0..{DTYPE_MAX[model_dtype]}{example}"))
        return out

    def apply(self, pixels: np.ndarray, model_dtype: str) -> np.ndarray:
        """``(H, W, B)`` source pixels as the model's ``(H, W, model bands)`` of ``model_dtype``."""
        if self.source_bands:
            pixels = pixels[..., [b - 1 for b in self.source_bands]]
        if self.source_range is None:
            return pixels
        low, high = self.source_range
        top = DTYPE_MAX[model_dtype]
        # float32 holds every uint16 value exactly; rounding, not truncation, keeps 2047 -> 255.
        scaled = (pixels.astype(np.float32) - np.float32(low)) * np.float32(top / (high - low))
        return np.rint(np.clip(scaled, 0, top, out=scaled), out=scaled).astype(model_dtype)


class RasterView:
    """A ``RasterReader``'s ``window`` (default: all of it), read through ``mapping`` as ``model_dtype``.

    It reads like the reader (``info``, ``read``, ``close``) in the window's
    own pixel coordinates, and ``info.geo`` is the window's georeference, so
    the tiler and the output writer need not know there is a window.
    """

    def __init__(self, reader, window: Window | None = None, mapping: BandMapping = BandMapping(),
                 model_dtype: str | None = None):
        base = reader.info
        self.reader = reader
        self.window = base.window if window is None else Window(*window)
        if not self.window.inside(base.height, base.width):
            raise ValueError(f"window {tuple(self.window)} is not a non-empty window inside the "
                             f"{base.height} × {base.width} (height × width) raster")
        self.mapping = mapping
        self.model_dtype = model_dtype or base.dtype
        self.info = replace(
            base, height=self.window.height, width=self.window.width,
            bands=len(mapping.source_bands) or base.bands,
            dtype=self.model_dtype if mapping.source_range is not None else base.dtype,
            geo=base.geo.for_window(self.window) if base.geo is not None else None)

    def read(self, row_off: int, col_off: int, height: int, width: int) -> np.ndarray:
        pixels = self.reader.read(self.window.row_off + row_off, self.window.col_off + col_off, height, width)
        return pixels if self.mapping.is_identity else self.mapping.apply(pixels, self.model_dtype)

    @property
    def masked(self) -> bool:
        return self.reader.masked

    def valid(self, row_off: int, col_off: int, height: int, width: int) -> np.ndarray:
        """The reader's nodata mask of a window of the view (True where there is data)."""
        return self.reader.valid(self.window.row_off + row_off, self.window.col_off + col_off, height, width)

    def close(self) -> None:
        self.reader.close()

    def __enter__(self) -> "RasterView":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

"""Edge validation: protobuf messages in, core types out, or field violations.

Every service converts requests here and nowhere else, so each rule (sane
sizes, band count, clicks inside the image, class ids the model knows) is
written once and holds everywhere. Decoding the bytes themselves (known
dtype, byte length for a shape) is the wire format's, shared with the client:
here its errors become field violations.
"""
from __future__ import annotations

import math

import numpy as np

from dial.clicks import Click
from dial.imagery.georef import GeoReference
from dial.model.manifest import Manifest
from dial.model.repository import ModelRef, check_name, check_version
from dial_client import wire
from dial_client.wire import DTYPE_NAMES, WireError, common_pb2
from dial_services.common.errors import Violations, invalid_argument


def check_shape(v: Violations, field: str, height: int, width: int, bands: int | None, max_px: int) -> bool:
    ok = v.check(height > 0, f"{field}.height", "must be > 0")
    ok &= v.check(width > 0, f"{field}.width", "must be > 0")
    if bands is not None:
        ok &= v.check(bands in (1, 3, 4), f"{field}.bands", f"must be 1, 3 or 4, got {bands}")
    if ok and height * width > max_px:
        v.add(f"{field}", f"{height} × {width} pixels (height × width) exceeds the limit of {max_px} per message; "
                          "send a raster reference or a tile stream instead")
        ok = False
    return ok


def check_model_input(v: Violations, field: str, bands: int, dtype_name: str | None, manifest: Manifest) -> None:
    v.check(bands == manifest.n_bands, f"{field}.bands",
            f"model {manifest.name}:{manifest.version} takes {manifest.n_bands} bands, got {bands}")
    if dtype_name is not None:
        v.check(dtype_name == manifest.input_dtype, f"{field}.dtype",
                f"model {manifest.name}:{manifest.version} takes {manifest.input_dtype}, got {dtype_name}")


def image_from_proto(image: common_pb2.Image, field: str, max_px: int, manifest: Manifest | None = None,
                     v: Violations | None = None) -> np.ndarray | None:
    """``(H, W, B)`` read-only view of the message's bytes, or None with violations recorded
    (raises if ``v`` is not given)."""
    own = v is None
    v = v or Violations()
    # The dtype is checked on its own first, so that a bad dtype and a bad shape are reported together.
    dtype_ok = wire_decoded(v, field, wire.wire_dtype, image.dtype) is not None
    shape_ok = check_shape(v, field, image.height, image.width, image.bands, max_px)
    array = None
    if dtype_ok and shape_ok:
        # No copy: a large image would otherwise be held twice while it is served.
        array = wire_decoded(v, field, wire.image_from_proto, image, copy=False)
        if array is not None and manifest is not None:
            check_model_input(v, field, image.bands, DTYPE_NAMES[image.dtype], manifest)
    if own:
        v.raise_if_any()
    return array


def wire_decoded(v: Violations, field: str, decode, *args, **kwargs):
    """What ``decode`` returns, or None with its WireError recorded as a violation of ``field``'s part."""
    try:
        return decode(*args, **kwargs)
    except WireError as error:
        v.add(f"{field}.{error.field}", error.description)
        return None


def clicks_from_proto(clicks, field: str, height: int, width: int, manifest: Manifest,
                      geo: GeoReference | None, max_clicks: int,
                      v: Violations | None = None) -> list[Click]:
    """Core clicks in pixel coordinates; map clicks need the image's georeference."""
    own = v is None
    v = v or Violations()
    out: list[Click] = []
    if len(clicks) > max_clicks:
        v.add(field, f"{len(clicks)} clicks exceeds the limit of {max_clicks} per request")
        clicks = []
    for i, click in enumerate(clicks):
        path = f"{field}[{i}]"
        ok = v.check(click.class_id < manifest.n_classes, f"{path}.class_id",
                     f"unknown class id {click.class_id}; model {manifest.name}:{manifest.version} has classes "
                     f"0..{manifest.n_classes - 1} ({', '.join(manifest.class_names)})")
        which = click.WhichOneof("location")
        if which == "pixel":
            row, col = click.pixel.row, click.pixel.col
        elif which == "map":
            p = click.map
            if not (math.isfinite(p.x) and math.isfinite(p.y)):
                v.add(f"{path}.map", "coordinates must be finite numbers")
                continue
            if geo is None:
                v.add(f"{path}.map", "map clicks need a georeferenced image (set image.geo or use a GeoTIFF)")
                continue
            try:
                frow, fcol = geo.map_to_pixel(p.x, p.y, p.crs or None)
            except Exception as error:  # noqa: BLE001 - any CRS failure is the caller's input
                v.add(f"{path}.map.crs", f"cannot transform from {p.crs!r}: {error}")
                continue
            if not (math.isfinite(frow) and math.isfinite(fcol)):
                v.add(f"{path}.map", "coordinates do not map to a pixel")
                continue
            row, col = int(math.floor(frow)), int(math.floor(fcol))
        else:
            v.add(path, "a click needs a pixel or a map location")
            continue
        inside = 0 <= row < height and 0 <= col < width
        ok &= v.check(inside, f"{path}.{which}",
                      f"({row}, {col}) is outside the {height} × {width} (height × width) image")
        if ok:
            out.append(Click(int(row), int(col), int(click.class_id)))
    if own:
        v.raise_if_any()
    return out


# Longer than any WKT or PROJJSON definition of a real CRS; PROJ need not parse a megabyte to refuse it.
MAX_CRS_CHARS = 16384


def geo_from_proto(geo: common_pb2.GeoReference, field: str, v: Violations) -> GeoReference | None:
    """The core georeference of a message (None when it is empty), checked before anything is computed or
    written with it."""
    if not geo.crs and not geo.transform:
        return None
    ok = True
    if len(geo.transform) != 6 or not all(math.isfinite(t) for t in geo.transform):
        v.add(f"{field}.transform", "must hold 6 finite affine coefficients (a, b, c, d, e, f)")
        ok = False
    else:
        a, b, _, d, e, _ = geo.transform
        ok = v.check(a * e - b * d != 0, f"{field}.transform",
                     "must be invertible (a*e - b*d != 0): pixel sizes cannot be zero")
    if geo.crs:
        ok &= check_crs(v, f"{field}.crs", geo.crs)
    return GeoReference(geo.crs or None, tuple(geo.transform)) if ok else None


def check_crs(v: Violations, field: str, crs: str) -> bool:
    """A CRS that PROJ understands; anything else is the caller's input, not a server failure."""
    if len(crs) > MAX_CRS_CHARS:
        return v.check(False, field, f"{len(crs)} characters is longer than any coordinate reference system")
    from rasterio.crs import CRS
    from rasterio.errors import CRSError

    try:
        CRS.from_user_input(crs)
    except (CRSError, ValueError, TypeError):
        shown = repr(crs) if len(crs) <= 60 else f"{crs[:60]!r}..."
        return v.check(False, field, f"{shown} is not a coordinate reference system; give an EPSG code "
                                     "(EPSG:32631), WKT or a PROJ string")
    return True


def model_ref_from_proto(proto: common_pb2.ModelRef, field: str, v: Violations | None = None, *,
                         version_required: bool = False) -> ModelRef | None:
    """The model a request names, checked by the repository's one rule for names and versions.

    Names and versions become folder names, so nothing else may reach the
    repository; messages quote only what the caller sent, never a server path.
    """
    own = v is None
    v = v or Violations()
    ok = True
    if not proto.name:
        v.add(f"{field}.name", "a model name is required (Segmenter.ListModels shows what is served)")
        ok = False
    else:
        try:
            check_name(proto.name)
        except ValueError as error:
            v.add(f"{field}.name", str(error))
            ok = False
    if proto.version or version_required:
        try:
            check_version(proto.version)
        except ValueError as error:
            v.add(f"{field}.version", str(error))
            ok = False
    if own:
        v.raise_if_any()
    return ModelRef(proto.name, proto.version or None) if ok else None


# A create's idempotency key: room for a UUID (36) or a caller's own key.
MAX_REQUEST_ID_CHARS = 128


def check_request_id(v: Violations, request_id: str) -> None:
    v.check(len(request_id) <= MAX_REQUEST_ID_CHARS, "request_id",
            f"at most {MAX_REQUEST_ID_CHARS} characters (a UUID is 36)")


def page_bounds(page_size: int, page_token: str, total: int, default: int = 50, maximum: int = 1000) -> tuple[int, int]:
    """AIP-158 paging over an ordered list: (start, stop)."""
    if page_size < 0:
        raise invalid_argument([("page_size", "must be >= 0 (0 lets the server choose)")])
    size = default if page_size <= 0 else min(page_size, maximum)
    try:
        start = int(page_token) if page_token else 0
    except ValueError:
        raise invalid_argument([("page_token", "not a token this server issued")]) from None
    if not 0 <= start <= total:
        raise invalid_argument([("page_token", "not a token this server issued")])
    return start, min(start + size, total)

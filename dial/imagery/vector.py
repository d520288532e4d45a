"""Polygons from a class map: one feature per connected region, as GeoPackage or GeoJSON.

A class map (``(H, W)`` class ids, or band 1 of a class-map GeoTIFF) and its
georeferencing go in; features with ``class_id`` and ``class_name`` come out.
Regions are 4-connected (pixels sharing an edge), so every region is one
polygon with its holes, and neighbouring classes share their edges exactly.
Ignored pixels (``ignore_index``) and the raster's nodata make no feature.

Memory follows a strip of the map, not the map. The class map is read in
strips of about ``STRIP_PX`` pixels; each strip's regions are labelled
(scipy.ndimage) and their outlines traced with array operations, so no
Python runs per vertex, nor per region except for those crossing a seam.
The outlines are GDAL's own (``gdal_polygonize`` with 4-connectedness gives
the same rings, vertex for vertex), at array speed: per feature, GDAL's
polygoniser through rasterio plus fiona's writer cost ~100 us in Python,
and a 4000x4000 map of one-pixel regions has ten million features. A region
that crosses a strip's lower edge is held, as pieces, until the strip below
shows where it ends; its pieces, which share their seam edges vertex for
vertex, are then joined in one coverage union. Finished regions go to the
writer strip by strip.

Formats (written by GDAL through pyogrio, from arrays of WKB):
- GeoPackage keeps the class map's own CRS and map units.
- GeoJSON follows RFC 7946: coordinates are WGS 84 longitude, latitude
  (reprojected from the class map's CRS by GDAL), exterior rings
  counter-clockwise and holes clockwise, so a class map needs a CRS.
"""
from __future__ import annotations

import itertools
import logging
import os
import uuid
import warnings
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rasterio.windows import Window as RasterioWindow

from dial.imagery.georef import GeoReference
from dial.imagery.legend import IGNORE_INDEX
from dial.imagery.opener import GEOTIFF, reading
from dial.imagery.readers import georeference

FORMATS = {".gpkg": "GPKG", ".geojson": "GeoJSON", ".json": "GeoJSON"}
FIELDS = ["class_id", "class_name"]
# Features per GDAL write: each write opens and closes the GeoPackage (~20 ms),
# so strips' batches are gathered to this many (a few MB of WKB).
WRITE_FEATURES = 50_000
# pyogrio reports every write at INFO ("Created N records"), which would
# fill the log of whatever runs DIAL with one line per batch.
logging.getLogger("pyogrio").setLevel(logging.WARNING)
# Pixels traced at a time. Tracing a strip of one-pixel regions (the worst
# case: ~2.5 boundary edges per pixel) peaks near 500 bytes per pixel of
# arrays, plus its polygons; 64 Ki pixels measured 30 MB of arrays and the
# same speed as 250 Ki pixels, whose worst case needed twice the memory.
STRIP_PX = 65_536


class VectorError(ValueError):
    """The class map cannot be written as asked; the message says what to change."""


@dataclass(frozen=True)
class Feature:
    """One connected region: its polygon in map units (GeoJSON-like mapping) and its class."""

    geometry: dict
    class_id: int
    class_name: str


def class_name_for(class_names: Sequence[str], class_id: int) -> str:
    return class_names[class_id] if 0 <= class_id < len(class_names) else f"class_{class_id}"


def _label_regions(classes: np.ndarray, skip: set[int]) -> tuple[np.ndarray, np.ndarray]:
    """4-connected regions of equal class: labels ``1..n`` (0 where no region) and the class of each label."""
    from scipy import ndimage

    labels = np.zeros(classes.shape, np.int32)
    region_class = [np.zeros(1, np.int64)]
    count = 0
    for value in np.unique(classes):
        if int(value) in skip:
            continue
        these, n = ndimage.label(classes == value)  # the default structure is the 4-neighbour cross
        inside = these > 0
        labels[inside] = these[inside] + count
        region_class.append(np.full(n, int(value), np.int64))
        count += n
    return labels, np.concatenate(region_class)


# Sides of a pixel, in the order an outline walks round it: top, right,
# bottom, left. Each boundary edge runs clockwise round its own pixel as the
# image is shown (rows down), so a region's outer ring has a positive
# shoelace area in (column, row) and its holes a negative one.
_OUTWARD = np.array([(-1, 0), (0, 1), (1, 0), (0, -1)], np.int32)  # the neighbour across the side
_AHEAD = np.array([(0, 1), (1, 0), (0, -1), (-1, 0)], np.int32)    # the pixel the edge runs on into
_DIAGONAL = np.array([(-1, 1), (1, 1), (1, -1), (-1, -1)], np.int32)
_START = np.array([(0, 0), (1, 0), (1, 1), (0, 1)], np.int32)      # (dx, dy) of the edge's first vertex


def _trace(labels: np.ndarray, row_off: int, transform, seam_labels: np.ndarray, seam_rows: Sequence[int]):
    """The polygon of every label ``1..n`` of ``labels``, in map coordinates, as a shapely array in label order.

    Vertices are kept where an outline turns, and also along ``seam_rows``
    (local vertex rows) for ``seam_labels``: a piece to be joined with its
    neighbour across a seam must share every vertex of the seam with it.
    """
    import shapely

    h, w = labels.shape
    n = int(labels.max(initial=0))
    if n == 0:
        return np.empty(0, dtype=object)
    padded = np.pad(labels, 1)
    pieces = []
    for s, (dr, dc) in enumerate(_OUTWARD):
        across = padded[1 + dr:h + 1 + dr, 1 + dc:w + 1 + dc]
        rows, cols = np.nonzero((labels > 0) & (across != labels))
        pieces.append((np.full(rows.size, s, np.int8), rows.astype(np.int32), cols.astype(np.int32)))
    side = np.concatenate([p[0] for p in pieces])
    rows = np.concatenate([p[1] for p in pieces])
    cols = np.concatenate([p[2] for p in pieces])
    edges = side.size
    index_dtype = np.int32 if 4 * h * w < 2**31 else np.int64
    idx = np.arange(edges, dtype=index_dtype)
    index = np.full(4 * h * w, -1, index_dtype)
    index[(side.astype(index_dtype) * h + rows) * w + cols] = idx
    label = labels[rows, cols]

    # The edge that follows each edge round its region. Straight on when the
    # pixel ahead is the region's too; round the corner onto the diagonal
    # pixel when that one is (a concave corner, or a pinch point); else round
    # its own pixel. At a pinch (two of the region's pixels meeting at a
    # corner only) this keeps the outer ring and the hole it closes as two
    # rings that touch at a point, the OGC-valid form GDAL writes too.
    next_side = (side + 1) % 4
    next_rows, next_cols = rows.copy(), cols.copy()
    for offsets, turn in ((_AHEAD, 0), (_DIAGONAL, -1)):
        r, c = rows + offsets[side, 0], cols + offsets[side, 1]
        same = padded[r + 1, c + 1] == label
        next_side = np.where(same, (side + turn) % 4, next_side)
        next_rows, next_cols = np.where(same, r, next_rows), np.where(same, c, next_cols)
    nxt = index[(next_side.astype(index_dtype) * h + next_rows) * w + next_cols]
    del index, next_rows, next_cols, next_side

    # Each ring is named by its smallest edge (pointer jumping: log2 of the
    # longest ring rounds), then each edge's place after that head is found
    # by list ranking, so rings come out in order without a Python loop.
    ring, jump = idx.copy(), nxt.copy()
    while True:
        lower = np.minimum(ring, ring[jump])
        if np.array_equal(lower, ring):
            break
        ring, jump = lower, jump[jump]
    del jump, lower
    succ = nxt.copy()
    tail = nxt == ring
    succ[tail] = idx[tail]
    to_tail = (~tail).astype(index_dtype)
    active = np.flatnonzero(succ[succ] != succ)
    while active.size:
        s = succ[active]
        to_tail[active] += to_tail[s]
        succ[active] = succ[s]
        active = active[succ[succ[active]] != succ[active]]
    del succ, tail
    heads = np.flatnonzero(ring == idx)
    number = np.empty(edges, index_dtype)
    number[heads] = np.arange(heads.size, dtype=index_dtype)
    ring_of = number[ring]
    del ring, number
    length = np.bincount(ring_of, minlength=heads.size)
    place = length[ring_of] - 1 - to_tail

    x = cols + _START[side, 0]
    y = rows + _START[side, 1]
    area = np.bincount(ring_of, weights=x.astype(np.float64) * y[nxt] - x[nxt].astype(np.float64) * y,
                       minlength=heads.size)
    ring_label = label[heads]
    order = np.lexsort((area < 0, ring_label))  # by region, its outer ring before its holes
    rank = np.empty(heads.size, np.int64)
    rank[order] = np.arange(heads.size)
    first = np.zeros(heads.size, np.int64)
    first[order] = np.cumsum(length[order]) - length[order]
    in_order = np.empty(edges, index_dtype)
    in_order[first[ring_of] + place] = idx

    before = np.empty(edges, index_dtype)
    before[nxt] = idx
    keep = side[before] != side
    if len(seam_rows):
        keep |= seam_labels[label] & np.isin(y, seam_rows)
    kept = in_order[keep[in_order]]
    counts = np.bincount(rank[ring_of[kept]], minlength=heads.size)  # vertices per ring, in ring order

    # Closed rings (first vertex repeated) for shapely's ragged constructor.
    ring_offsets = np.concatenate([[0], np.cumsum(counts + 1)])
    coords = np.empty((kept.size + heads.size, 2))
    at = np.arange(kept.size) + rank[ring_of[kept]]
    a, b, c, d, e, f = transform
    col, row = x[kept].astype(np.float64), y[kept].astype(np.float64) + row_off
    coords[at, 0] = a * col + b * row + c
    coords[at, 1] = d * col + e * row + f
    coords[ring_offsets[1:] - 1] = coords[ring_offsets[:-1]]
    rings_per_label = np.bincount(ring_label, minlength=n + 1)[1:]
    polygon_offsets = np.concatenate([[0], np.cumsum(rings_per_label)])
    return shapely.from_ragged_array(shapely.GeometryType.POLYGON, coords, (ring_offsets, polygon_offsets))


def _finish(groups: list[list]) -> np.ndarray:
    """Each group's pieces joined into one polygon, without the vertices the seams left on straight edges."""
    import shapely

    if not groups:
        return np.empty(0, dtype=object)
    joined = np.array([p[0] if len(p) == 1 else shapely.coverage_union_all(p) for p in groups], dtype=object)
    return shapely.simplify(joined, 0.0)  # a zero tolerance drops exactly the collinear vertices


def _region_batches(read_rows, height: int, width: int, skip: set[int], transform,
                    strip_px: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Every connected region once, strip by strip: ``(polygons in map coordinates, class ids)``."""
    rows = max(1, strip_px // max(width, 1))
    open_groups: dict[int, list] = {}  # a region still crossing the last strip's lower edge: its pieces
    open_class: dict[int, int] = {}
    above_group = above_class = None   # per column of the last row read: its open group (-1: none)
    next_group = 0
    for top in range(0, height, rows):
        bottom = min(top + rows, height)
        classes = np.asarray(read_rows(top, bottom))
        labels, region_class = _label_regions(classes, skip)
        n = region_class.size - 1
        if above_group is not None:
            cols = np.flatnonzero((above_group >= 0) & (labels[0] > 0) & (classes[0] == above_class))
            pairs = np.unique(np.stack([above_group[cols], labels[0, cols]], axis=1), axis=0)
        else:
            pairs = np.empty((0, 2), np.int64)
        continues = bottom < height
        at_bottom = np.zeros(n + 1, bool)
        if continues:
            at_bottom[labels[-1]] = True
            at_bottom[0] = False
        joined_above = np.zeros(n + 1, bool)
        joined_above[pairs[:, 1]] = True
        seam_rows = ([0] if top > 0 else []) + ([bottom - top] if continues else [])
        polygons = _trace(labels, top, transform, at_bottom | joined_above, seam_rows)

        # Join the pieces above with this strip's by union-find over the seam's pairs.
        parent: dict[tuple[str, int], tuple[str, int]] = {}

        def find(key):
            parent.setdefault(key, key)
            while parent[key] != key:
                parent[key] = parent[parent[key]]
                key = parent[key]
            return key

        for g, lab in pairs.tolist():
            parent[find(("g", g))] = find(("l", lab))
        components: dict[tuple[str, int], tuple[set, list]] = {}
        for g, lab in pairs.tolist():
            groups_above, labels_here = components.setdefault(find(("g", g)), (set(), []))
            groups_above.add(g)
            labels_here.append(lab)
        label_group = np.full(n + 1, -1, np.int64)
        finished, finished_class = [], []
        above_groups = set(open_groups)
        for groups_above, labels_here in components.values():
            labels_here = sorted(set(labels_here))
            pieces = [p for g in sorted(groups_above) for p in open_groups.pop(g)]
            pieces.extend(polygons[lab - 1] for lab in labels_here)
            class_id = open_class[min(groups_above)]
            if at_bottom[labels_here].any():
                open_groups[next_group], open_class[next_group] = pieces, class_id
                label_group[labels_here] = next_group
                next_group += 1
            else:
                finished.append(pieces)
                finished_class.append(class_id)
            for g in groups_above:
                open_class.pop(g)
        for g in above_groups & set(open_groups):  # regions that ended on the last strip's lower edge
            finished.append(open_groups.pop(g))
            finished_class.append(open_class.pop(g))
        for lab in np.flatnonzero(at_bottom & ~joined_above).tolist():
            open_groups[next_group], open_class[next_group] = [polygons[lab - 1]], int(region_class[lab])
            label_group[lab] = next_group
            next_group += 1
        alone = ~at_bottom & ~joined_above
        alone[0] = False
        yield (np.concatenate([polygons[alone[1:]], _finish(finished)]),
               np.concatenate([region_class[alone], np.asarray(finished_class, np.int64)]))
        above_group, above_class = label_group[labels[-1]], classes[-1]
    # Nothing is left open: the last strip has no lower seam.


def feature_batches(source, geo: GeoReference | None, *, simplify: float = 0.0, nodata: int | None = None,
                    ignore_index: int = IGNORE_INDEX,
                    strip_px: int = STRIP_PX) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The connected regions of ``source`` in batches: ``(shapely polygons in map units, class ids)``.

    ``source`` is an ``(H, W)`` integer array or a rasterio dataset (its
    band 1, read strip by strip). ``simplify`` is a tolerance in map units
    (0: the exact pixel outlines); each polygon stays valid with its holes
    inside, but is simplified on its own, so an edge two classes share may
    move by up to the tolerance differently on each side. ``strip_px`` is
    about how many pixels are traced at a time (whole rows, at least one).
    """
    import shapely

    if simplify < 0:
        raise VectorError(f"simplify must be a distance in map units >= 0, not {simplify}")
    if isinstance(source, np.ndarray):
        if source.ndim != 2:
            raise VectorError(f"a class map is (H, W); got shape {source.shape}")
        if not np.issubdtype(source.dtype, np.integer):
            source = source.astype(np.int64)
        height, width = source.shape

        def read_rows(top: int, bottom: int) -> np.ndarray:
            return source[top:bottom]
    else:
        height, width = source.height, source.width

        def read_rows(top: int, bottom: int) -> np.ndarray:
            return source.read(1, window=RasterioWindow(0, top, width, bottom - top))
    transform = geo.transform if geo is not None else (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    skip = {ignore_index} | ({int(nodata)} if nodata is not None else set())
    for polygons, class_ids in _region_batches(read_rows, height, width, skip, transform, strip_px):
        if simplify and polygons.size:
            polygons = shapely.simplify(polygons, simplify, preserve_topology=True)
            present = ~shapely.is_empty(polygons)
            polygons, class_ids = polygons[present], class_ids[present]
        if polygons.size:
            yield polygons, class_ids


def features(source, geo: GeoReference | None, class_names: Sequence[str] = (), *, simplify: float = 0.0,
             nodata: int | None = None, ignore_index: int = IGNORE_INDEX,
             strip_px: int = STRIP_PX) -> Iterator[Feature]:
    """The connected regions of ``source`` one by one (see :func:`feature_batches`), as GeoJSON-like features."""
    from shapely.geometry import mapping

    for polygons, class_ids in feature_batches(source, geo, simplify=simplify, nodata=nodata,
                                               ignore_index=ignore_index, strip_px=strip_px):
        for polygon, class_id in zip(polygons, class_ids.tolist()):
            yield Feature(mapping(polygon), class_id, class_name_for(class_names, class_id))


def output_driver(path: str | Path) -> str:
    """GDAL's driver for ``path``'s suffix; VectorError for any other suffix."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise VectorError(f"{Path(path).name}: unknown vector format {suffix!r}; use .gpkg or .geojson")
    return FORMATS[suffix]


def _check_crs(driver: str, crs: str | None) -> None:
    if driver == "GeoJSON" and not crs:
        raise VectorError("the class map has no CRS, and GeoJSON (RFC 7946) is WGS 84 longitude/latitude; "
                          "write a GeoPackage (.gpkg) instead, which keeps pixel coordinates")


def _chunks(batches: Iterable[tuple[np.ndarray, np.ndarray]]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The batches regrouped into about ``WRITE_FEATURES`` features each (small strips give small batches)."""
    held, held_ids, size = [], [], 0
    for polygons, class_ids in batches:
        held.append(polygons)
        held_ids.append(class_ids)
        size += polygons.size
        if size >= WRITE_FEATURES:
            yield np.concatenate(held), np.concatenate(held_ids)
            held, held_ids, size = [], [], 0
    if size:
        yield np.concatenate(held), np.concatenate(held_ids)


def write_batches(batches: Iterable[tuple[np.ndarray, np.ndarray]], path: str | Path, crs: str | None,
                  class_names: Sequence[str] = (), *, layer: str | None = None) -> int:
    """Stream ``(polygons, class ids)`` batches (in the class map's ``crs``) to a .gpkg or .geojson file.

    Returns the feature count. The file appears only when it is complete: a
    failed run leaves the previous file, or none.
    """
    import pyogrio.raw
    import shapely

    path = Path(path)
    driver = output_driver(path)
    _check_crs(driver, crs)
    if not path.parent.is_dir():
        raise VectorError(f"{path.parent}: no such folder to write {path.name} in")
    layer = layer or path.stem
    # GDAL can append to a GeoPackage but not to a GeoJSON file (an appended
    # GeoJSON layer is rewritten whole, and its features are not
    # reprojected), so features always stream into a GeoPackage; GeoJSON is
    # then one streamed GDAL translation of it, which reprojects and orients.
    # One temporary per writer: two writers of one file (two sessions exported to one name) never append
    # to, or remove, each other's; the file is whichever finished last.
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.partial.gpkg")
    options = {"SPATIAL_INDEX": "YES" if driver == "GPKG" else "NO"}
    empty = (np.empty(0, dtype=object), np.empty(0, np.int64))
    count = 0
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="'crs' was not provided")  # a plain image's pixel grid
            # The first write creates the layer; the empty batch at the end
            # creates it when there was nothing else, so the file still opens with its fields.
            for polygons, class_ids in itertools.chain(_chunks(batches), [empty]):
                if partial.exists() and not polygons.size:
                    continue
                ids, where = np.unique(class_ids, return_inverse=True)
                names = np.array([class_name_for(class_names, int(i)) for i in ids], dtype=object)
                pyogrio.raw.write(partial, shapely.to_wkb(polygons), [class_ids.astype(np.int32), names[where]],
                                  FIELDS, layer=layer, driver="GPKG", geometry_type="Polygon", crs=crs,
                                  append=partial.exists(), layer_options=None if partial.exists() else options)
                count += polygons.size
        if driver == "GeoJSON":
            _translate_to_geojson(partial, path, layer)
        else:
            os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return count


def _translate_to_geojson(source: Path, path: Path, layer: str) -> None:
    import pyogrio.raw

    path.unlink(missing_ok=True)
    with pyogrio.raw.open_arrow(source, use_pyarrow=False) as (meta, stream):
        pyogrio.raw.write_arrow(stream, path, layer=layer, driver="GeoJSON", geometry_type="Polygon",
                                geometry_name=meta["geometry_name"], crs=meta["crs"],
                                layer_options={"RFC7946": "YES", "WRITE_BBOX": "YES"})


def vectorize(class_map: np.ndarray, geo: GeoReference | None, path: str | Path, class_names: Sequence[str] = (), *,
              simplify: float = 0.0, nodata: int | None = None) -> int:
    """Polygonise an in-memory class map into ``path`` (.gpkg or .geojson); returns the feature count."""
    crs = geo.crs if geo is not None else None
    _check_crs(output_driver(path), crs)
    return write_batches(feature_batches(class_map, geo, simplify=simplify, nodata=nodata), path, crs, class_names)


def category_names(path: str | Path) -> tuple[str, ...]:
    """Band 1's GDAL category names (kept in the GeoTIFF's ``.aux.xml``), or () when it has none."""
    aux = Path(f"{path}.aux.xml")
    if not aux.is_file():
        return ()
    try:
        root = ElementTree.parse(aux).getroot()
    except ElementTree.ParseError:
        return ()
    for band in root.iter("PAMRasterBand"):
        if band.get("band", "1") == "1":
            names = band.find("CategoryNames")
            if names is not None:
                return tuple((c.text or "").strip() for c in names.iter("Category"))
    return ()


def vectorize_file(class_map_path: str | Path, path: str | Path, class_names: Sequence[str] | None = None, *,
                   simplify: float = 0.0) -> int:
    """Polygonise band 1 of a class-map GeoTIFF, read strip by strip, into ``path``; returns the feature count.

    Class names default to the GeoTIFF's category names.
    """
    output_driver(path)
    names = tuple(class_names) if class_names else category_names(class_map_path)
    # The one guarded opener: a class map named .tif is read as a GeoTIFF and nothing it refers to.
    with reading(class_map_path, GEOTIFF) as ds:
        if ds.count < 1 or not np.issubdtype(np.dtype(ds.dtypes[0]), np.integer):
            raise VectorError(f"{Path(class_map_path).name}: a class map has integer class ids in band 1, "
                              f"not {ds.dtypes[0]}")
        geo = georeference(ds)
        crs = geo.crs if geo is not None else None
        _check_crs(output_driver(path), crs)
        nodata = int(ds.nodata) if ds.nodata is not None else None
        return write_batches(feature_batches(ds, geo, simplify=simplify, nodata=nodata), path, crs, names)

"""Polygons from a class map: one feature per connected region, as GeoPackage or GeoJSON.

A class map (``(H, W)`` class ids, or band 1 of a class-map GeoTIFF) and its
georeferencing go in; features with ``class_id`` and ``class_name`` come out.
Regions are 4-connected (pixels sharing an edge), so every region is one
simple polygon with its holes and neighbouring classes share their edges
exactly. Ignored pixels (``ignore_index``) and the raster's nodata make no
feature.

Memory stays bounded on large maps: the class map is polygonised (by GDAL)
in strips of about a million pixels, read from the file when a path is
given; a region that crosses a strip's edge is joined with its continuation
in the next strip (shapely), and finished features are streamed to the
writer in batches, never gathered.

Formats:
- GeoPackage keeps the class map's own CRS and map units.
- GeoJSON follows RFC 7946: coordinates are WGS 84 longitude, latitude
  (reprojected from the class map's CRS by GDAL), exterior rings
  counter-clockwise and holes clockwise, so a class map needs a CRS.
"""
from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio.features
from rasterio.transform import Affine
from rasterio.windows import Window

from dial.imagery.legend import IGNORE_INDEX
from dial.imagery.opener import GEOTIFF, reading
from dial.imagery.readers import GeoInfo, geo_info

FORMATS = {".gpkg": "GPKG", ".geojson": "GeoJSON", ".json": "GeoJSON"}
# Records per write: large enough that GeoPackage's per-transaction cost
# vanishes, small enough that a batch is a few MB at most.
BATCH_FEATURES = 2000
SCHEMA = {"geometry": "Polygon", "properties": {"class_id": "int", "class_name": "str"}}


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


# Pixels polygonised at a time: a strip of the class map this large, its
# polygons and those crossing the strip's lower edge are all that is held.
STRIP_PX = 1_000_000


def _pixel_shapes(block: np.ndarray, row_off: int):
    """GDAL's polygons of one strip in pixel coordinates (x = column, y = row), exact in floats."""
    return rasterio.features.shapes(block, connectivity=4, transform=Affine(1, 0, 0, 0, 1, row_off))


def _merge(pending: list, touching: list) -> list:
    """Join regions of the strip above (``pending``) with those of this strip they share an edge with.

    Both lists hold ``(polygon, class_id)``; shared corners do not join
    (4-connectivity). Regions that join no one come back unchanged.
    """
    from shapely import STRtree, union_all

    if not pending or not touching:
        return pending + touching
    parent = list(range(len(pending) + len(touching)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    tree = STRtree([p for p, _ in touching])
    for i, (polygon, class_id) in enumerate(pending):
        for j in tree.query(polygon):
            other, other_class = touching[int(j)]
            if other_class == class_id and polygon.intersection(other).length > 0:
                parent[find(i)] = find(len(pending) + int(j))
    groups: dict[int, list] = {}
    for i, item in enumerate(pending + touching):
        groups.setdefault(find(i), []).append(item)
    merged = []
    for members in groups.values():
        if len(members) == 1:
            merged.append(members[0])
            continue
        union = union_all([p for p, _ in members])
        merged.extend((part, members[0][1]) for part in getattr(union, "geoms", [union]))
    return merged


def _regions(read_rows, height: int, width: int, skip: set[int]) -> Iterator[tuple[object, int]]:
    """Every connected region once, in pixel coordinates: a GeoJSON-like dict, or a shapely polygon after a join.

    The map is polygonised strip by strip; a region crossing a strip's edge
    is held until the strip below shows where it ends.
    """
    from shapely.geometry import shape

    rows = max(1, STRIP_PX // max(width, 1))
    pending: list = []
    for top in range(0, height, rows):
        bottom = min(top + rows, height)
        touching, others = [], []
        for geometry, value in _pixel_shapes(read_rows(top, bottom), top):
            class_id = int(value)
            if class_id in skip:
                continue
            ys = [y for _, y in geometry["coordinates"][0]]
            at_top, at_bottom = top > 0 and min(ys) == top, bottom < height and max(ys) == bottom
            if not (at_top or at_bottom):
                yield geometry, class_id
            elif at_top:
                touching.append((shape(geometry), class_id))
            else:
                others.append((shape(geometry), class_id))
        pending_next = []
        for polygon, class_id in _merge(pending, touching) + others:
            if bottom < height and polygon.bounds[3] == bottom:
                pending_next.append((polygon, class_id))
            else:
                yield polygon, class_id
        pending = pending_next
    yield from pending


def _to_map(geometry, transform: Affine, simplify: float) -> dict | None:
    """Pixel coordinates to map coordinates, then Douglas-Peucker in map units if asked.

    Simplification keeps each polygon valid (holes stay inside), but each
    polygon is simplified on its own, so an edge two classes share may move
    by up to the tolerance differently on each side.
    """
    if isinstance(geometry, dict) and not simplify:
        m = np.array([[transform.a, transform.d], [transform.b, transform.e]])
        offset = np.array([transform.c, transform.f])
        rings = [(np.asarray(ring, dtype=float) @ m + offset).tolist() for ring in geometry["coordinates"]]
        return {"type": "Polygon", "coordinates": rings}
    from shapely.affinity import affine_transform
    from shapely.geometry import mapping, shape

    polygon = shape(geometry) if isinstance(geometry, dict) else geometry
    polygon = affine_transform(polygon, [transform.a, transform.b, transform.d, transform.e, transform.c,
                                         transform.f])
    if simplify:
        polygon = polygon.simplify(simplify, preserve_topology=True)
        if polygon.is_empty:
            return None
    return mapping(polygon)


def features(source, geo: GeoInfo | None, class_names: Sequence[str] = (), *, simplify: float = 0.0,
             nodata: int | None = None, ignore_index: int = IGNORE_INDEX) -> Iterator[Feature]:
    """The connected regions of ``source``: an ``(H, W)`` integer array, or a rasterio dataset (its band 1).

    ``simplify`` is a tolerance in map units (0: the exact pixel outlines).
    A dataset is read strip by strip, so memory follows the strip, not the map.
    """
    if simplify < 0:
        raise VectorError(f"simplify must be a distance in map units >= 0, not {simplify}")
    if isinstance(source, np.ndarray):
        if source.ndim != 2:
            raise VectorError(f"a class map is (H, W); got shape {source.shape}")
        if source.dtype not in (np.uint8, np.uint16, np.int16, np.int32):
            source = source.astype(np.int32)
        height, width = source.shape

        def read_rows(top: int, bottom: int) -> np.ndarray:
            return source[top:bottom]
    else:
        height, width = source.height, source.width

        def read_rows(top: int, bottom: int) -> np.ndarray:
            return source.read(1, window=Window(0, top, width, bottom - top))
    transform = Affine(*geo.transform) if geo is not None else Affine.identity()
    skip = {ignore_index} | ({int(nodata)} if nodata is not None else set())
    for geometry, class_id in _regions(read_rows, height, width, skip):
        mapped = _to_map(geometry, transform, simplify)
        if mapped is not None:
            yield Feature(mapped, class_id, class_name_for(class_names, class_id))


def _batches(items: Iterable[Feature]) -> Iterator[list[dict]]:
    batch: list[dict] = []
    for f in items:
        batch.append({"geometry": f.geometry, "properties": {"class_id": f.class_id, "class_name": f.class_name}})
        if len(batch) == BATCH_FEATURES:
            yield batch
            batch = []
    if batch:
        yield batch


def output_driver(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise VectorError(f"{Path(path).name}: unknown vector format {suffix!r}; use .gpkg or .geojson")
    return FORMATS[suffix]


def write_features(items: Iterable[Feature], path: str | Path, crs: str | None, *, layer: str | None = None) -> int:
    """Stream ``items`` (in the class map's ``crs``) to a .gpkg or .geojson file; returns the feature count."""
    import fiona
    from fiona.crs import CRS

    path = Path(path)
    driver = output_driver(path)
    options: dict = {}
    if driver == "GeoJSON":
        if not crs:
            raise VectorError("the class map has no CRS, and GeoJSON (RFC 7946) is WGS 84 longitude/latitude; "
                              "write a GeoPackage (.gpkg) instead, which keeps pixel coordinates")
        # GDAL's RFC 7946 mode reprojects to WGS 84 and orders rings by the
        # right-hand rule; the layer is declared in the class map's CRS.
        options = {"RFC7946": "YES", "WRITE_BBOX": "YES"}
    else:
        options = {"layer": layer or path.stem}
    if path.exists():
        path.unlink()  # GDAL would append a layer to an existing GeoPackage
    count = 0
    with fiona.open(path, "w", driver=driver, schema=SCHEMA, crs=CRS.from_user_input(crs) if crs else None,
                    **options) as sink:
        for batch in _batches(items):
            sink.writerecords(batch)
            count += len(batch)
    return count


def vectorize(class_map: np.ndarray, geo: GeoInfo | None, path: str | Path, class_names: Sequence[str] = (), *,
              simplify: float = 0.0, nodata: int | None = None) -> int:
    """Polygonise an in-memory class map into ``path`` (.gpkg or .geojson); returns the feature count."""
    output_driver(path)
    return write_features(features(class_map, geo, class_names, simplify=simplify, nodata=nodata), path,
                          geo.crs if geo is not None else None)


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
    """Polygonise band 1 of a class-map GeoTIFF, read line by line, into ``path``; returns the feature count.

    Class names default to the GeoTIFF's category names.
    """
    output_driver(path)
    names = tuple(class_names) if class_names else category_names(class_map_path)
    # The one guarded opener: a class map named .tif is read as a GeoTIFF and nothing it refers to.
    with reading(class_map_path, GEOTIFF) as ds:
        if ds.count < 1 or not np.issubdtype(np.dtype(ds.dtypes[0]), np.integer):
            raise VectorError(f"{Path(class_map_path).name}: a class map has integer class ids in band 1, "
                              f"not {ds.dtypes[0]}")
        geo = geo_info(ds) if (ds.crs or not ds.transform.is_identity) else None
        nodata = int(ds.nodata) if ds.nodata is not None else None
        items = features(ds, geo, names, simplify=simplify, nodata=nodata)
        return write_features(items, path, geo.crs if geo is not None else None)

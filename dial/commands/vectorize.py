"""``dial vectorize``: a class-map GeoTIFF as GeoPackage or GeoJSON polygons."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from dial.model import DEFAULT_REPOSITORY


def class_names_from(spec: str, model_repo: str) -> tuple[str, ...]:
    """Class names from a manifest.json (or its folder), a comma-separated list, or NAME[:VERSION] in the repository."""
    from dial.model.manifest import Manifest

    path = Path(spec)
    if path.is_file():
        return Manifest.load(path.parent, source=str(path)).class_names
    if (path / "manifest.json").is_file():
        return Manifest.load(path).class_names
    if "," in spec:
        return tuple(name.strip() for name in spec.split(","))
    from dial.model.repository import ModelRepository  # imports torch: only when a model is named

    return ModelRepository(model_repo).manifest(spec).class_names


def register(sub) -> None:
    p = sub.add_parser("vectorize", help="write a class-map GeoTIFF as polygons (GeoPackage, or RFC 7946 GeoJSON)",
                       description="One polygon per connected region, with class_id and class_name. A .gpkg "
                                   "keeps the class map's CRS; a .geojson is reprojected to WGS 84 (RFC 7946).")
    p.add_argument("class_map", help="class-map GeoTIFF (band 1 holds class ids; 255 is ignored)")
    p.add_argument("output", help="OUT.gpkg or OUT.geojson")
    p.add_argument("--simplify", type=float, default=0.0, metavar="M",
                   help="simplification tolerance in the class map's map units (0: exact pixel outlines)")
    p.add_argument("--classes", help="class names: a manifest.json, a model NAME[:VERSION] in --model-repo, or "
                                     "comma-separated names (default: the GeoTIFF's category names, else class_N)")
    p.add_argument("--model-repo", default=DEFAULT_REPOSITORY)
    p.set_defaults(handler=run)


def run(args) -> int:
    from rasterio.errors import RasterioIOError

    from dial.imagery.vector import vectorize_file
    from dial.model.repository import ModelNotFound

    try:
        names = class_names_from(args.classes, args.model_repo) if args.classes else None
        count = vectorize_file(args.class_map, args.output, names, simplify=args.simplify)
    except (ValueError, ModelNotFound, RasterioIOError) as error:  # VectorError and ManifestError included
        # The user's input to fix: say what, without a traceback.
        print(f"dial vectorize: error: {error}", file=sys.stderr)
        return 2
    print(json.dumps({"output": args.output, "features": count}))
    return 0

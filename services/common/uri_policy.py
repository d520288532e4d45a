"""Which raster URIs a server may read or write.

A URI names a file under one of the configured roots, given as a plain path
or a ``file://`` URI. Every other scheme (http, s3, gs, GDAL's /vsi
prefixes) is refused, and paths are resolved (``..`` and symlinks) before the
root check, so no request can make the server read arbitrary files or URLs.
"""
from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from dial_services.common.errors import invalid_argument, not_found, permission_denied


class UriPolicy:
    def __init__(self, roots: tuple[Path, ...] | list[Path], schemes: tuple[str, ...] = ("file",)):
        self.roots = tuple(Path(r).resolve() for r in roots)
        self.schemes = tuple(s.lower() for s in schemes)

    def _path(self, uri: str, field_path: str) -> Path:
        if not uri:
            raise invalid_argument([(field_path, "a raster URI is required")])
        if "\x00" in uri:
            raise invalid_argument([(field_path, "URI contains a NUL byte")])
        if uri.startswith("/vsi"):
            raise permission_denied(f"{field_path}: GDAL virtual file systems are not allowed")
        if "://" in uri or uri.lower().startswith("file:"):
            parsed = urlparse(uri)
            scheme = parsed.scheme.lower()
            if scheme not in self.schemes:
                raise permission_denied(f"{field_path}: scheme {scheme!r} is not allowed (allowed: {list(self.schemes)})")
            if parsed.netloc not in ("", "localhost"):
                raise permission_denied(f"{field_path}: file URIs must not name a host")
            raw = unquote(parsed.path)
        else:
            raw = uri
        if not self.roots:
            raise permission_denied(f"{field_path}: this server reads no rasters (no allowed roots configured)")
        return Path(raw).expanduser().resolve()

    def _check_root(self, path: Path, field_path: str) -> None:
        if not any(path == root or path.is_relative_to(root) for root in self.roots):
            raise permission_denied(f"{field_path}: path is outside the allowed raster roots")

    def readable(self, uri: str, field_path: str = "uri") -> Path:
        path = self._path(uri, field_path)
        self._check_root(path, field_path)
        if not path.is_file():
            raise not_found(f"{field_path}: no raster at {uri}")
        return path

    def writable(self, uri: str, field_path: str = "output_uri") -> Path:
        path = self._path(uri, field_path)
        self._check_root(path, field_path)
        if not path.parent.is_dir():
            raise invalid_argument([(field_path, "the output folder does not exist")])
        if path.suffix.lower() not in (".tif", ".tiff"):
            raise invalid_argument([(field_path, "outputs are GeoTIFFs: use a .tif or .tiff name")])
        return path

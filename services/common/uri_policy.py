"""Which raster URIs a server may read or write, and the one place rasters are opened for a request.

A URI names a file under one of the configured roots, given as a plain path
or a ``file://`` URI. Every other scheme (http, s3, gs, GDAL's /vsi
prefixes) is refused, except GDAL network names under the remote prefixes an
operator allows (``raster_remote_prefixes``, none by default; read only, see
``dial.imagery.opener``), and paths are resolved (``..`` and symlinks) before the
root check, so no request can make the server read arbitrary files or URLs.
A readable raster must also be a regular file that starts like a GeoTIFF, and
it is opened through the core's guarded opener, so a file inside a root
cannot make GDAL read another file or a URL (see ``dial.imagery.opener``).
An output must not be the input raster, nor anything but a regular file.
"""
from __future__ import annotations

import os
import re
import stat
from dataclasses import replace
from pathlib import Path
from typing import Iterable
from urllib.parse import unquote, urlparse

from dial.errors import AlreadyExists, DialError, NotFound, PermissionDenied, Unavailable
from dial.imagery.opener import GEOTIFF, ImageFormatError, OpenPolicy
from dial.imagery.raster import RasterReader
from dial_services.common.errors import ApiError, invalid_argument

# What GDAL (curl) says when a remote host is down, slow or failing, rather than the file being wrong.
_UNREACHABLE = re.compile(r"HTTP response code: 5\d\d|timed out|timeout|Could not resolve|Failed to connect|"
                          r"Couldn't connect|Connection refused", re.IGNORECASE)

# Linux's limits (NAME_MAX, PATH_MAX): longer names fail with ENAMETOOLONG, a client's error.
MAX_NAME_BYTES = 255
MAX_PATH_BYTES = 4096


class UriPolicy:
    def __init__(self, roots: tuple[Path, ...] | list[Path], schemes: tuple[str, ...] = ("file",),
                 open_policy: OpenPolicy = GEOTIFF, remote_prefixes: tuple[str, ...] = ()):
        self.roots = tuple(Path(r).resolve() for r in roots)
        self.schemes = tuple(s.lower() for s in schemes)
        # Remote rasters are read only, and only under these prefixes: outputs stay under the roots.
        self.open_policy = replace(open_policy, remote_prefixes=tuple(remote_prefixes))

    @classmethod
    def of(cls, config) -> "UriPolicy":
        """The policy a server's settings (``ServerConfig``) declare."""
        return cls(config.raster_roots, config.raster_schemes, remote_prefixes=config.raster_remote_prefixes)

    def _path(self, uri: str, field_path: str) -> Path:
        if not uri:
            raise invalid_argument([(field_path, "a raster URI is required")])
        if "\x00" in uri:
            raise invalid_argument([(field_path, "URI contains a NUL byte")])
        if len(uri.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
            raise invalid_argument([(field_path, f"URI is longer than {MAX_PATH_BYTES} bytes")])
        if uri.startswith("/vsi"):
            raise PermissionDenied(f"{field_path}: GDAL virtual file systems are not allowed")
        if "://" in uri or uri.lower().startswith("file:"):
            parsed = urlparse(uri)
            scheme = parsed.scheme.lower()
            if scheme not in self.schemes:
                raise PermissionDenied(f"{field_path}: scheme {scheme!r} is not allowed (allowed: {list(self.schemes)})")
            if parsed.netloc not in ("", "localhost"):
                raise PermissionDenied(f"{field_path}: file URIs must not name a host")
            raw = unquote(parsed.path)
        else:
            raw = uri
        if not self.roots:
            raise PermissionDenied(f"{field_path}: this server reads no rasters (no allowed roots configured)")
        if any(len(part.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES for part in raw.split("/")):
            raise invalid_argument([(field_path, f"a file or folder name in the path is longer than "
                                                 f"{MAX_NAME_BYTES} bytes")])
        try:
            return Path(raw).expanduser().resolve()
        except (OSError, RuntimeError) as error:  # a symlink loop, or a name the file system refuses
            raise invalid_argument([(field_path, f"the path cannot be resolved ({_reason(error)})")]) from None

    def _check_root(self, path: Path, field_path: str) -> None:
        if not any(path == root or path.is_relative_to(root) for root in self.roots):
            raise PermissionDenied(f"{field_path}: path is outside the allowed raster roots")

    def readable(self, uri: str, field_path: str = "uri") -> Path | str:
        """The checked path of a raster to read: inside a root, a regular file, and of an allowed format; or
        the GDAL network name of a remote raster under an allowed remote prefix."""
        if uri.startswith("/vsi") and "\x00" not in uri and len(uri) <= MAX_PATH_BYTES:
            try:
                return self.open_policy.remote_source(uri)
            except ImageFormatError as error:
                raise PermissionDenied(f"{field_path}: {error.reason}") from None
        path = self._path(uri, field_path)
        self._check_root(path, field_path)
        found = _stat(path, field_path)
        if found is None:
            raise NotFound(f"{field_path}: no raster at that path")
        if not stat.S_ISREG(found.st_mode):
            raise invalid_argument([(field_path, f"not a regular file ({_kind(found.st_mode)}); name a GeoTIFF "
                                                 "file")])
        try:
            self.open_policy.driver_for(path)
        except ImageFormatError as error:
            raise invalid_argument([(field_path, error.reason)]) from None
        except FileNotFoundError:
            raise NotFound(f"{field_path}: no raster at that path") from None
        return path

    def open_raster(self, uri: str, field_path: str = "uri", any_band_count: bool = False) -> RasterReader:
        """A reader of the raster ``uri`` names, or the status that says why there is none; ``any_band_count``
        accepts rasters of other than 1, 3 or 4 bands (for a band mapping to choose from)."""
        path = self.readable(uri, field_path)
        try:
            return _FieldRaster(path, self.open_policy, field_path, any_band_count)
        except ImageFormatError as error:
            if isinstance(path, str) and ("404" in error.reason or "does not exist" in error.reason):
                raise NotFound(f"{field_path}: no remote raster there ({error.reason})") from None
            if isinstance(path, str) and _UNREACHABLE.search(error.reason):
                # The host may answer later; UNAVAILABLE tells a client to retry, where INVALID_ARGUMENT would not.
                raise Unavailable(f"{field_path}: the remote host did not answer ({error.reason}); retry later") \
                    from None
            raise invalid_argument([(field_path, error.reason)]) from None
        except FileNotFoundError:  # removed since the check
            raise NotFound(f"{field_path}: no raster at that path") from None

    def writable(self, uri: str, field_path: str = "output_uri", *, inputs: Iterable[str] = (),
                 suffixes: tuple[str, ...] = (".tif", ".tiff"), kind: str = "GeoTIFFs",
                 overwrite: bool = True, overwrite_field: str = "overwrite") -> Path:
        """The checked path of an output (a GeoTIFF unless ``suffixes`` and ``kind`` say otherwise);
        ``inputs`` are the request's raster URIs, never overwritten. ``overwrite=False`` refuses an
        existing file (ALREADY_EXISTS), naming the flag ``overwrite_field`` that allows it."""
        path = self._path(uri, field_path)
        self._check_root(path, field_path)
        if path.suffix.lower() not in suffixes:
            raise invalid_argument([(field_path, f"outputs are {kind}: use a {' or '.join(suffixes)} name")])
        parent = _stat(path.parent, field_path)
        if parent is None or not stat.S_ISDIR(parent.st_mode):
            raise invalid_argument([(field_path, "the output folder does not exist")])
        found = _stat(path, field_path)
        if found is not None:
            if not stat.S_ISREG(found.st_mode):
                raise invalid_argument([(field_path, f"{_kind(found.st_mode)} is there; an output replaces only "
                                                     "a regular file: choose another name")])
            for source in inputs:
                if source and self._same_file(source, path):
                    raise invalid_argument([(field_path, "is the input raster; choose another output name, "
                                                         "the input is never overwritten")])
            # A writer that rewrites the file in place would change every other name of it too,
            # wherever those names are, roots or not.
            if found.st_nlink > 1:
                raise invalid_argument([(field_path, "that file has other hard links; an output replaces only "
                                                     "a file of its own: choose another name")])
            if not overwrite:
                raise AlreadyExists(f"{field_path} {uri} exists; set {overwrite_field} to replace it, or choose "
                                    "another name")
        return path

    def _same_file(self, uri: str, output: Path) -> bool:
        try:
            source = self._path(uri, "input")
        except (ApiError, DialError):
            return False  # reported where the input itself is checked
        try:
            # samefile: a hard link to the input is the input too.
            return source == output or os.path.samefile(source, output)
        except OSError:
            return False


class _FieldRaster(RasterReader):
    """A raster one request field named: pixels that fail to read are that field's INVALID_ARGUMENT too."""

    def __init__(self, path: Path, policy: OpenPolicy, field_path: str, any_band_count: bool = False):
        super().__init__(path, policy, any_band_count)
        self.field_path = field_path

    def read(self, row_off: int, col_off: int, height: int, width: int):
        try:
            return super().read(row_off, col_off, height, width)
        except ImageFormatError as error:
            raise invalid_argument([(self.field_path, error.reason)]) from None


def _stat(path: Path, field_path: str) -> os.stat_result | None:
    """``os.stat`` of ``path`` (symlinks followed), None when nothing is there."""
    try:
        return os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except PermissionError:
        raise PermissionDenied(f"{field_path}: the server may not read that path") from None
    except OSError as error:
        raise invalid_argument([(field_path, f"the path cannot be used ({_reason(error)})")]) from None


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "something other than a file"


def _reason(error: BaseException) -> str:
    """Why, in words, without the path (an OSError's str names it)."""
    if isinstance(error, OSError) and error.errno:
        return os.strerror(error.errno)
    if isinstance(error, RuntimeError):
        return "a symlink loop"
    return "unusable path"


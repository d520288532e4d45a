"""The one way DIAL opens an image file with GDAL: only the formats asked for, and nothing else pulled in.

GDAL opens whatever a file says it is. A file named ``.tif`` may be a VRT
whose sources are files anywhere on the machine or ``/vsicurl/`` URLs, and
even a genuine GeoTIFF is read together with files next to it: a planted
``x.tif.aux.xml`` can name an overview file anywhere (``OVERVIEW_FILE``), and
``x.tif.ovr``, ``x.tif.msk`` or a world file may be symlinks out of the folder.
So every open here:

- hands GDAL a local, absolute path to a regular file, never a ``/vsi`` path
  or a URL (a FIFO would block the reader for good);
- checks the file's first bytes and opens it with the one driver that
  matches, from the policy's allow-list (GeoTIFF for rasters; plus PNG and
  JPEG for datasets), so VRT, GTI, WMS, MBTiles and the rest never run;
- runs in a GDAL environment (``GDAL_ENV``) in which GDAL sees no sibling
  files, reads no ``.aux.xml``, takes georeferencing only from the file
  itself and refuses network reads, and then checks that GDAL holds only the
  one file.

Reads must run in the same environment (``gdal_env()``), because GDAL reads
some of those settings lazily and rasterio keeps them per thread.

The one exception is opt-in: a policy's ``remote_prefixes`` (none by
default) name GDAL network paths an operator trusts, such as
``/vsicurl/https://data.example.org/cogs/`` or ``/vsis3/bucket/imagery/``. A
remote name must start with one of them and hold no ``..``, no second
``/vsi`` and no control character; it is opened as a GeoTIFF only, in an
environment that lets GDAL fetch that one URL and nothing else
(``CPL_VSIL_CURL_ALLOWED_FILENAME``), and reads of the open file go on
through its handle, so the default environment's refusal still holds for
every other name.
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path

import rasterio
from rasterio.errors import NotGeoreferencedWarning, RasterioError


class ImageFormatError(ValueError):
    """The file is readable but not an image or mask DIAL can use.

    ``reason`` says why without naming the file, for messages to remote
    callers (the server's path is its own business); ``str()`` adds the path.
    """

    def __init__(self, reason: str, path: str | Path | None = None):
        super().__init__(reason)
        self.reason = reason
        self.path = path

    def __str__(self) -> str:
        return self.reason if self.path is None else f"{self.path}: {self.reason}"


# The first bytes of each format DIAL reads, and GDAL's driver for it.
SIGNATURES: dict[str, tuple[bytes, ...]] = {
    "GTiff": (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"),  # classic TIFF and BigTIFF, either byte order
    "PNG": (b"\x89PNG\r\n\x1a\n",),
    "JPEG": (b"\xff\xd8\xff",),
}
FORMAT_NAMES = {"GTiff": "GeoTIFF", "PNG": "PNG", "JPEG": "JPEG"}
SIGNATURE_BYTES = max(len(s) for sigs in SIGNATURES.values() for s in sigs)

GDAL_ENV = {
    # GDAL assumes the folder holds no other file: no .aux.xml, .ovr, .msk, world file
    # or vendor metadata file is looked for, let alone opened.
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    # No persistent auxiliary metadata: a .aux.xml could otherwise name an overview file anywhere.
    "GDAL_PAM_ENABLED": "NO",
    "GDAL_GEOREF_SOURCES": "INTERNAL",
    # Defence in depth should a network path ever reach GDAL: /vsicurl/ then opens no URL.
    "CPL_VSIL_CURL_ALLOWED_FILENAME": "/nonexistent/no-network-reads",
    "GDAL_HTTP_MAX_RETRY": "0",
    # Likewise should a VRT ever be opened: no Python pixel functions, no raw bands over arbitrary files.
    "GDAL_VRT_ENABLE_PYTHON": "NO",
    "GDAL_VRT_ENABLE_RAWRASTERBAND": "NO",
}


class ImageRefused(ImageFormatError):
    """The file is not one of the formats this open allows, or not a regular file."""


@dataclass(frozen=True)
class OpenPolicy:
    """Which image formats an open may use, and which sources it may read.

    Sources are local regular files, plus GeoTIFFs under the opt-in
    ``remote_prefixes`` (GDAL network paths; see :func:`remote_prefix_problem`).
    They belong here and nowhere else: every open in DIAL goes through
    :func:`open_image` with a policy.
    """

    drivers: tuple[str, ...]
    remote_prefixes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = set(self.drivers) - set(SIGNATURES)
        if unknown or not self.drivers:
            raise ValueError(f"drivers must be some of {sorted(SIGNATURES)}, got {list(self.drivers)}")
        for prefix in self.remote_prefixes:
            problem = remote_prefix_problem(prefix)
            if problem:
                raise ValueError(f"remote prefix {prefix!r}: {problem}")

    def is_remote(self, path: str | Path) -> bool:
        return os.fspath(path).startswith("/vsi")

    def remote_source(self, name: str) -> str:
        """``name`` itself when it is a remote raster this policy allows; ImageRefused says why not."""
        if not self.remote_prefixes:
            raise ImageRefused("only local files are read, not GDAL virtual file systems or URLs (no remote "
                               "prefixes are allowed here)")
        if "GTiff" not in self.drivers:
            raise ImageRefused(f"remote files are read as GeoTIFF only, and only {self.formats} is allowed here")
        if _UNSAFE.search(name) or "/vsi" in name[4:] or ".." in name.split("/"):
            raise ImageRefused("a remote name may hold no '..', no second /vsi prefix, no '%2e', backslash, "
                               "whitespace or control character")
        if not any(name.startswith(p) and len(name) > len(p) for p in self.remote_prefixes):
            raise ImageRefused(f"not under an allowed remote prefix ({', '.join(self.remote_prefixes)})")
        if name.endswith("/"):
            raise ImageRefused("names a folder, not a file")
        return name

    @property
    def formats(self) -> str:
        names = [FORMAT_NAMES[d] for d in self.drivers]
        return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]

    def source(self, path: str | Path) -> str:
        """The name to hand GDAL: an absolute local path, never a GDAL virtual path or URL."""
        name = os.fspath(path)
        if self.is_remote(name):
            return self.remote_source(name)
        if "://" in name:
            raise ImageRefused("only local files are read, not GDAL virtual file systems or URLs", path=path)
        return os.path.abspath(name)

    def driver_for(self, path: str | Path) -> str:
        """The allowed driver that matches the file's first bytes; refuses anything else."""
        name = self.source(path)
        if self.is_remote(name):
            # Its first bytes are not read here (that would be a second fetch): GDAL is told to try the
            # GeoTIFF driver alone, which refuses anything else.
            return "GTiff"
        try:
            # O_NONBLOCK: opening a FIFO must not wait for a writer; fstat then refuses it.
            fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK)
        except OSError as error:
            if error.errno == errno.ENOENT:
                raise
            raise ImageFormatError(f"the file cannot be opened ({os.strerror(error.errno)})", path=path) from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise ImageRefused("not a regular file", path=path)
            head = os.read(fd, SIGNATURE_BYTES)
        finally:
            os.close(fd)
        for driver in self.drivers:
            if head.startswith(SIGNATURES[driver]):
                return driver
        raise ImageRefused(
            f"not a {self.formats} file; DIAL opens only {self.formats} here, never formats that refer to "
            "other files or URLs (such as VRT): convert it first, e.g. with gdal_translate -of GTiff", path=path)


# GDAL's network file systems a remote prefix may use, and what must follow them.
REMOTE_FILESYSTEMS = ("/vsicurl/", "/vsis3/", "/vsigs/", "/vsiaz/", "/vsiadls/")
_UNSAFE = re.compile(r"[\x00-\x20\x7f\\]|%2e", re.IGNORECASE)


def remote_prefix_problem(prefix: str) -> str | None:
    """Why ``prefix`` cannot be an allowed remote prefix; None when it can.

    A prefix ends with ``/``, so ``/vsicurl/https://data.example.org/`` does
    not also allow ``https://data.example.org.evil.net/``; a ``/vsicurl/``
    one names an http(s) host, never ``file://`` or another curl scheme.
    """
    if not prefix.startswith(REMOTE_FILESYSTEMS):
        return f"must start with one of GDAL's network file systems {', '.join(REMOTE_FILESYSTEMS)}"
    if not prefix.endswith("/"):
        return "must end with '/', so that it matches whole folder or host names only"
    if _UNSAFE.search(prefix) or ".." in prefix.split("/") or "/vsi" in prefix[4:]:
        return "must hold no '..', second /vsi prefix, '%2e', backslash, whitespace or control character"
    rest = prefix.removeprefix("/vsicurl/")
    if rest != prefix:
        scheme, _, after = rest.partition("://")
        if scheme not in ("http", "https") or not after.split("/")[0]:
            return "a /vsicurl/ prefix must go on with http:// or https:// and a host, e.g. " \
                   "/vsicurl/https://data.example.org/"
    elif len(prefix.split("/")) < 4 or not prefix.split("/")[2]:
        return "must name a bucket or container after the file system, e.g. /vsis3/bucket/"
    return None


GEOTIFF = OpenPolicy(("GTiff",))
IMAGES = OpenPolicy(("GTiff", "PNG", "JPEG"))


def gdal_env(remote: str | None = None):
    """The GDAL environment every open and read of an image runs in; ``remote`` is the one network name the
    open of a remote raster may fetch."""
    if remote is None:
        return rasterio.Env(**GDAL_ENV)
    # A slow or silent host fails the call within a minute instead of holding its thread.
    return rasterio.Env(**{**GDAL_ENV, "CPL_VSIL_CURL_ALLOWED_FILENAME": remote, "GDAL_HTTP_TIMEOUT": "60",
                           "GDAL_HTTP_CONNECTTIMEOUT": "10"})


def open_image(path: str | Path, policy: OpenPolicy = GEOTIFF):
    """Open an image for reading under ``policy``; the caller closes it and reads inside :func:`gdal_env`."""
    driver = policy.driver_for(path)
    name = policy.source(path)
    remote = policy.is_remote(name)
    with gdal_env(name if remote else None), warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        try:
            dataset = rasterio.open(name, driver=driver)
        except RasterioError as error:
            if remote:  # the URL is the caller's own; GDAL's reason (HTTP 404, no credentials) helps them
                raise ImageFormatError(f"the remote file cannot be opened as {FORMAT_NAMES[driver]} ({error})",
                                       path=path) from None
            # GDAL's message names the server's path; the reason is all a user needs.
            raise ImageFormatError(f"the file cannot be read as {FORMAT_NAMES[driver]} (damaged or truncated?)",
                                   path=path) from None
        others = [f for f in dataset.files if (f if remote else os.path.abspath(f)) != name]
        if others:
            dataset.close()
            raise ImageRefused(f"the {FORMAT_NAMES[driver]} refers to {len(others)} other file(s); DIAL reads "
                               "self-contained files only", path=path)
    return dataset


@contextlib.contextmanager
def reading(path: str | Path, policy: OpenPolicy = GEOTIFF):
    """``with reading(path) as ds:`` opens under ``policy`` and keeps the GDAL environment for the reads."""
    dataset = open_image(path, policy)
    try:
        with gdal_env():
            try:
                yield dataset
            except RasterioError:
                raise ImageFormatError("the file's pixels cannot be read (damaged or truncated?)", path=path) from None
    finally:
        dataset.close()


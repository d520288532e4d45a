"""A loopback HTTP server with byte ranges (what GDAL's /vsicurl/ reads COGs with), serving one folder."""
from __future__ import annotations

import contextlib
import functools
import http.server
import io
import os
import re
import threading
from pathlib import Path
from typing import Iterator

RANGE = re.compile(r"bytes=(\d+)-(\d*)$")


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Python's file handler, answering ``Range: bytes=a-b`` with 206 and the bytes asked for."""

    def log_message(self, format, *args) -> None:  # noqa: A002 - the base class's name
        self.server.requests.append(self.path)

    def send_head(self):
        match = RANGE.match(self.headers.get("Range", ""))
        path = Path(self.translate_path(self.path))
        if match is None or not path.is_file():
            return super().send_head()
        size = path.stat().st_size
        start, end = int(match[1]), min(int(match[2] or size - 1), size - 1)
        if start >= size:
            self.send_error(416)
            return None
        self.send_response(206)
        self.send_header("Content-Type", "image/tiff")
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        with open(path, "rb") as file:
            file.seek(start)
            data = file.read(end - start + 1)
        return io.BytesIO(data)


@contextlib.contextmanager
def serving(folder: str | os.PathLike) -> Iterator[http.server.ThreadingHTTPServer]:
    """Serve ``folder`` on a free loopback port; ``server.requests`` lists the paths asked for."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             functools.partial(RangeHandler, directory=os.fspath(folder)))
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()

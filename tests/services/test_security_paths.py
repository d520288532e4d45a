"""Paths a caller names that the file system refuses or that would destroy data get a client error.

Over-long names and paths (ENAMETOOLONG), symlink loops, an ``output_uri``
that is a folder or a FIFO, and an output that is the input raster itself
(by the same path, another spelling, a symlink or a hard link) each get the
right status through the real in-process services, promptly, with the input
unchanged; the servers stay SERVING and a bystander's work is untouched.
"""
from __future__ import annotations

import os

import grpc
import numpy as np
import pytest

from dial_client.errors import DialError
from tests.services.test_security_gdal import (  # noqa: F401 - the fixtures, shared with the GDAL cases
    READERS, _assert_clean_refusal, _assert_serving_and_bystander_unharmed, _readers, planted, servers,
)

LONG_NAME = "n" * 300  # NAME_MAX is 255 bytes
LONG_PATH = "/".join(["d" * 200] * 25)  # PATH_MAX is 4096 bytes


def _refused(call, code=grpc.StatusCode.INVALID_ARGUMENT) -> DialError:
    with pytest.raises(DialError) as refused:
        call()
    _assert_clean_refusal(refused.value, code)
    assert len(refused.value.message) < 1200, "the message must fit a status, whatever the caller sent"
    return refused.value


@pytest.fixture(scope="module")
def paths(planted):
    root, _, files, _ = planted  # with loop.tif, out-folder.tif and out-fifo.tif
    (root / "alias.tif").symlink_to(files["good"])
    os.link(files["good"], root / "hard-link.tif")
    return root, files


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("uri, says", [
    ("{root}/" + LONG_NAME + ".tif", "longer than 255 bytes"),
    ("{root}/" + LONG_PATH + ".tif", "longer than 4096 bytes"),
    ("file://{root}/" + LONG_NAME + ".tif", "longer than 255 bytes"),
    ("{root}/" + "x" * 20000, "longer than 4096 bytes"),
    ("{root}/loop.tif", "cannot be resolved"),
])
def test_over_long_and_unresolvable_input_paths_are_invalid_argument(servers, paths, reader, uri, says):
    root, _ = paths
    error = _refused(lambda: _readers(root, root)[reader](servers, uri.format(root=root)))
    assert says in error.message
    assert LONG_NAME not in error.message


@pytest.mark.parametrize("reader", READERS)
def test_an_input_below_a_file_is_not_found(servers, paths, reader):
    root, files = paths
    _refused(lambda: _readers(root, root)[reader](servers, f"{files['good']}/x.tif"), grpc.StatusCode.NOT_FOUND)


def _writers(servers, root):
    """Every request that writes an output GeoTIFF: name -> call(output_uri, input_uri)."""
    seg, acq = servers["segmenter"], servers["acquisition"]
    return {
        "PredictRaster": lambda out, src, **kw: seg.predict_raster(src, model="tiny", output_uri=out, **kw),
        "PredictRaster of tiles": lambda out, src, **kw: seg.predict_raster(
            np.zeros((32, 32, 3), np.uint8), model="tiny", output_uri=out, **kw),
        "GetUncertaintyMap raster": lambda out, src, **kw: acq.uncertainty_map(src, model="tiny", output_uri=out,
                                                                               **kw),
        "GetUncertaintyMap raster_window": lambda out, src, **kw: acq.uncertainty_map(
            src, model="tiny", window=(0, 0, 32, 32), output_uri=out, **kw),
    }


WRITERS = ["PredictRaster", "PredictRaster of tiles", "GetUncertaintyMap raster", "GetUncertaintyMap raster_window"]


@pytest.mark.parametrize("writer", WRITERS)
@pytest.mark.parametrize("output, says", [
    ("{root}/out-folder.tif", "a folder is there"),
    ("{root}/out-fifo.tif", "a FIFO is there"),
    ("{root}/" + LONG_NAME + ".tif", "longer than 255 bytes"),
    ("{root}/" + LONG_PATH + ".tif", "longer than 4096 bytes"),
    ("{root}/no-such-folder/out.tif", "the output folder does not exist"),
    ("{root}/loop.tif", "cannot be resolved"),
])
def test_outputs_that_are_not_a_new_or_regular_file_are_invalid_argument(servers, paths, writer, output, says):
    """A FIFO would block the writer for good (the call would end in DEADLINE_EXCEEDED, holding a worker)."""
    root, files = paths
    error = _refused(lambda: _writers(servers, root)[writer](output.format(root=root), str(files["good"])))
    assert says in error.message
    assert (root / "out-folder.tif").is_dir() and list((root / "out-folder.tif").iterdir()) == []


@pytest.mark.parametrize("writer", [w for w in WRITERS if w != "PredictRaster of tiles"])
@pytest.mark.parametrize("spelling", ["{good}", "{root}/./good.tif", "{root}/out-folder.tif/../good.tif",
                                      "file://{good}", "{root}/alias.tif", "{root}/hard-link.tif"])
def test_the_input_raster_is_never_overwritten(servers, paths, writer, spelling):
    root, files = paths
    before = files["good"].read_bytes()
    output = spelling.format(root=root, good=files["good"])
    error = _refused(lambda: _writers(servers, root)[writer](output, str(files["good"])))
    assert "is the input raster" in error.message
    assert files["good"].read_bytes() == before


@pytest.mark.parametrize("writer", [w for w in WRITERS if w != "PredictRaster of tiles"])
def test_an_output_names_the_input_by_its_own_spelling_too(servers, paths, writer):
    """The input given by one spelling and the output by another: still the same file."""
    root, files = paths
    before = files["good"].read_bytes()
    _refused(lambda: _writers(servers, root)[writer](str(files["good"]), f"{root}/alias.tif"))
    assert files["good"].read_bytes() == before


@pytest.mark.parametrize("writer", WRITERS)
def test_an_output_hard_linked_to_a_file_outside_the_roots_is_refused(servers, paths, planted, writer):
    """GetUncertaintyMap rewrites its output in place: through a hard link that would change the other file."""
    root, files = paths
    outside = planted[1] / f"precious-{WRITERS.index(writer)}.tif"
    outside.write_bytes(files["good"].read_bytes())
    link = root / f"linked-out-{WRITERS.index(writer)}.tif"
    os.link(outside, link)
    before = outside.read_bytes()
    error = _refused(lambda: _writers(servers, root)[writer](str(link), str(files["good"])))
    assert "other hard links" in error.message and str(outside) not in error.message
    assert outside.read_bytes() == before


@pytest.mark.parametrize("writer", WRITERS)
def test_a_fresh_output_and_a_replaced_output_are_still_written(servers, paths, writer):
    root, files = paths
    output = root / f"fresh-{WRITERS.index(writer)}.tif"
    for again in (False, True):  # the second call replaces the first call's regular file, as it asks to
        _writers(servers, root)[writer](str(output), str(files["good"]), overwrite=again)
        assert output.is_file() and output.stat().st_size > 0
    _assert_serving_and_bystander_unharmed(servers)

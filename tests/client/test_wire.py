"""dial_client.wire is the one home of the wire format: the generated modules and the array codecs.

Client and servers encode and decode with the same functions, so a server's
reading of a message is the client's, and the server adds only its limits
and field paths.
"""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest

from dial.model.manifest import INPUT_DTYPES
from dial_client import wire
from dial_client.wire import DATA_TYPES, DTYPE_NAMES, DTYPES, WireError, common_pb2
from dial_services.common.errors import ApiError, Violations
from dial_services.common.validation import image_from_proto

REPO_ROOT = Path(__file__).resolve().parents[2]
PRIVATE_IMPORT = re.compile(r"^\s*(from|import)\s+dial_client\._proto\b|^\s*from\s+dial_client\s+import\s+.*\b_proto\b",
                            re.MULTILINE)


def _generate_script():
    spec = importlib.util.spec_from_file_location("generate_protos", REPO_ROOT / "protos" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_nothing_outside_the_client_imports_the_generated_package():
    offenders = [
        path.relative_to(REPO_ROOT).as_posix()
        for folder in ("dial", "services", "tests", "benchmarks", "clients/qgis")
        for path in (REPO_ROOT / folder).rglob("*.py")
        if "vendor" not in path.parts and PRIVATE_IMPORT.search(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []


def test_wire_re_exports_every_generated_module(tmp_path):
    generate = _generate_script()
    assert generate.unexported_modules(generate.OUTPUT_ROOT) == []
    assert wire.segmenter_pb2_grpc.SegmenterStub and wire.acquisition_pb2.RankPatchesRequest
    # A proto added without its re-export is caught.
    partial = tmp_path / "__init__.py"
    partial.write_text(generate.WIRE_INIT.read_text().replace("    acquisition_pb2_grpc,\n", "", 1))
    assert generate.unexported_modules(generate.OUTPUT_ROOT, partial) == ["acquisition_pb2_grpc"]


def test_the_wire_dtypes_are_the_ones_models_take():
    assert set(DATA_TYPES) == set(INPUT_DTYPES)
    for data_type, name in DTYPE_NAMES.items():
        assert DTYPES[data_type].name == name and DATA_TYPES[name] == data_type
        assert DTYPES[data_type] == DTYPES[data_type].newbyteorder("<")  # little-endian on every host


def test_server_and_client_decode_an_image_to_the_same_pixels():
    pixels = np.random.default_rng(0).integers(0, 65535, (5, 7, 3)).astype(np.uint16)
    message = wire.image_to_proto(pixels)
    served = image_from_proto(message, "image", max_px=10_000)
    np.testing.assert_array_equal(served, pixels)
    np.testing.assert_array_equal(wire.image_from_proto(message), pixels)
    # The server reads the message's bytes in place; the client gets its own array.
    assert not served.flags.writeable and wire.image_from_proto(message).flags.writeable


def test_a_wrong_byte_count_is_the_same_error_at_both_ends():
    message = common_pb2.Image(data=bytes(10), dtype=common_pb2.DATA_TYPE_UINT8, height=4, width=4, bands=3)
    with pytest.raises(WireError) as raised:
        wire.image_from_proto(message)
    assert (raised.value.field, str(raised.value)) == ("data", "expected 48 bytes for 4x4x3 uint8, got 10")
    v = Violations()
    assert image_from_proto(message, "tiles[2].image", max_px=10_000, v=v) is None
    assert v.items == [("tiles[2].image.data", "expected 48 bytes for 4x4x3 uint8, got 10")]


def test_the_server_reports_a_bad_dtype_together_with_a_bad_shape():
    message = common_pb2.Image(data=b"", dtype=7, height=0, width=4, bands=2)
    with pytest.raises(ApiError) as raised:
        image_from_proto(message, "image", max_px=10_000)
    assert raised.value.violations == [
        ("image.dtype", "unknown dtype 7; use DATA_TYPE_UINT8 or DATA_TYPE_UINT16"),
        ("image.height", "must be > 0"),
        ("image.bands", "must be 1, 3 or 4, got 2"),
    ]


def test_an_image_over_the_servers_limit_is_refused_before_its_bytes_are_counted():
    message = common_pb2.Image(data=b"", dtype=common_pb2.DATA_TYPE_UINT8, height=100, width=100, bands=1)
    v = Violations()
    assert image_from_proto(message, "image", max_px=9_999, v=v) is None
    assert [field for field, _ in v.items] == ["image"]


def test_probabilities_quantised_block_by_block_travel_as_the_whole_array_does():
    probabilities = np.random.default_rng(1).random((3, 8, 6)).astype(np.float32)
    blocks = np.concatenate([wire.quantise_probabilities(probabilities[:, :5]),
                             wire.quantise_probabilities(probabilities[:, 5:])], axis=1)
    assert wire.probabilities_to_proto(blocks).data == wire.probabilities_to_proto(probabilities).data
    decoded = wire.probabilities_from_proto(wire.probabilities_to_proto(blocks))
    assert np.abs(decoded - probabilities).max() <= 1 / 510 + 1e-6
    # Out-of-range values are clipped, never wrapped around.
    edges = wire.quantise_probabilities(np.array([[[-0.5, 1.5, 0.5]]]))
    assert edges.tolist() == [[[0, 255, 128]]]


def test_class_maps_of_any_integer_type_encode_to_uint8_ids():
    labels = np.array([[0, 3], [255, 7]])
    assert wire.class_map_to_proto(labels).data == wire.class_map_to_proto(labels.astype(np.uint8)).data
    with pytest.raises(ValueError, match="0..255"):
        wire.class_map_to_proto(np.array([[-1, 0]]))
    with pytest.raises(WireError, match="expected 6 bytes"):
        wire.class_map_from_proto(common_pb2.ClassMap(data=bytes(5), height=2, width=3))


def test_uncertainty_maps_round_trip_within_half_a_step_of_their_range():
    scores = np.random.default_rng(2).normal(3.0, 2.0, (6, 9)).astype(np.float32)
    quantised, low, high = wire.quantise_scores(scores)
    assert (quantised.min(), quantised.max()) == (0, 255) and (low, high) == (scores.min(), scores.max())
    reply = wire.acquisition_pb2.UncertaintyMap(window=common_pb2.Window(height=6, width=9), data=quantised.tobytes(),
                                                value_min=low, value_max=high)
    values = wire.uncertainty_from_proto(reply)
    assert values.dtype == np.float32 and values.shape == (6, 9)
    assert np.abs(values - scores).max() <= (high - low) / 510 + 1e-5
    # A flat map is all zero steps, not a division by zero.
    assert wire.quantise_scores(np.full((2, 2), 0.7))[0].tolist() == [[0, 0], [0, 0]]
    reply.window.height = 5
    with pytest.raises(WireError, match="expected 45 bytes"):
        wire.uncertainty_from_proto(reply)

"""The session record both services read: clicks as Click, georeference as GeoReference, format unchanged on disk."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest

from dial.clicks import Click
from dial.imagery.georef import GeoReference
from dial_services.adapter.store import SessionStore
from dial_services.common.durable import DamagedRecord
from dial_services.common.session_record import SessionFiles, SessionRecord, new_session_id

# meta.json as sessions written before clicks and georeferences had their own types.
EARLIER_META = {
    "id": "0123456789abcdef0123456789abcdef", "owner": "alice", "model_name": "tiny", "model_version": "1",
    "height": 64, "width": 48, "clicks": [[3, 4, 1], [10, 20, 0]], "settings": {"variant": "full"},
    "create_time": 1000.0, "update_time": 1001.0, "adaptation_count": 1, "revision": 3,
    "state_file": "state-3.pt", "geo_crs": "EPSG:32631", "geo_transform": [0.5, 0.0, 500000.0, 0.0, -0.5, 4e6],
    "extra": {},
}


def test_an_earlier_record_reads_with_clicks_and_georeference_as_core_types():
    record = SessionRecord.from_json(json.dumps(EARLIER_META))
    assert record.clicks == (Click(3, 4, 1), Click(10, 20, 0))
    assert record.geo == GeoReference("EPSG:32631", (0.5, 0.0, 500000.0, 0.0, -0.5, 4e6))
    assert (record.revision, record.state_file) == (3, "state-3.pt")


def test_a_record_is_written_in_the_format_earlier_releases_read():
    record = SessionRecord.from_json(json.dumps(EARLIER_META))
    assert json.loads(record.to_json()) == EARLIER_META
    plain = SessionRecord.from_json(json.dumps(EARLIER_META | {"geo_crs": None, "geo_transform": None}))
    assert plain.geo is None and json.loads(plain.to_json())["geo_transform"] is None


def test_the_adapters_writes_are_what_a_read_only_reader_sees(tmp_path):
    store = SessionStore(tmp_path / "sessions")
    now = time.time()
    record = SessionRecord(id=new_session_id(), owner="alice", model_name="tiny", model_version="1", height=4,
                           width=4, clicks=(Click(1, 2, 1),), settings={}, create_time=now, update_time=now,
                           geo=GeoReference("EPSG:32631", (0.5, 0, 500000, 0, -0.5, 4e6)))
    image = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    store.create(record, image, np.zeros((2, 4, 4), np.float32))
    store.commit(record.changed(now + 1, clicks=record.clicks + (Click(3, 3, 0),)))
    reader = SessionFiles(tmp_path / "sessions")
    with reader.locked(record.id) as exists:
        assert exists
        seen = reader.read_record(record.id)
    assert seen.clicks == (Click(1, 2, 1), Click(3, 3, 0)) and seen.geo == record.geo and seen.revision == 1
    np.testing.assert_array_equal(reader.read_image(record.id), image)
    assert [r.id for r in reader.records()] == [record.id]


def test_a_damaged_record_is_moved_aside_and_only_its_owner_is_named(tmp_path):
    store = SessionStore(tmp_path)
    now = time.time()
    record = SessionRecord(id=new_session_id(), owner="alice", model_name="tiny", model_version="1", height=4,
                           width=4, clicks=(), settings={}, create_time=now, update_time=now)
    store.create(record, np.zeros((4, 4, 3), np.uint8), np.zeros((2, 4, 4), np.float32))
    (tmp_path / record.id / "meta.json").write_text('{"clicks": [[1, 2]]')
    with pytest.raises(DamagedRecord) as damaged:
        store.read_record(record.id)
    assert damaged.value.name == f"sessions/{record.id}" and damaged.value.owner == "alice"
    assert store.quarantined_count() == 1 and store.damaged_owner(record.id) == "alice"
    assert store.read_record(record.id) is None and store.records() == []
    assert store.delete_damaged(record.id) and store.quarantined_count() == 0
    assert store.read_record("../../etc") is None  # never a path outside the store

"""Two writers of one vector file (two sessions exported to one name, say) never share a temporary file:
each finishes whole, and the file is the one that finished last."""
from __future__ import annotations

import numpy as np
import pyogrio

from dial.imagery.georef import GeoReference
from dial.imagery.vector import feature_batches, vectorize, write_batches

GEO = GeoReference("EPSG:32631", (0.5, 0.0, 500000.0, 0.0, -0.5, 4000000.0))


def test_a_writer_started_while_another_writes_the_same_file_does_not_cut_it_short(tmp_path, monkeypatch):
    from dial.imagery import vector

    monkeypatch.setattr(vector, "WRITE_FEATURES", 1)  # every strip goes to disk as it comes, as on a large map
    out = tmp_path / "map.gpkg"
    stripes = np.repeat(np.arange(40) % 2, 8)[:, None].repeat(16, axis=1)  # 40 bands of rows: 40 features
    other = np.zeros((16, 16), np.int64)

    def batches():
        for index, batch in enumerate(feature_batches(stripes, GEO, strip_px=16 * 8)):
            yield batch
            if index == 0:  # another writer of the same file starts and finishes meanwhile
                assert vectorize(other, GEO, out, ["a", "b"]) == 1

    count = write_batches(batches(), out, GEO.crs, ["a", "b"])
    assert count == 40
    assert pyogrio.read_info(out)["features"] == count
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.gpkg"]

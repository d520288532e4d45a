"""Services layer: the three gRPC services in-process, on the tiny model, with rasters under a tmp root."""
from tests.support.fixtures import (  # noqa: F401
    free_port, full_store, raster_root, segmenter, synthetic_dataset, tiny_manifest, tiny_repo, writable_repo,
)

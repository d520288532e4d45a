"""Client layer: dial_client's codec and stubs, against an in-process segmenter or a `dial serve` process."""
from tests.support.fixtures import (  # noqa: F401
    free_port, raster_root, segmenter, synthetic_dataset, tiny_manifest, tiny_repo,
)

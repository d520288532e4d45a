"""System layer: real processes (`dial serve`, `dial up`, QGIS, Prometheus, kubectl) and the fuzz harness."""
from tests.support.fixtures import free_port, raster_root, synthetic_dataset, tiny_manifest, tiny_repo  # noqa: F401

"""Core layer: the dial library on arrays and files, with a synthetic dataset and the tiny model; no servers."""
from tests.support.fixtures import synthetic_dataset, tiny_manifest, tiny_repo, writable_repo  # noqa: F401

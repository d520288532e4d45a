"""The Acquisition service: uncertainty maps, ranked patches and annotation queues."""

"""The Segmenter's configuration: batching and the memory its calls may hold."""
from __future__ import annotations

from pydantic import Field

from dial_services.common.config import MiB, ModelServingConfig


class SegmenterConfig(ModelServingConfig):
    max_batch_size: int = Field(4, ge=1, le=64, description="most Predict tiles run as one ONNX Runtime batch")
    # Off by default: on 2-core CPUs batching measured 0.74-0.96x the throughput
    # of unbatched calls (benchmarks/bench_segmenter.py); on a GPU, set 2-5 ms.
    max_queue_delay_ms: float = Field(0.0, ge=0, le=1000, description="how long a batch waits for more tiles "
                                                                      "(dynamic batching); 0 disables batching")
    max_queue_size: int = Field(64, ge=1, description="batches waiting to run; beyond this, calls get "
                                                      "RESOURCE_EXHAUSTED")
    raster_batch_size: int = Field(4, ge=1, le=64, description="tiles of a PredictRaster run as one batch")
    # Half of the pod's 4 GiB limit: the rest is for the models, ONNX Runtime and the process itself.
    max_inflight_bytes: int = Field(
        2048 * MiB, ge=MiB, description="memory that Predict and PredictRaster calls in flight may hold together; "
                                        "a call that does not fit gets RESOURCE_EXHAUSTED")

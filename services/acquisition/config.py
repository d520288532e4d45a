"""The Acquisition service's configuration: its queue jobs, their store and their pages."""
from __future__ import annotations

from pathlib import Path

from pydantic import Field

from dial_services.common.config import GrpcPort, SessionStoreConfig


class AcquisitionConfig(SessionStoreConfig):
    port: GrpcPort = 50053
    queue_workers: int = Field(1, ge=1, le=64, description="queue jobs computed at once, in background threads")
    job_store: Path = Field(Path(".dial/queue-jobs"),
                            description="queue jobs, on a folder every replica shares so any replica answers for any")
    job_ttl_seconds: float = Field(24 * 3600.0, ge=0, description="how long a finished job is kept after its last "
                                                                 "change (marking patches done is one); 0 keeps it")
    job_lease_seconds: float = Field(60.0, gt=0, description="a job whose replica stops renewing it for this long "
                                                            "is taken over by another replica")
    max_live_jobs_per_caller: int = Field(16, ge=1, description="pending or running jobs one caller may have")
    max_rasters_per_job: int = Field(10000, ge=1, description="most rasters one queue job may rank")
    max_page_size: int = Field(1000, ge=1, description="most patches one page of a queue holds")
    default_page_size: int = Field(50, ge=1, description="patches in a page when the call asks for no size")

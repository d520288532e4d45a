"""The Adapter's configuration: where sessions live, how long, how many, and adaptation defaults."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from dial_services.common.config import ClickCount, GrpcPort, ImagePixels, SessionStoreConfig

# Bounds on what a caller or an operator may ask of one adaptation. Adam's step is about the learning rate
# itself, so above 1 every weight is thrown far off and the session's next prediction is NaN; the recall
# term is a weight on a loss of order 1 beside cross-entropy's, so far above 1 it drowns the clicks.
MAX_LEARNING_RATE = 1.0
MAX_RECALL_WEIGHT = 100.0
MAX_STEPS_PER_CALL = 1000


class AdapterConfig(SessionStoreConfig):
    port: GrpcPort = 50052
    max_sessions_in_memory: int = Field(16, ge=1, description="beyond this, least recently used go back to the store")
    max_sessions_per_caller: int = Field(32, ge=1, description="sessions one caller may hold")
    # A session image is held in memory and in the store whole, so it is capped lower than a Predict image.
    max_image_px: ImagePixels = 4096 * 4096
    max_clicks: ClickCount = 1000
    adaptation_variant: Literal["full", "fast"] = Field(
        "fast", description="which parameters DISCA adapts: full (every one) or fast (decoder and head, on "
                        "cached encoder features)")
    adaptation_steps: int = Field(10, ge=1, le=MAX_STEPS_PER_CALL, description="optimiser steps per adaptation")
    learning_rate: float | None = Field(None, gt=0, le=MAX_LEARNING_RATE, description="Adam lr; unset: the "
                                        "model's tuned rate for the variant, else DIAL's")
    recall_weight: float | None = Field(None, ge=0, le=MAX_RECALL_WEIGHT, description="lambda of DISCA's L1 "
                                        "recall term; unset: the model's tuned value, else DIAL's")
    crop_px: int = Field(256, ge=32, description="side of the training crops, a multiple of 32")
    max_crops: int = Field(4, ge=1, description="training crops per step: the latest click's and a draw "
                           "among the others")
    sweep_seconds: float = Field(60.0, gt=0, description="how often expired sessions are removed from the store")
    export_repo: Path | None = Field(
        None, description="writable model repository ExportSessionModel saves to, for a read-only model "
                          "repository; its versions are served once copied into the model repository; unset: "
                          "exports go to the model repository")

    @field_validator("export_repo")
    @classmethod
    def _export_repo_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_dir():
            raise ValueError(f"export repository {value} is not a folder")
        return value

    @field_validator("crop_px")
    @classmethod
    def _multiple_of_32(cls, value: int) -> int:
        if value % 32:
            raise ValueError(f"crop_px {value} must be a multiple of 32")
        return value

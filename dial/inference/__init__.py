"""Running a click-aware model on images of any size."""

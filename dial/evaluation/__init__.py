"""Evaluating interactive segmentation with a simulated annotator."""

"""Prometheus metrics, named ``dial_<what>_<unit>`` as in Triton and KServe.

Each server owns a registry (not the process-global one), so several
services, or several test servers, can live in one process. The registry
carries the process collector too (``process_resident_memory_bytes``,
``process_cpu_seconds_total``), so memory and CPU alerts need no exporter.

Call latency is labelled by status code, so a p99 of failures (a refusal is
fast) does not hide in the p99 of successes, and by ``grpc_type`` (unary,
client_stream, server_stream, bidi_stream, as go-grpc-prometheus names it),
because a stream's duration is how long the client kept it open, not how
fast the server answered. Inference has its own latency and queue wait per
model and version, as Triton's ``nv_inference_request_duration_us`` and
``nv_inference_queue_duration_us``.
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, start_http_server
from prometheus_client.exposition import generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class ServiceMetrics:
    """Request metrics every service exposes, plus a place for its own."""

    def __init__(self, service: str):
        self.service = service
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self.requests = Counter(
            "dial_grpc_requests", "gRPC requests handled, by method, call type and status code",
            ["service", "method", "grpc_type", "code"], registry=self.registry)
        self.latency = Histogram(
            "dial_grpc_request_duration_seconds", "gRPC request latency, by method, call type and status code",
            ["service", "method", "grpc_type", "code"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.in_flight = Gauge(
            "dial_grpc_requests_in_flight", "gRPC requests being handled now",
            ["service"], registry=self.registry)

    def counter(self, name: str, doc: str, labels=()) -> Counter:
        return Counter(name, doc, list(labels), registry=self.registry)

    def gauge(self, name: str, doc: str, labels=()) -> Gauge:
        return Gauge(name, doc, list(labels), registry=self.registry)

    def histogram(self, name: str, doc: str, labels=(), buckets=LATENCY_BUCKETS) -> Histogram:
        return Histogram(name, doc, list(labels), buckets=buckets, registry=self.registry)

    def serve(self, port: int, host: str = "0.0.0.0"):
        """Start the HTTP exposition; returns the (server, thread) pair."""
        return start_http_server(port, addr=host, registry=self.registry)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

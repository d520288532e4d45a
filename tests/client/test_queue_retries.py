"""A retried CreateQueueJob sends the request id of its first try, so the server can answer with the job
that try made (whose reply was lost), from the blocking and the asyncio client alike."""
from __future__ import annotations

import asyncio
from concurrent import futures

import grpc
import pytest

import dial_client
from dial_client import AcquisitionClient, RetryPolicy
from dial_client.wire import acquisition_pb2, acquisition_pb2_grpc

FAST_RETRIES = RetryPolicy(max_attempts=3, initial_backoff_seconds=0.01, max_backoff_seconds=0.02)


class LosesFirstReply(acquisition_pb2_grpc.AcquisitionServicer):
    """Creates the job, then fails the call as a dropped connection would, once per request id."""

    def __init__(self):
        self.request_ids: list[str] = []

    def CreateQueueJob(self, request, context):
        self.request_ids.append(request.request_id)
        if self.request_ids.count(request.request_id) == 1:
            context.abort(grpc.StatusCode.UNAVAILABLE, "connection lost after the job was created")
        return acquisition_pb2.QueueJob(name=f"queueJobs/{len(set(self.request_ids)):016x}",
                                        state=acquisition_pb2.QueueJob.PENDING, request_id=request.request_id)


@pytest.fixture()
def target():
    servicer = LosesFirstReply()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    acquisition_pb2_grpc.add_AcquisitionServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}", servicer
    server.stop(None)


def test_a_retried_create_repeats_its_request_id(target):
    address, servicer = target
    with AcquisitionClient(address, retries=FAST_RETRIES) as client:
        first = client.submit_queue(["a.tif"], model="m")
        second = client.create_queue_job(["a.tif"], model="m")
        mine = client.submit_queue(["a.tif"], model="m", request_id="pipeline-run-42")
    generated = servicer.request_ids[0]
    assert len(generated) == 36 and servicer.request_ids[:2] == [generated, generated]  # a UUID, sent twice
    assert servicer.request_ids[2] == servicer.request_ids[3] != generated  # a new id for a new create
    assert servicer.request_ids[4:] == ["pipeline-run-42"] * 2
    assert (first.request_id, mine.request_id) == (generated, "pipeline-run-42") and first.name != second.name


def test_the_asyncio_client_repeats_its_request_id_too(target):
    address, servicer = target

    async def create():
        async with dial_client.aio.AcquisitionClient(address, retries=FAST_RETRIES) as client:
            return await client.submit_queue(["a.tif"], model="m")

    job = asyncio.run(create())
    assert servicer.request_ids == [job.request_id] * 2 and job.state == "PENDING"

"""CreateSession with a request_id: a retried create returns the session the first try made, also after a
restart; the same id with another request is ALREADY_EXISTS."""
from __future__ import annotations

import grpc
import numpy as np
import pytest

from dial_client import AdapterClient
from dial_client.errors import AlreadyExists, InvalidArgument
from tests.services.test_adapter_service import start_adapter

SIZE = 32


@pytest.fixture(scope="module")
def image(tiny_manifest):
    rng = np.random.default_rng(5)
    return rng.integers(0, 255, (SIZE, SIZE, tiny_manifest.n_bands)).astype(tiny_manifest.input_dtype)


def test_a_retried_create_returns_the_first_session_even_after_a_restart(tiny_repo, tmp_path, image):
    store = tmp_path / "sessions"
    address, running = start_adapter(tiny_repo, store)
    try:
        with AdapterClient(address, caller="alice") as alice, AdapterClient(address, caller="bob") as bob:
            first = alice.create_session(image, model="tiny", steps=3, request_id="create-1")
            again = alice.create_session(image, model="tiny", steps=3, request_id="create-1")
            assert again.name == first.name and again.info.request_id == "create-1"
            assert [s.name for s in alice.list_sessions()] == [first.name]
            # Request ids are the caller's own: another caller's same id makes that caller's session.
            theirs = bob.create_session(image, model="tiny", steps=3, request_id="create-1")
            assert theirs.name != first.name
            with pytest.raises(AlreadyExists, match=f"{first.name} with a different request"):
                alice.create_session(image, model="tiny", steps=4, request_id="create-1")
            with pytest.raises(AlreadyExists):
                alice.create_session(image[::-1].copy(), model="tiny", steps=3, request_id="create-1")
            with pytest.raises(InvalidArgument, match="request_id"):
                alice.create_session(image, model="tiny", request_id="x" * 129)
            # Without one of the caller's own, every call is a new session with a fresh id.
            plain = [alice.create_session(image, model="tiny") for _ in range(2)]
            assert plain[0].name != plain[1].name
            assert plain[0].info.request_id and plain[0].info.request_id != plain[1].info.request_id
            assert len(alice.list_sessions()) == 3
    finally:
        running.stop(0)

    address, running = start_adapter(tiny_repo, store)
    try:
        with AdapterClient(address, caller="alice") as alice:
            assert alice.create_session(image, model="tiny", steps=3, request_id="create-1").name == first.name
            with pytest.raises(AlreadyExists):
                alice.create_session(image, model="tiny", steps=4, request_id="create-1")
            # The id is kept as long as its session: once that is deleted, the id creates anew.
            alice.get_session(first.name).delete()
            fresh = alice.create_session(image, model="tiny", steps=4, request_id="create-1")
            assert fresh.name != first.name and fresh.info.config.steps == 4
    finally:
        running.stop(0)


class LoseFirstCreateReply(grpc.ServerInterceptor):
    """A server interceptor that runs the first CreateSession, then answers UNAVAILABLE as a dropped
    connection would: the session exists, the client never heard of it."""

    def __init__(self):
        self.lost = 0

    def intercept_service(self, continuation, details):
        handler = continuation(details)
        if handler is None or not details.method.endswith("/CreateSession"):
            return handler

        def unary(request, context):
            reply = handler.unary_unary(request, context)
            if not self.lost:
                self.lost += 1
                context.abort(grpc.StatusCode.UNAVAILABLE, "connection reset before the reply")
            return reply

        return grpc.unary_unary_rpc_method_handler(unary, request_deserializer=handler.request_deserializer,
                                                   response_serializer=handler.response_serializer)


@pytest.mark.parametrize("request_id, sessions_made", [(None, 1), ("", 2)])
def test_the_clients_retry_of_a_lost_reply_gets_the_session_it_made(tiny_repo, tmp_path, image, request_id,
                                                                    sessions_made):
    from dial_services.adapter.config import AdapterConfig
    from dial_services.adapter.main import start

    lose = LoseFirstCreateReply()
    running = start(AdapterConfig(host="127.0.0.1", port=0, model_repo=tiny_repo, session_store=tmp_path / "s"),
                    extra_interceptors=(lose,))
    try:
        with AdapterClient(f"127.0.0.1:{running.port}", caller="alice", retries=3) as client:
            session = client.create_session(image, model="tiny", request_id=request_id)
            assert lose.lost == 1  # the first reply was lost and the client retried
            listed = client.list_sessions()
        # With the client's own request id the retry found the first session; with none it made another.
        assert len(listed) == sessions_made and session.name in [s.name for s in listed]
    finally:
        running.stop(0)

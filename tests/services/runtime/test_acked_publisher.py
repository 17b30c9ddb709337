"""AckedPublisher against a real nats-server: acks awaited, dedup by Nats-Msg-Id, clear errors."""

from __future__ import annotations

import uuid

import nats
import pytest
from nats.js.api import StreamConfig

from mesh.deps.nats import Nats
from services.runtime.bus import AckedPublisher
from services.runtime.errors import Unavailable


async def test_messages_are_stored_once_each_and_a_subject_without_a_stream_is_unavailable(nats_server: Nats) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        name = f"T{uuid.uuid4().hex[:12]}"
        await js.add_stream(StreamConfig(name=name, subjects=[f"{name}.>"]))
        publisher = AckedPublisher(nc)
        batch = [(f"{name}.a", b"one", {"Nats-Msg-Id": "m1"}), (f"{name}.b", b"two", {"Nats-Msg-Id": "m2"})]
        await publisher.publish(batch, timeout_s=5)
        await publisher.publish(batch[:1], timeout_s=5)  # a retry: de-duplicated by the stream
        info = await js.stream_info(name)
        assert info.state.messages == 2
        assert (await js.get_msg(name, 1)).data == b"one"
        with pytest.raises(Unavailable, match="no JetStream stream"):
            await publisher.publish([(f"nostream{name}.x", b"lost", {"Nats-Msg-Id": "m3"})], timeout_s=5)
        await publisher.publish([(f"{name}.c", b"three", {})], timeout_s=5)  # still usable after an error
        assert (await js.stream_info(name)).state.messages == 3
    finally:
        await nc.close()

"""The control plane's pure parts: the registry table's TTL sweep, EndpointSlices as replicas,
snapshots, and the ADS stream protocol (versions, nonces, ACK, NACK) against a real grpc.aio
server with a table fed by hand."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from kubernetes.client import (
    DiscoveryV1EndpointPort,
    V1Endpoint,
    V1EndpointConditions,
    V1EndpointSlice,
    V1ObjectMeta,
    V1ObjectReference,
)

from mesh.xds.ads import STREAM_METHOD
from mesh.xds.envoy_types import DiscoveryRequest, DiscoveryResponse, Status
from mesh.xds.kubernetes import EndpointSliceSource, records_from_slice
from mesh.xds.resources import CLUSTER_TYPE, ENDPOINT_TYPE, build_snapshot, load_assignment
from mesh.xds.server import ControlPlane, create
from mesh.xds.settings import XdsSettings
from services.runtime.registry import RegistryView, ReplicaRecord, ReplicaTable


class Clock:
    """A settable monotonic and wall clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def record(replica: str = "h1", service: str = "history", **changes: Any) -> ReplicaRecord:
    values: dict[str, Any] = {
        "service": service,
        "replica": replica,
        "host": "127.0.0.1",
        "port": 5001,
        "health": "SERVING",
        "heartbeat_at": 1000.0,
        "ttl_s": 3.0,
        **changes,
    }
    return ReplicaRecord(**values)


def test_a_replica_without_heartbeats_is_swept_after_its_ttl() -> None:
    clock = Clock()
    table = ReplicaTable(clock=clock, wall=clock)
    table.put(record())
    clock.now += 2.9
    assert table.sweep() == []
    clock.now += 0.2
    version = table.version
    assert table.sweep() == ["history.h1"]
    assert table.records() == []
    assert table.version == version + 1


def test_a_heartbeat_extends_the_ttl_without_counting_as_a_change() -> None:
    clock = Clock()
    table = ReplicaTable(clock=clock, wall=clock)
    table.put(record())
    version = table.version
    clock.now += 2.0
    table.put(record(heartbeat_at=clock.now))
    assert table.version == version  # nothing Envoy would see changed
    clock.now += 2.0
    assert table.sweep() == []
    table.put(record(heartbeat_at=clock.now, health="DRAINING"))
    assert table.version == version + 1


def test_a_record_already_old_when_read_expires_sooner() -> None:
    clock = Clock()
    table = ReplicaTable(clock=clock, wall=clock)
    table.put(record(heartbeat_at=clock.now - 2.5))  # written 2.5 s before this reader saw it
    clock.now += 0.6
    assert table.sweep() == ["history.h1"]


def test_a_record_of_a_dead_replica_is_not_loaded_at_all() -> None:
    clock = Clock()
    table = ReplicaTable(clock=clock, wall=clock)
    table.put(record(heartbeat_at=clock.now - 60))
    assert table.sweep() == ["history.h1"]


async def test_waiters_are_woken_by_a_change() -> None:
    table = ReplicaTable()
    waiter = asyncio.create_task(table.wait_changed(table.version))
    await asyncio.sleep(0)
    assert not waiter.done()
    table.put(record())
    assert await asyncio.wait_for(waiter, 1) == table.version


def test_the_view_applies_deletes_and_ignores_what_is_not_a_record() -> None:
    view = RegistryView(nc=None, table=ReplicaTable())  # type: ignore[arg-type]
    view.apply("history.h1", record().model_dump_json().encode(), None)
    view.apply("history.h2", b"not json", None)
    view.apply("history.h3", record("h1").model_dump_json().encode(), None)  # under another key
    assert [r.key for r in view.table.records()] == ["history.h1"]
    view.apply("history.h1", b"", "DEL")
    assert view.table.records() == []


def endpoint_slice(name: str, service: str, endpoints: list[V1Endpoint], port_name: str = "grpc") -> V1EndpointSlice:
    return V1EndpointSlice(
        address_type="IPv4",
        metadata=V1ObjectMeta(name=name, labels={"kubernetes.io/service-name": service}),
        ports=[DiscoveryV1EndpointPort(name="metrics", port=9100), DiscoveryV1EndpointPort(name=port_name, port=50052)],
        endpoints=endpoints,
    )


def pod(name: str, address: str, *, ready: bool, terminating: bool = False, serving: bool | None = None) -> V1Endpoint:
    return V1Endpoint(
        addresses=[address],
        conditions=V1EndpointConditions(ready=ready, serving=serving, terminating=terminating),
        target_ref=V1ObjectReference(kind="Pod", name=name),
        zone="eu-west-1a",
    )


def test_endpointslices_become_records_ready_serving_terminating_draining() -> None:
    records = records_from_slice(
        endpoint_slice(
            "history-abc",
            "history",
            [
                pod("history-7d9-1", "10.0.0.1", ready=True),
                pod("history-7d9-2", "10.0.0.2", ready=False, serving=True, terminating=True),
                pod("history-7d9-3", "10.0.0.3", ready=False),  # starting, not ready yet
            ],
        )
    )
    assert [(r.key, r.host, r.port, r.health, r.zone) for r in records] == [
        ("history.history-7d9-1", "10.0.0.1", 50052, "SERVING", "eu-west-1a"),
        ("history.history-7d9-2", "10.0.0.2", 50052, "DRAINING", "eu-west-1a"),
    ]


def test_a_slice_without_the_named_port_uses_its_first_and_one_of_no_service_is_ignored() -> None:
    (only,) = records_from_slice(endpoint_slice("s", "forms", [pod("p", "10.0.0.9", ready=True)], "other"))
    assert only.port == 9100
    orphan = endpoint_slice("s", "forms", [pod("p", "10.0.0.9", ready=True)])
    orphan.metadata.labels = {}
    assert records_from_slice(orphan) == []


def test_the_endpointslice_source_follows_adds_updates_and_deletes_per_service() -> None:
    source = EndpointSliceSource("chatmesh", table=ReplicaTable(), api=object())
    source.replace(
        [
            endpoint_slice("history-a", "history", [pod("h1", "10.0.0.1", ready=True)]),
            endpoint_slice("history-b", "history", [pod("h2", "10.0.0.2", ready=True)]),
            endpoint_slice("forms-a", "forms", [pod("f1", "10.0.1.1", ready=True)]),
        ]
    )
    assert source.table.ready
    assert {s: [r.replica for r in rs] for s, rs in source.table.by_service().items()} == {
        "forms": ["f1"],
        "history": ["h1", "h2"],
    }
    source.apply("MODIFIED", endpoint_slice("history-a", "history", [pod("h1", "10.0.0.1", ready=False)]))
    source.apply("DELETED", endpoint_slice("forms-a", "forms", []))
    assert {s: [r.replica for r in rs] for s, rs in source.table.by_service().items()} == {"history": ["h2"]}


def test_endpoints_carry_health_and_zone_and_versions_follow_content() -> None:
    assignment = load_assignment("history", [record("h1"), record("h2", health="DRAINING", zone="b", port=5002)])
    localities = {
        e.locality.zone: [(h.endpoint.address.socket_address.port_value, h.health_status.name) for h in e.lb_endpoints]
        for e in assignment.endpoints
    }  # noqa: E501
    assert localities == {"local": [(5001, "HEALTHY")], "b": [(5002, "DRAINING")]}
    settings = XdsSettings(services=["history"])
    one = build_snapshot(settings, {"history": ""}, {"history": [record("h1")]})
    same = build_snapshot(settings, {"history": ""}, {"history": [record("h1", heartbeat_at=5.0)]})
    other = build_snapshot(settings, {"history": ""}, {"history": [record("h1", port=6000)]})
    assert one.version(ENDPOINT_TYPE) == same.version(ENDPOINT_TYPE) != other.version(ENDPOINT_TYPE)
    assert one.version(CLUSTER_TYPE) == other.version(CLUSTER_TYPE)


class AdsClient:
    """One ADS stream to the control plane, as Envoy would open it."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        method = channel.stream_stream(
            STREAM_METHOD, request_serializer=bytes, response_deserializer=DiscoveryResponse.parse
        )
        self._out: asyncio.Queue[DiscoveryRequest] = asyncio.Queue()
        self._in: asyncio.Queue[DiscoveryResponse] = asyncio.Queue()
        self.call = method(self._requests())
        self._reader = asyncio.create_task(self._read())

    async def _requests(self) -> AsyncIterator[DiscoveryRequest]:
        while True:
            yield await self._out.get()

    async def _read(self) -> None:
        async for response in self.call:
            await self._in.put(response)

    async def send(self, **fields: Any) -> None:
        await self._out.put(DiscoveryRequest(**fields))

    async def receive(self, timeout_s: float = 2.0) -> DiscoveryResponse:
        return await asyncio.wait_for(self._in.get(), timeout_s)

    async def nothing_within(self, timeout_s: float) -> bool:
        await asyncio.sleep(timeout_s)
        return self._in.empty()

    def close(self) -> None:
        self.call.cancel()
        self._reader.cancel()


@pytest.fixture
async def plane() -> AsyncIterator[ControlPlane]:
    table = ReplicaTable()
    plane = create(XdsSettings(port=0, services=["history"]), table)
    await plane.server.start()  # no source: the test feeds the table
    try:
        yield plane
    finally:
        await plane.server.stop(None)


async def test_ads_waits_for_the_source_then_answers_acks_pushes_and_skips_a_rejected_version(
    plane: ControlPlane,
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{plane.port}") as channel:
        envoy = AdsClient(channel)
        await envoy.send(type_url=CLUSTER_TYPE)
        assert await envoy.nothing_within(0.3)  # the source has not loaded: no empty answer
        plane.table.put(record(), expires=False)
        plane.table.mark_ready()
        cds = await envoy.receive()
        assert cds.type_url == CLUSTER_TYPE and [r.unpack().name for r in cds.resources] == ["history"]
        await envoy.send(type_url=CLUSTER_TYPE, version_info=cds.version_info, response_nonce=cds.nonce)
        await envoy.send(type_url=ENDPOINT_TYPE, resource_names=["history"])
        eds = await envoy.receive()
        assert eds.type_url == ENDPOINT_TYPE
        (assignment,) = [r.unpack() for r in eds.resources]
        assert [h.endpoint.address.socket_address.port_value for h in assignment.endpoints[0].lb_endpoints] == [5001]
        await envoy.send(
            type_url=ENDPOINT_TYPE, resource_names=["history"], version_info=eds.version_info, response_nonce=eds.nonce
        )  # noqa: E501
        # A change is pushed without being asked.
        plane.table.put(record("h2", port=5002), expires=False)
        pushed = await envoy.receive(1.0)
        assert pushed.type_url == ENDPOINT_TYPE and pushed.version_info != eds.version_info
        assert len(pushed.resources[0].unpack().endpoints[0].lb_endpoints) == 2
        # Envoy rejects it: that version is not sent again; the next change is.
        await envoy.send(
            type_url=ENDPOINT_TYPE,
            resource_names=["history"],
            version_info=eds.version_info,
            response_nonce=pushed.nonce,
            error_detail=Status(code=3, message="bad endpoint"),
        )
        assert await envoy.nothing_within(0.3)
        plane.table.put(record("h3", port=5003), expires=False)
        after = await envoy.receive(1.0)
        assert len(after.resources[0].unpack().endpoints[0].lb_endpoints) == 3
        envoy.close()

"""Pure logic: when a submission counts as processed, and whose address a call came from."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from chatmesh.forms.v1 import forms_pb2 as fpb
from services.forms.directory import ConsumerEntry
from services.forms.status import build_status, is_final
from services.forms.store import StatusRecord, StatusRow
from services.runtime.clients import client_address, parse_networks

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def entry(name: str, required: bool = True) -> ConsumerEntry:
    return ConsumerEntry(name, "", True, required, 5, 100, ())


def record(**states: tuple[int, int]) -> StatusRecord:
    rows = {n: StatusRow(n, state, 1, "", T0 + timedelta(seconds=at)) for n, (state, at) in states.items()}
    return StatusRecord("s", "f", 1, "", T0, rows)


ENTRIES = [entry("store"), entry("sheets"), entry("confirm", required=False)]
DONE, FAILED, DEAD = fpb.CONSUMER_STATE_DONE, fpb.CONSUMER_STATE_FAILED, fpb.CONSUMER_STATE_DEAD_LETTERED


def test_nothing_stored_yet_is_pending_everywhere_and_not_processed() -> None:
    status = build_status("s", "f", None, ENTRIES)
    assert not status.processed and [c.state for c in status.consumers] == [fpb.CONSUMER_STATE_PENDING] * 3


def test_processed_only_once_every_required_consumer_is_done_at_the_last_ones_time() -> None:
    assert not build_status("s", "f", record(store=(DONE, 1)), ENTRIES).processed
    assert not build_status("s", "f", record(store=(DONE, 1), sheets=(FAILED, 2)), ENTRIES).processed
    assert not build_status("s", "f", record(store=(DONE, 1), sheets=(DEAD, 2)), ENTRIES).processed
    done = build_status("s", "f", record(store=(DONE, 1), sheets=(DONE, 3)), ENTRIES)
    assert done.processed and done.processed_at.ToDatetime(UTC) == T0 + timedelta(seconds=3)
    assert not is_final(done)  # confirm (not required) is still pending
    assert is_final(build_status("s", "f", record(store=(DONE, 1), sheets=(DEAD, 2), confirm=(DONE, 3)), ENTRIES))


def test_without_any_required_consumer_nothing_is_ever_processed() -> None:
    assert not build_status("s", "f", record(confirm=(DONE, 1)), [entry("confirm", required=False)]).processed


def test_the_gateways_address_header_is_believed_only_from_a_trusted_proxy() -> None:
    trusted = parse_networks(["127.0.0.0/8", "::1/128"])
    assert client_address("ipv4:127.0.0.1:5555", "203.0.113.7", trusted) == "203.0.113.7"
    assert client_address("ipv6:[::1]:5555", "2001:db8::1", trusted) == "2001:db8::1"
    assert client_address("ipv4:198.51.100.2:5555", "203.0.113.7", trusted) == "198.51.100.2"
    assert client_address("ipv4:127.0.0.1:5555", "not an address", trusted) == "127.0.0.1"
    assert client_address("ipv4:127.0.0.1:5555", None, trusted) == "127.0.0.1"

"""Canonical UUID text (services.runtime.ids): one spelling per id, ASCII only."""

from __future__ import annotations

import uuid

import pytest

from services.runtime.errors import InvalidArgument
from services.runtime.ids import canonical_uuid, canonical_uuid_or_none, canonical_uuids

ID = "0f8fad5b-d9cb-469f-a165-70867728950e"


@pytest.mark.parametrize(
    "spelling",
    [ID, ID.upper(), ID.replace("-", ""), "{" + ID + "}", "urn:uuid:" + ID],
)
def test_every_uuid_spelling_is_the_canonical_one(spelling: str) -> None:
    assert canonical_uuid("user_id", spelling) == ID == str(uuid.UUID(spelling))


@pytest.mark.parametrize(
    "text",
    ["", "x", ID[:-1], ID + "0", "{" + ID, ID + "}", ID.replace("0", "٠"), ID.replace("a", "ａ"), " " + ID, ID * 2],
)
def test_anything_else_is_invalid_argument_naming_the_field(text: str) -> None:
    assert canonical_uuid_or_none(text) is None
    with pytest.raises(InvalidArgument) as err:
        canonical_uuid("peer_user_id", text)
    assert str(err.value).startswith("peer_user_id: ")


def test_a_list_is_canonical_with_spelling_duplicates_dropped_in_order() -> None:
    other = str(uuid.uuid4())
    assert canonical_uuids("user_ids", [ID.upper(), other, ID]) == [ID, other]

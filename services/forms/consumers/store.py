"""store: every submission permanently in CQL (``form_submissions``), idempotent by submission id."""

from __future__ import annotations

from collections.abc import Sequence

from services.forms.consumers.base import DONE, Consumer, Delivery, Outcome


class StoreConsumer(Consumer):
    """Writes each submission's row (the same message writes the same row: a redelivery changes nothing)."""

    name = "store"
    description = "Stores every submission permanently in CQL (ListSubmissions reads it)."
    batch_size = 200
    parallel_batches = 3
    backoff_s = (0.2, 1.0, 5.0, 15.0)
    max_deliveries = 8
    writes_facts = True

    async def handle(self, batch: Sequence[Delivery]) -> Sequence[Outcome]:
        await self.context.store.put_submissions([d.submission for d in batch], ())
        return [DONE] * len(batch)

"""confirm: tells a signed-in submitter, on every device's session stream, that their submission was processed.

It reads ``forms.processed.<id>`` (announced once every required consumer committed the
submission) and publishes a FormSubmissionProcessed event on the submitter's CHAT
subject (``chat.user.<id>``), which session.Connect hands to each of their devices;
``Nats-Msg-Id`` = ``confirm:<submission>`` keeps a redelivery from telling them twice.
Anyone holding the submission id reads the same news from GetSubmission/WatchSubmission.
Not required: it follows "processed", it is not part of it.
"""

from __future__ import annotations

from collections.abc import Sequence

from google.protobuf.timestamp_pb2 import Timestamp

from chatmesh.events.v1 import events_pb2
from services.forms.consumers.base import DONE, Consumer, ConsumerContext, Delivery, Outcome
from services.forms.streams import PROCESSED_SUBJECTS
from services.runtime.bus import AckedPublisher
from services.runtime.subjects import chat_subject


class ConfirmConsumer(Consumer):
    """Publishes the submitter's confirmation event."""

    name = "confirm"
    description = "Tells the signed-in submitter's devices (session.Connect) that their submission was processed."
    subjects = (PROCESSED_SUBJECTS,)
    required = False
    batch_size = 200

    def __init__(self, context: ConsumerContext) -> None:
        super().__init__(context)
        self._publisher = AckedPublisher(context.nc)

    @staticmethod
    def processed_at(delivery: Delivery) -> Timestamp:
        """When the submission was processed (from the announcement's header; else now)."""
        at = Timestamp()
        header = delivery.headers.get("Chatmesh-Processed-At", "")
        ms = int(header) if header.isascii() and header.isdigit() else 0
        if ms:
            at.FromMilliseconds(ms)
        else:
            at.GetCurrentTime()
        return at

    async def handle(self, batch: Sequence[Delivery]) -> Sequence[Outcome]:
        messages = []
        for delivery in batch:
            s = delivery.submission
            if not s.submitter_user_id:
                continue  # anonymous: the status is theirs to read by id
            event = events_pb2.Event(
                form_submission_processed=events_pb2.FormSubmissionProcessed(
                    submission_id=s.submission_id,
                    form_id=s.form_id,
                    form_version=s.form_version,
                    processed_at=self.processed_at(delivery),
                )
            )
            event.occurred_at.GetCurrentTime()
            messages.append(
                (
                    chat_subject(s.submitter_user_id),
                    event.SerializeToString(),
                    {"Nats-Msg-Id": f"confirm:{s.submission_id}"},
                )
            )
        if messages:
            await self._publisher.publish(messages, self.context.settings.confirm_publish_timeout_s)
        return [DONE] * len(batch)

"""A job's progress, as workers record it batch by batch (pure functions over JobRecord).

Counting is idempotent per batch: a work item's record keeps how many of its batches are
counted (``partial[<item>].batches_done``), so a batch written again after a redelivery is
not counted twice, and a redelivered item resumes after its last counted batch. Counts only
grow, so progress never goes backwards. All changes go through the job table's
compare-and-set, so workers racing on one job never lose each other's counts.
"""

from __future__ import annotations

from collections.abc import Sequence

from services.ingest.records import FailureRecord, ItemProgress, JobRecord

RATE_WINDOW_S = 10.0
_MAX_SAMPLES = 64


def record_batch(
    job: JobRecord,
    item: int,
    batch: int,
    points_ok: int,
    failures: Sequence[tuple[int, str]],
    now: float,
    max_failures: int,
) -> bool:
    """Count batch ``batch`` of work item ``item`` unless it was counted already; True if counted."""
    if item in job.done_items:
        return False
    progress = job.partial.setdefault(str(item), ItemProgress())
    if batch < progress.batches_done:
        return False
    progress.batches_done = batch + 1
    progress.points_done += points_ok
    progress.points_failed += len(failures)
    job.points_done += points_ok
    job.points_failed += len(failures)
    job.batches_done += 1
    for position, reason in failures:
        if len(job.failures) < max_failures:
            job.failures.append(FailureRecord(position=position, reason=reason))
    if failures:
        job.last_error = failures[-1][1]
    if job.state == "queued":
        job.state = "running"
        job.started_at = job.started_at or now
    job.rate_samples = [s for s in job.rate_samples if now - s[0] <= RATE_WINDOW_S][-_MAX_SAMPLES:]
    job.rate_samples.append((now, job.points_done + job.points_failed))
    job.updated_at = now
    return True


def finish_item(job: JobRecord, item: int, now: float) -> bool:
    """Mark work item ``item`` done; True when that ended the job (its terminal state is set)."""
    if item in job.done_items or job.terminal:
        return False
    job.done_items.append(item)
    job.partial.pop(str(item), None)
    job.updated_at = now
    if job.planned and len(job.done_items) >= job.items_total:
        end(job, now)
        return True
    return False


def end(job: JobRecord, now: float) -> None:
    """Set the terminal state of a job whose items are all done."""
    if job.points_failed == 0:
        job.state = "succeeded"
    elif job.points_done == 0:
        job.state = "failed"
        first = job.failures[0].reason if job.failures else job.last_error
        job.error = f"no item could be ingested; the first: {first}"
    else:
        job.state = "completed_with_errors"
    job.finished_at = now
    job.updated_at = now


def planned(job: JobRecord, items: int, points: int, batches: int, now: float) -> None:
    """Record how the source was cut; a source with nothing in it ends the job at once."""
    job.planned = True
    job.items_total = items
    job.points_total = points
    job.batches_total = batches
    job.updated_at = now
    if job.state == "queued":
        job.state = "running"
        job.started_at = now
    if items == 0 or len(job.done_items) >= items:
        end(job, now)


def fail(job: JobRecord, error: str, now: float) -> None:
    """End the job FAILED with ``error``."""
    job.state = "failed"
    job.error = error
    job.finished_at = now
    job.updated_at = now


def rate(job: JobRecord, now: float) -> tuple[float, float]:
    """(points per second over the last few seconds, seconds to go at that rate); zeros when unknown."""
    if job.terminal or job.state != "running":
        return 0.0, 0.0
    samples = [s for s in job.rate_samples if now - s[0] <= RATE_WINDOW_S]
    if len(samples) < 2 or samples[-1][0] - samples[0][0] < 0.2:
        return 0.0, 0.0
    per_s = (samples[-1][1] - samples[0][1]) / (samples[-1][0] - samples[0][0])
    left = job.points_total - job.points_done - job.points_failed if job.planned else 0
    return per_s, (left / per_s if per_s > 0 and left > 0 else 0.0)

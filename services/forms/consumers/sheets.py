"""sheets: rows appended in batches to a spreadsheet per form (XLSX and CSV, local directory or S3 bucket).

A batch is gathered until it holds ``flush_rows`` rows or ``flush_interval_s`` passed
since its first (the sink behind a spreadsheet API is rate limited: write often, not
once a row). Committing a batch writes one immutable part file per form holding its rows
and their submission ids, in one atomic write; only then is the batch "done". Before
committing, the form's parts are listed again and any submission a part already holds
is left out, so a batch redelivered after a crash (the part was written, the acks were
not) adds nothing; the spreadsheets are rendered from the parts with one row per
submission id, so each row is there exactly once, in submission order.

The workbook and CSV of a form are re-rendered from its parts at most every
``render_interval_s`` (and when the worker stops): a committed row reaches the files a
moment after its status says done. A render writes the whole file (30,000 rows cost about
2 s of CPU here), so a large form waits longer between renders: at least
``1 / render_cpu_share`` times its last render's duration, which keeps rendering to that
share of a core however big the form grows. Rendering runs in a process of its own, on a
copy of the rows taken under the lock: neither the lock nor the worker's interpreter is held
while it works, so commits (this consumer's and the others' in the worker) go on meanwhile
(held for a render, they waited seconds behind it: "processed" took 8 s at its p99).
Each process keeps the rows of the forms it wrote in memory (read back from the parts after a
restart), and forgets a form rendered and untouched for ``forget_idle_s``.

Parts are compacted like an LSM tree's levels, so that the listing every batch makes stays
short however long a form lives: a batch's part is level 0; once a form has
``compact_fan_in`` parts of one level, this process writes their rows as one part of the next
level (``merged<level>-...``), then deletes them. The merged part is written before anything
is deleted, so every row is always in some listed part; a crash between leaves a row in two
parts, and rows are keyed by submission id wherever parts are read, so it is still one row.
Two processes compacting the same parts at once end up the same way. A part that vanishes
between a listing and its reading (merged away by another process) sends the reader back to
list again, where the merged part is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field

from services.forms.consumers.base import DONE, Consumer, ConsumerContext, Delivery, Outcome
from services.forms.sheetfiles import LocalSheetFiles, S3SheetFiles, SheetFiles
from services.forms.sheetrender import (
    Row,
    columns_of,
    decode_part,
    encode_part,
    render_files,
    render_pool,
    row_of,
    sheet_filenames,
)
from services.runtime.errors import NotFound, Unavailable

log = logging.getLogger("chatmesh.forms.sheets")

_LISTINGS = 5
"""Listings of a form's parts one refresh makes at most while parts vanish under it."""


MERGED = "merged"
"""Name prefix of a compacted part: ``merged<level>-<first submission id>-<worker>-<pid>-<ns>.jsonl``."""


def part_level(name: str) -> int:
    """A part's compaction level from its name: 0 for a batch's part."""
    if name.startswith(MERGED):
        digits = name[len(MERGED) :].split("-", 1)[0]
        if digits.isdigit():
            return int(digits)
    return 0


@dataclass
class _FormRows:
    """What this process knows of one form's committed rows."""

    parts: dict[str, list[str]] = field(default_factory=dict)
    """Each part read or written, with the submission ids it holds."""
    rows: dict[str, Row] = field(default_factory=dict)
    dirty: bool = True
    rendered_at: float = -1e9
    render_s: float = 0.0
    touched_at: float = field(default_factory=time.monotonic)


def make_sheet_files(context: ConsumerContext) -> SheetFiles:
    """The sheets target the settings name."""
    s = context.settings.sheets
    if s.target == "s3":
        return S3SheetFiles(context.objects.bucket(s.endpoint, s.bucket), s.prefix)
    return LocalSheetFiles(s.directory)


class SheetsConsumer(Consumer):
    """Batches rows into one spreadsheet per form, exactly once per submission."""

    name = "sheets"
    description = "Appends rows in batches to a spreadsheet per form (XLSX and CSV; local directory or S3)."
    ack_wait_s = 120.0
    parallel_batches = 1  # one writer of a form's parts per process (see handle's lock)
    backoff_s = (1.0, 5.0, 30.0, 60.0)
    max_deliveries = 10

    def __init__(self, context: ConsumerContext) -> None:
        super().__init__(context)
        s = context.settings.sheets
        self.batch_size = s.flush_rows  # type: ignore[misc]
        self.batch_wait_s = s.flush_interval_s  # type: ignore[misc]
        self.files = make_sheet_files(context)
        self._forms: dict[str, _FormRows] = {}
        self._renderer: asyncio.Task[None] | None = None
        self._worker = context.settings.worker_name
        self._lock = asyncio.Lock()
        self._pool: ProcessPoolExecutor | None = None

    def _render_pool(self) -> ProcessPoolExecutor:
        """The render process, started on first use."""
        if self._pool is None:
            self._pool = render_pool()
        return self._pool

    def _drop_pool(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    async def open(self) -> None:
        if self.context.settings.sheets.target == "s3":
            s = self.context.settings.sheets
            await self.context.objects.bucket(s.endpoint, s.bucket).ensure_exists()
        self._renderer = asyncio.create_task(self._render_loop())

    async def close(self) -> None:
        if self._renderer is not None:
            self._renderer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renderer
        try:
            for form_id in list(self._forms):
                with contextlib.suppress(Exception):
                    await self.render(form_id)
        finally:
            self._drop_pool()

    async def _refresh(self, form_id: str) -> _FormRows:
        """Read the form's parts this process has not seen (another process's, or its own before a restart)."""
        state = self._forms.setdefault(form_id, _FormRows())
        state.touched_at = time.monotonic()
        for _ in range(_LISTINGS):
            vanished = False
            for name in await self.files.list_parts(form_id):
                if name in state.parts:
                    continue
                try:
                    data = await self.files.read_part(form_id, name)
                except (NotFound, FileNotFoundError):
                    vanished = True  # merged away since the listing: the merged part is in the next one
                    continue
                ids = []
                for row in decode_part(data):
                    if row.submission_id not in state.rows:
                        state.rows[row.submission_id] = row
                        state.dirty = True  # a merged part of rows already here changes nothing
                    ids.append(row.submission_id)
                state.parts[name] = ids
            if not vanished:
                return state
        raise Unavailable(f"the sheet parts of form {form_id} kept changing while being read")

    async def handle(self, batch: Sequence[Delivery]) -> Sequence[Outcome]:
        by_form: dict[str, list[Row]] = {}
        for delivery in batch:
            by_form.setdefault(delivery.submission.form_id, []).append(row_of(delivery.submission))
        async with self._lock:
            for form_id, rows in by_form.items():
                state = await self._refresh(form_id)
                new = {r.submission_id: r for r in rows if r.submission_id not in state.rows}
                if not new:
                    continue  # a redelivery of rows a part already holds
                name = f"{min(new)}-{self._worker}-{os.getpid()}-{time.time_ns()}.jsonl"
                await self.files.write_part(form_id, name, encode_part(new.values()))
                state.parts[name] = list(new)
                state.rows.update(new)
                state.dirty = True
        return [DONE] * len(batch)

    async def compact(self, form_id: str) -> None:
        """Merge every level that holds ``compact_fan_in`` parts into one part of the next; parts deleted."""
        fan_in = self.context.settings.sheets.compact_fan_in
        while True:
            async with self._lock:
                state = self._forms.get(form_id)
                if state is None:
                    return
                levels: dict[int, list[str]] = {}
                for name in state.parts:
                    levels.setdefault(part_level(name), []).append(name)
                full = sorted(level for level, names in levels.items() if len(names) >= fan_in)
                if not full:
                    return
                level = full[0]
                merging = sorted(levels[level])
                ids = sorted({i for name in merging for i in state.parts[name]})
                rows = [state.rows[i] for i in ids]
            # Encoded in the render process (a merge of high levels is megabytes of JSON), lock released.
            data = await asyncio.get_running_loop().run_in_executor(self._render_pool(), encode_part, rows)
            merged = f"{MERGED}{level + 1}-{ids[0]}-{self._worker}-{os.getpid()}-{time.time_ns()}.jsonl"
            await self.files.write_part(form_id, merged, data)
            async with self._lock:
                state.parts[merged] = ids
                for name in merging:
                    state.parts.pop(name, None)
            for name in merging:  # only now: every row of theirs is in a listed part
                await self.files.delete_part(form_id, name)

    async def render(self, form_id: str) -> None:
        """Write the form's spreadsheets from every committed row (one row per submission, in order)."""
        async with self._lock:  # the rows as of now; commits go on while they are rendered
            state = await self._refresh(form_id)
            state.dirty = False
            rows = [state.rows[k] for k in sorted(state.rows)]
        started = state.rendered_at = time.monotonic()
        live = None
        with contextlib.suppress(Exception):
            live = await self.context.definitions.get(form_id)
        sheets = self.context.settings.sheets
        loop = asyncio.get_running_loop()
        for index, start in enumerate(range(0, max(1, len(rows)), sheets.max_rows_per_sheet)):
            chunk = rows[start : start + sheets.max_rows_per_sheet]
            columns = columns_of(live, chunk)
            title = live.title if live is not None else form_id
            try:
                files = await loop.run_in_executor(
                    self._render_pool(), render_files, title, columns, chunk, tuple(sheets.formats)
                )
            except BrokenProcessPool:
                self._drop_pool()  # the render process died (killed, out of memory): a new one next time
                raise
            xlsx_name, csv_name = sheet_filenames(index)
            for fmt, name in (("xlsx", xlsx_name), ("csv", csv_name)):
                if fmt in files:
                    await self.files.write_file(form_id, name, files[fmt])
        state.render_s = time.monotonic() - started

    async def _render_loop(self) -> None:
        interval = self.context.settings.sheets.render_interval_s
        share = self.context.settings.sheets.render_cpu_share
        while True:
            await asyncio.sleep(max(0.05, interval / 4))
            now = time.monotonic()
            for form_id, state in list(self._forms.items()):
                try:
                    await self.compact(form_id)
                except Exception:  # noqa: BLE001 - nothing is lost: the parts are merged next round
                    log.exception("sheet parts compaction failed", extra={"form_id": form_id})
                if state.dirty and now - state.rendered_at >= max(interval, state.render_s / share):
                    try:
                        await self.render(form_id)
                    except Exception:  # noqa: BLE001 - the rows are committed; the next round renders again
                        state.dirty = True
                        log.exception("sheet render failed", extra={"form_id": form_id})
                self._forget_if_idle(form_id, time.monotonic())

    def _forget_if_idle(self, form_id: str, now: float) -> None:
        """Drop a form's rows from memory once rendered and untouched for ``forget_idle_s``.

        A batch or merge still holding the dropped record finishes on it; the next refresh reads
        the form's parts afresh, theirs among them.
        """
        state = self._forms.get(form_id)
        idle_s = self.context.settings.sheets.forget_idle_s
        if state is not None and not state.dirty and now - state.touched_at >= idle_s:
            del self._forms[form_id]

"""Rows of submissions, and the spreadsheets made of them: XLSX (XlsxWriter) and CSV.

A row keeps each value's type: numbers stay numbers, booleans booleans, dates dates, so
a spreadsheet program can sort and sum them. Text is never a formula: the workbook
writes every string as a string, and a CSV cell that a spreadsheet would run as a formula
(starting with ``= + - @``) gets a leading apostrophe (OWASP's CSV-injection advice).
No gRPC here.
"""

from __future__ import annotations

import csv
import io
import json
import multiprocessing
import os
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import xlsxwriter

from chatmesh.forms.v1 import forms_pb2 as pb

FIXED = ("submission_id", "submitted_at", "form_version", "submitter_user_id")
FIXED_LABELS = ("Submission", "Submitted at (UTC)", "Form version", "Submitter")
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

Cell = str | float | int | bool | list[str] | None


@dataclass(frozen=True)
class Row:
    """One submission as a sheet row."""

    submission_id: str
    created_ms: int
    form_version: int
    submitter_user_id: str
    values: dict[str, Cell]


def row_of(submission: pb.Submission) -> Row:
    """The row of a submission."""
    values: dict[str, Cell] = {}
    for key, value in submission.values.items():
        kind = value.WhichOneof("kind")
        if kind == "choices":
            values[key] = list(value.choices.values)
        elif kind is not None:
            values[key] = getattr(value, kind)
    created_ms = submission.created_at.seconds * 1000 + submission.created_at.nanos // 1_000_000
    return Row(submission.submission_id, created_ms, submission.form_version, submission.submitter_user_id, values)


def encode_part(rows: Iterable[Row]) -> bytes:
    """A committed part: one JSON object per row."""
    lines = [
        json.dumps(
            {
                "id": r.submission_id,
                "at": r.created_ms,
                "v": r.form_version,
                "by": r.submitter_user_id,
                "values": r.values,
            },
            ensure_ascii=False,
            separators=(",", ":"),
        )
        for r in rows
    ]
    return ("\n".join(lines) + "\n").encode()


def decode_part(data: bytes) -> list[Row]:
    """The rows of a part (a line cut short by a crash is skipped: its part was never committed)."""
    rows = []
    for line in data.decode().splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue
        rows.append(Row(item["id"], int(item["at"]), int(item["v"]), item["by"], dict(item["values"])))
    return rows


@dataclass(frozen=True)
class Column:
    """A value column: the field's key, its label and its type."""

    key: str
    label: str
    type: int


def columns_of(form: pb.Form | None, rows: Sequence[Row]) -> list[Column]:
    """The form's fields in its order, then any key seen only in older versions' rows."""
    columns = [Column(f.key, f.label, f.type) for f in form.fields] if form is not None else []
    known = {c.key for c in columns}
    for row in rows:
        for key in row.values:
            if key not in known:
                known.add(key)
                columns.append(Column(key, key, pb.FIELD_TYPE_UNSPECIFIED))
    return columns


def _text(value: Cell) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _safe_csv(text: str) -> str:
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def _submitted_at(row: Row) -> datetime:
    return datetime.fromtimestamp(row.created_ms / 1000, UTC).replace(tzinfo=None)


def render_csv(columns: Sequence[Column], rows: Sequence[Row]) -> bytes:
    """A CSV file (UTF-8 with a BOM, so spreadsheet programs read it as UTF-8); header = keys."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([*FIXED, *(c.key for c in columns)])
    for row in rows:
        fixed = [row.submission_id, _submitted_at(row).isoformat(sep=" ", timespec="milliseconds"),
                 str(row.form_version), row.submitter_user_id]  # fmt: skip
        writer.writerow([*fixed, *(_safe_csv(_text(row.values.get(c.key))) for c in columns)])
    return ("\ufeff" + out.getvalue()).encode()


def render_xlsx(title: str, columns: Sequence[Column], rows: Sequence[Row]) -> bytes:
    """An XLSX workbook with one sheet; header = field labels; typed cells."""
    out = io.BytesIO()
    book = xlsxwriter.Workbook(
        out,
        {
            "in_memory": True,
            "constant_memory": True,
            "strings_to_formulas": False,
            "strings_to_urls": False,
            "strings_to_numbers": False,
        },
    )
    sheet = book.add_worksheet((title or "Submissions")[:31].translate(str.maketrans("[]:*?/\\", "       ")))
    bold = book.add_format({"bold": True})
    stamp = book.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
    day = book.add_format({"num_format": "yyyy-mm-dd"})
    for index, label in enumerate([*FIXED_LABELS, *(c.label for c in columns)]):
        sheet.write_string(0, index, label, bold)
    for r, row in enumerate(rows, start=1):
        sheet.write_string(r, 0, row.submission_id)
        sheet.write_datetime(r, 1, _submitted_at(row), stamp)
        sheet.write_number(r, 2, row.form_version)
        sheet.write_string(r, 3, row.submitter_user_id)
        for c, column in enumerate(columns, start=len(FIXED)):
            value = row.values.get(column.key)
            _write_cell(sheet, r, c, column, value, day)
    sheet.freeze_panes(1, 0)
    book.close()
    return out.getvalue()


def _write_cell(sheet: Any, r: int, c: int, column: Column, value: Cell, day: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool):
        sheet.write_boolean(r, c, value)
    elif isinstance(value, int | float):
        sheet.write_number(r, c, value)
    elif isinstance(value, list):
        sheet.write_string(r, c, ", ".join(value))
    elif column.type == pb.FIELD_TYPE_DATE:
        try:
            sheet.write_datetime(r, c, datetime.combine(date.fromisoformat(value), datetime.min.time()), day)
        except ValueError:
            sheet.write_string(r, c, value)
    else:
        sheet.write_string(r, c, value)


def sheet_filenames(index: int) -> tuple[str, str]:
    """The XLSX and CSV names of the ``index``-th file of a form (from 0)."""
    suffix = "" if index == 0 else f"-{index + 1}"
    return f"sheet{suffix}.xlsx", f"sheet{suffix}.csv"


def render_files(
    title: str, columns: Sequence[Column], rows: Sequence[Row], formats: Sequence[str]
) -> dict[str, bytes]:
    """One file's contents per format (``xlsx``, ``csv``): what a render process is handed to do."""
    files: dict[str, bytes] = {}
    if "xlsx" in formats:
        files["xlsx"] = render_xlsx(title, columns, rows)
    if "csv" in formats:
        files["csv"] = render_csv(columns, rows)
    return files


RENDER_NICENESS = 10
"""How much lower the render process's CPU priority is than its worker's (``nice``): on a busy
machine the consumers' commits go first and a spreadsheet is refreshed a little later
(its rows are committed in their parts already; rendering is background work)."""


def render_pool() -> ProcessPoolExecutor:
    """One render process, spawned (not forked: a worker runs threads), ended with its parent, niced."""
    return ProcessPoolExecutor(
        max_workers=1,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=start_render_process,
        initargs=(os.getpid(), RENDER_NICENESS),
    )


def start_render_process(parent_pid: int, niceness: int) -> None:
    """In a render process: lower its priority by ``niceness``, and end it with its worker."""
    os.nice(niceness)
    exit_with_parent(parent_pid)


def exit_with_parent(parent_pid: int) -> None:
    """In a render process: end it once the worker that started it is gone (even SIGKILLed)."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()

"""Receiving ``multipart/form-data`` uploads as they stream in.

python-multipart parses the body chunk by chunk as it arrives; each file part is written straight
to its place in the server's folder (``--tmp-dir``), never spooled to the system's temporary
folder, and refused as soon as it passes the upload limit, whether the client sent a
``Content-Length`` or not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import anyio
from python_multipart import MultipartParser
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import parse_options_header

MAX_FIELDS = 32
MAX_FIELD_BYTES = 16 << 10


class MalformedBody(Exception):
    """The body is not the multipart form the endpoint documents (HTTP 400)."""


@dataclass
class ReceivedFile:
    field: str
    filename: str
    path: Path
    size: int = 0
    token: object = None  # what ``open_file`` gave for it (the reserved upload)


@dataclass
class ReceivedForm:
    fields: dict[str, str] = field(default_factory=dict)
    files: list[ReceivedFile] = field(default_factory=list)


async def receive_form(request, *, open_file: Callable[[str, int], tuple[Path, object]],
                       discard: Callable[[object], None], file_limit: int, too_large: Callable[[str, int], Exception],
                       max_files: int = 64) -> ReceivedForm:
    """Parse the request's multipart body. ``open_file(filename, index)`` -> (path to write,
    token) is called for each file part (it may raise to refuse the file); ``too_large(filename,
    size)`` makes the error raised when a file passes ``file_limit`` bytes; ``discard(token)``
    removes what was written when anything fails."""
    ctype = request.headers.get("content-type", "")
    kind, params = parse_options_header(ctype)
    if kind != b"multipart/form-data" or b"boundary" not in params:
        raise MalformedBody("the body must be multipart/form-data (an HTML form with files)")
    form = ReceivedForm()
    state = {"part": None, "headers": {}, "hname": b"", "hvalue": b"", "data": bytearray(),
             "fh": None, "file": None, "handles": []}
    pending: list[tuple[object, bytes]] = []  # file writes, done off the event loop

    def on_part_begin():
        state.update(headers={}, data=bytearray(), file=None, fh=None)

    def on_header_field(data, start, end):
        state["hname"] += data[start:end]

    def on_header_value(data, start, end):
        state["hvalue"] += data[start:end]

    def on_header_end():
        state["headers"][state["hname"].lower()] = state["hvalue"]
        state["hname"], state["hvalue"] = b"", b""

    def on_headers_finished():
        _, opts = parse_options_header(state["headers"].get(b"content-disposition", b""))
        if b"name" not in opts:
            raise MalformedBody("a form part has no name")
        name = opts[b"name"].decode("utf-8", "replace")
        if b"filename" in opts:
            if len(form.files) >= max_files:
                raise MalformedBody(f"more than {max_files} files in one request")
            filename = opts[b"filename"].decode("utf-8", "replace")
            path, token = open_file(filename, len(form.files))
            rf = ReceivedFile(field=name, filename=filename, path=path, token=token)
            form.files.append(rf)
            state["file"], state["fh"] = rf, open(path, "wb")
            state["handles"].append(state["fh"])
        else:
            if len(form.fields) >= MAX_FIELDS:
                raise MalformedBody(f"more than {MAX_FIELDS} form fields")
            state["name"] = name

    def on_part_data(data, start, end):
        chunk = bytes(data[start:end])
        rf = state["file"]
        if rf is None:
            state["data"] += chunk
            if len(state["data"]) > MAX_FIELD_BYTES:
                raise MalformedBody(f"a form field is longer than {MAX_FIELD_BYTES >> 10} kB")
            return
        rf.size += len(chunk)
        if rf.size > file_limit:
            raise too_large(rf.filename, rf.size)
        pending.append((state["fh"], chunk))

    def on_part_end():
        if state["file"] is None:
            form.fields[state["name"]] = state["data"].decode("utf-8", "replace")
        else:
            pending.append((state["fh"], None))  # close after the last write

    parser = MultipartParser(params[b"boundary"], {
        "on_part_begin": on_part_begin, "on_part_data": on_part_data, "on_part_end": on_part_end,
        "on_header_field": on_header_field, "on_header_value": on_header_value,
        "on_header_end": on_header_end, "on_headers_finished": on_headers_finished})

    def flush(writes):
        for fh, chunk in writes:
            if chunk is None:
                fh.close()
            else:
                fh.write(chunk)

    try:
        async for chunk in request.stream():
            parser.write(chunk)
            if pending:
                writes = pending[:]
                pending.clear()
                await anyio.to_thread.run_sync(flush, writes)
        parser.finalize()
        flush(pending)
        pending.clear()
    except FormParserError:
        _cleanup(form, state, discard)
        raise MalformedBody("the multipart body is malformed") from None
    except BaseException:
        _cleanup(form, state, discard)
        raise
    return form


def _cleanup(form: ReceivedForm, state: dict, discard) -> None:
    for fh in state["handles"]:
        if not fh.closed:
            fh.close()
    for rf in form.files:
        discard(rf.token)

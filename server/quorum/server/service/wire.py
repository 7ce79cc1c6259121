"""Where in a request's bytes a string is not UTF-8: the field path for the error.

protobuf refuses such a message as a whole ("error parsing message"); a caller deserves
to be told which field. This walks the wire format against the message's descriptor —
only on that error path — and names the first string field whose bytes do not decode,
as ``messages[2].content``. Bytes that are not a message at all give ``None``.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import FieldDescriptor

_MAX_DEPTH = 32


class _Malformed(Exception):
    """The bytes end early or use a wire type protobuf does not have."""


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise _Malformed
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def bad_utf8_field(data: bytes, descriptor: Any, prefix: str = "") -> str | None:
    """The path of the first string field in ``data`` that is not valid UTF-8
    (``descriptor``: the message's, either protobuf runtime's ``Descriptor``)."""
    try:
        return _walk(data, descriptor, prefix, 0)
    except _Malformed:
        return None


def _walk(data: bytes, descriptor: Any, path: str, depth: int) -> str | None:
    if depth > _MAX_DEPTH:
        return None
    seen: dict[int, int] = {}  # field number -> occurrences so far (repeated indexes)
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            _, pos = _varint(data, pos)
            continue
        if wire_type == 1 or wire_type == 5:
            pos += 8 if wire_type == 1 else 4
            if pos > len(data):
                raise _Malformed
            continue
        if wire_type != 2:
            raise _Malformed
        size, pos = _varint(data, pos)
        end = pos + size
        if end > len(data):
            raise _Malformed
        chunk, pos = data[pos:end], end
        field = descriptor.fields_by_number.get(number)
        if field is None:
            continue
        index = seen.get(number, 0)
        seen[number] = index + 1
        name = f"{path}.{field.name}" if path else field.name
        if field.is_repeated:
            name = f"{name}[{index}]"
        if field.type == FieldDescriptor.TYPE_STRING:
            try:
                chunk.decode("utf-8")
            except UnicodeDecodeError:
                return name
        elif field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type is not None:
            found = _walk(chunk, field.message_type, name, depth + 1)
            if found is not None:
                return found
    return None

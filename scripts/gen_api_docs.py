"""Render the API reference (docs/api.md) from the comments in protos/.

The protos are compiled with ``buf build -o`` into a FileDescriptorSet that keeps source info
(comments and spans); this script reads it with protobuf and writes Markdown: services and their
RPCs, then messages with field tables, then enums, each in alphabetical order with anchors.
The output depends only on the protos, so ``scripts/check_generated.sh`` can catch drift.

Usage: gen_api_docs.py [--buf PATH] [--descriptor-set FILE] [--out FILE]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import descriptor_pb2

ROOT = Path(__file__).resolve().parent.parent

# Field numbers in descriptor.proto, used to address comments in SourceCodeInfo.
_FILE_MESSAGE, _FILE_ENUM, _FILE_SERVICE = 4, 5, 6
_MESSAGE_FIELD, _MESSAGE_NESTED, _MESSAGE_ENUM, _MESSAGE_ONEOF = 2, 3, 4, 8
_ENUM_VALUE, _SERVICE_METHOD = 2, 2

FDP = descriptor_pb2.FieldDescriptorProto
_SCALARS = {
    FDP.TYPE_DOUBLE: "double",
    FDP.TYPE_FLOAT: "float",
    FDP.TYPE_INT64: "int64",
    FDP.TYPE_UINT64: "uint64",
    FDP.TYPE_INT32: "int32",
    FDP.TYPE_FIXED64: "fixed64",
    FDP.TYPE_FIXED32: "fixed32",
    FDP.TYPE_BOOL: "bool",
    FDP.TYPE_STRING: "string",
    FDP.TYPE_BYTES: "bytes",
    FDP.TYPE_UINT32: "uint32",
    FDP.TYPE_SFIXED32: "sfixed32",
    FDP.TYPE_SFIXED64: "sfixed64",
    FDP.TYPE_SINT32: "sint32",
    FDP.TYPE_SINT64: "sint64",
}


@dataclass(frozen=True)
class Comments:
    """Comments of one file, keyed by SourceCodeInfo path."""

    by_path: dict[tuple[int, ...], str]

    @classmethod
    def of(cls, file: descriptor_pb2.FileDescriptorProto) -> Comments:
        by_path = {}
        for loc in file.source_code_info.location:
            text = loc.leading_comments.strip() or loc.trailing_comments.strip()
            if text:
                by_path[tuple(loc.path)] = " ".join(line.strip() for line in text.splitlines())
        return cls(by_path)

    def get(self, *path: int) -> str:
        return self.by_path.get(path, "")


@dataclass(frozen=True)
class Entry:
    """A message or enum with its full name, file comments and comment path."""

    full_name: str
    proto: descriptor_pb2.DescriptorProto | descriptor_pb2.EnumDescriptorProto
    comments: Comments
    path: tuple[int, ...]


def anchor(full_name: str) -> str:
    return full_name.replace(".", "").lower()


def heading(full_name: str) -> list[str]:
    """A type's heading, with an anchor on its full name (short names may repeat)."""
    name = full_name.lstrip(".")
    return [f"### {name.rsplit('.', 1)[-1]}", "", f'<a id="{anchor(full_name)}"></a>`{name}`', ""]


def cell(text: str) -> str:
    """Make text safe inside a Markdown table cell."""
    return text.replace("|", "\\|")


def walk_messages(
    prefix: str,
    messages: list[descriptor_pb2.DescriptorProto],
    comments: Comments,
    path: tuple[int, ...],
    msg_tag: int,
) -> Iterator[Entry]:
    for i, msg in enumerate(messages):
        if msg.options.map_entry:
            continue
        full = f"{prefix}.{msg.name}"
        msg_path = (*path, msg_tag, i)
        yield Entry(full, msg, comments, msg_path)
        yield from walk_messages(full, list(msg.nested_type), comments, msg_path, _MESSAGE_NESTED)


def walk_enums(
    prefix: str,
    file_or_msg: descriptor_pb2.FileDescriptorProto | descriptor_pb2.DescriptorProto,
    comments: Comments,
    path: tuple[int, ...],
) -> Iterator[Entry]:
    if isinstance(file_or_msg, descriptor_pb2.FileDescriptorProto):
        enum_tag, msg_tag, messages = _FILE_ENUM, _FILE_MESSAGE, list(file_or_msg.message_type)
    else:
        enum_tag, msg_tag, messages = _MESSAGE_ENUM, _MESSAGE_NESTED, list(file_or_msg.nested_type)
    for i, enum in enumerate(file_or_msg.enum_type):
        yield Entry(f"{prefix}.{enum.name}", enum, comments, (*path, enum_tag, i))
    for i, msg in enumerate(messages):
        yield from walk_enums(f"{prefix}.{msg.name}", msg, comments, (*path, msg_tag, i))


class Renderer:
    def __init__(self, files: list[descriptor_pb2.FileDescriptorProto]) -> None:
        self.files = files
        self.messages: dict[str, Entry] = {}
        self.enums: dict[str, Entry] = {}
        self.map_entries: dict[str, descriptor_pb2.DescriptorProto] = {}
        for f in files:
            comments = Comments.of(f)
            pkg = f".{f.package}" if f.package else ""
            for e in walk_messages(pkg, list(f.message_type), comments, (), _FILE_MESSAGE):
                self.messages[e.full_name] = e
                assert isinstance(e.proto, descriptor_pb2.DescriptorProto)
                for nested in e.proto.nested_type:
                    if nested.options.map_entry:
                        self.map_entries[f"{e.full_name}.{nested.name}"] = nested
            for e in walk_enums(pkg, f, comments, ()):
                self.enums[e.full_name] = e

    def type_ref(self, type_name: str) -> str:
        if type_name in self.messages or type_name in self.enums:
            return f"[`{type_name.lstrip('.').rsplit('.', 1)[-1]}`](#{anchor(type_name)})"
        return f"`{type_name.lstrip('.')}`"

    def field_type(self, field: descriptor_pb2.FieldDescriptorProto) -> str:
        if field.type_name in self.map_entries:
            entry = self.map_entries[field.type_name]
            key, value = entry.field[0], entry.field[1]
            return f"map<{self.field_type(key)}, {self.field_type(value)}>"
        if field.type in (FDP.TYPE_MESSAGE, FDP.TYPE_ENUM):
            return self.type_ref(field.type_name)
        return f"`{_SCALARS[field.type]}`"

    def render(self) -> str:
        packages = sorted({f.package for f in self.files})
        out = [
            f"# API reference: {', '.join(f'`{p}`' for p in packages)}",
            "",
            "<!-- Generated from protos/ by scripts/gen_api_docs.py. Do not edit. -->",
            "",
            "Files: " + ", ".join(f"`protos/{f.name}`" for f in self.files) + ".",
            "",
            "- [Services](#services)",
            "- [Messages](#messages)",
            "- [Enums](#enums)",
            "",
            "## Services",
            "",
        ]
        for f in self.files:
            comments = Comments.of(f)
            for si, svc in enumerate(f.service):
                out += self.render_service(f, svc, comments, si)
        out += ["## Messages", ""]
        for name in sorted(self.messages, key=lambda n: n.lower()):
            out += self.render_message(self.messages[name])
        out += ["## Enums", ""]
        for name in sorted(self.enums, key=lambda n: n.lower()):
            out += self.render_enum(self.enums[name])
        while out and out[-1] == "":
            out.pop()
        return "\n".join(out) + "\n"

    def render_service(
        self,
        file: descriptor_pb2.FileDescriptorProto,
        svc: descriptor_pb2.ServiceDescriptorProto,
        comments: Comments,
        index: int,
    ) -> list[str]:
        full = f"{file.package}.{svc.name}"
        out = [f"### {svc.name}", "", f"`{full}`", ""]
        if text := comments.get(_FILE_SERVICE, index):
            out += [text, ""]
        out += ["| RPC | Request | Response | Description |", "| --- | --- | --- | --- |"]
        for mi, method in enumerate(svc.method):
            req = self.type_ref(method.input_type)
            resp = self.type_ref(method.output_type)
            if method.client_streaming:
                req = f"stream {req}"
            if method.server_streaming:
                resp = f"stream {resp}"
            text = comments.get(_FILE_SERVICE, index, _SERVICE_METHOD, mi)
            out.append(f"| `{method.name}` | {req} | {resp} | {cell(text)} |")
        return [*out, ""]

    def render_message(self, entry: Entry) -> list[str]:
        msg = entry.proto
        assert isinstance(msg, descriptor_pb2.DescriptorProto)
        out = heading(entry.full_name)
        if text := entry.comments.get(*entry.path):
            out += [text, ""]
        if not msg.field:
            return [*out, "No fields.", ""]
        real_oneofs = {
            f.oneof_index for f in msg.field if f.HasField("oneof_index") and not f.proto3_optional
        }
        out += [
            "| Field | Number | Type | Label | Description |",
            "| --- | --- | --- | --- | --- |",
        ]
        for fi, field in enumerate(msg.field):
            if field.label == FDP.LABEL_REPEATED and field.type_name not in self.map_entries:
                label = "repeated"
            elif field.proto3_optional:
                label = "optional"
            elif field.HasField("oneof_index") and field.oneof_index in real_oneofs:
                label = f"oneof `{msg.oneof_decl[field.oneof_index].name}`"
            else:
                label = ""
            text = entry.comments.get(*entry.path, _MESSAGE_FIELD, fi)
            kind = self.field_type(field)
            out.append(f"| `{field.name}` | {field.number} | {kind} | {label} | {cell(text)} |")
        return [*out, ""]

    def render_enum(self, entry: Entry) -> list[str]:
        enum = entry.proto
        assert isinstance(enum, descriptor_pb2.EnumDescriptorProto)
        out = heading(entry.full_name)
        if text := entry.comments.get(*entry.path):
            out += [text, ""]
        out += ["| Value | Number | Description |", "| --- | --- | --- |"]
        for vi, value in enumerate(enum.value):
            text = entry.comments.get(*entry.path, _ENUM_VALUE, vi)
            deprecated = " **Deprecated.**" if value.options.deprecated else ""
            out.append(f"| `{value.name}` | {value.number} | {cell(text)}{deprecated} |")
        return [*out, ""]


def build_descriptor_set(buf: str, out: Path) -> None:
    subprocess.run([buf, "build", "--exclude-imports", "-o", str(out)], cwd=ROOT, check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Render docs/api.md from the proto comments.")
    parser.add_argument("--buf", default=str(ROOT / ".tools/node_modules/.bin/buf"))
    parser.add_argument("--descriptor-set", type=Path, help="use this buf build output")
    parser.add_argument("--out", type=Path, default=ROOT / "docs/api.md")
    args = parser.parse_args(argv)

    fds = descriptor_pb2.FileDescriptorSet()
    if args.descriptor_set:
        fds.ParseFromString(args.descriptor_set.read_bytes())
    else:
        with tempfile.TemporaryDirectory() as tmp:
            image = Path(tmp) / "api.binpb"
            build_descriptor_set(args.buf, image)
            fds.ParseFromString(image.read_bytes())
    files = sorted(fds.file, key=lambda f: f.name)
    if not any(f.source_code_info.location for f in files):
        print(
            "descriptor set has no source info: build it without --exclude-source-info",
            file=sys.stderr,
        )
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(Renderer(files).render(), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A minimal proto2 ``.proto`` parser: text → ``FileDescriptorProto`` → message classes (no protoc needed).

Enough of the language for Caffe's ``caffe.proto``: ``syntax``, ``package``, ``option`` (ignored),
messages and enums (nested), ``optional``/``required``/``repeated`` fields of scalar, string, bytes, enum
and message types, the field options ``[default = ...]`` and ``[packed = true]`` (others ignored),
``reserved`` and ``//`` / ``/* */`` comments. Type names resolve as protoc does: from the innermost
enclosing scope outwards. ``load_messages(path)`` returns ``{full name without package: class}``.
"""

from __future__ import annotations

import re
from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from ..errors import ModelLoadError

F = descriptor_pb2.FieldDescriptorProto
SCALARS = {
    "double": F.TYPE_DOUBLE, "float": F.TYPE_FLOAT, "int64": F.TYPE_INT64, "uint64": F.TYPE_UINT64,
    "int32": F.TYPE_INT32, "fixed64": F.TYPE_FIXED64, "fixed32": F.TYPE_FIXED32, "bool": F.TYPE_BOOL,
    "string": F.TYPE_STRING, "bytes": F.TYPE_BYTES, "uint32": F.TYPE_UINT32, "sfixed32": F.TYPE_SFIXED32,
    "sfixed64": F.TYPE_SFIXED64, "sint32": F.TYPE_SINT32, "sint64": F.TYPE_SINT64,
}
LABELS = {"optional": F.LABEL_OPTIONAL, "required": F.LABEL_REQUIRED, "repeated": F.LABEL_REPEATED}
TOKEN = re.compile(r"""\s+|//[^\n]*|/\*.*?\*/|(?P<tok>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|"""
                   r"""[A-Za-z_][\w.]*|\.[A-Za-z_][\w.]*|[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[{}\[\]=;<>,()])""",
                   re.DOTALL)


class _Tokens:
    def __init__(self, text: str, path: str):
        self.path, self.items, pos, line = path, [], 0, 1
        while pos < len(text):
            m = TOKEN.match(text, pos)
            if m is None:
                raise ModelLoadError(f"{path}:{line}: unexpected character {text[pos]!r}")
            if m.group("tok") is not None:
                self.items.append((m.group("tok"), line))
            line += m.group(0).count("\n")
            pos = m.end()
        self.i = 0

    def peek(self) -> str | None:
        return self.items[self.i][0] if self.i < len(self.items) else None

    def next(self) -> str:
        if self.i >= len(self.items):
            raise ModelLoadError(f"{self.path}: unexpected end of file")
        self.i += 1
        return self.items[self.i - 1][0]

    def expect(self, token: str) -> None:
        got = self.next()
        if got != token:
            raise self.error(f"expected {token!r}, got {got!r}")

    def error(self, message: str) -> ModelLoadError:
        line = self.items[min(self.i, len(self.items)) - 1][1] if self.items else 1
        return ModelLoadError(f"{self.path}:{line}: {message}")


def _unquote(token: str) -> str:
    if token[:1] in "\"'":
        return bytes(token[1:-1], "utf-8").decode("unicode_escape")
    return token


def _skip_statement(t: _Tokens) -> None:
    while t.next() != ";":
        pass


def _parse_enum(t: _Tokens) -> descriptor_pb2.EnumDescriptorProto:
    enum = descriptor_pb2.EnumDescriptorProto(name=t.next())
    t.expect("{")
    while (tok := t.next()) != "}":
        if tok in ("option", "reserved"):
            _skip_statement(t)
            continue
        if tok == ";":
            continue
        t.expect("=")
        enum.value.add(name=tok, number=int(t.next(), 0))
        if t.peek() == "[":
            while t.next() != "]":
                pass
        t.expect(";")
    return enum


def _parse_message(t: _Tokens) -> descriptor_pb2.DescriptorProto:
    msg = descriptor_pb2.DescriptorProto(name=t.next())
    t.expect("{")
    while (tok := t.next()) != "}":
        if tok == "message":
            msg.nested_type.append(_parse_message(t))
        elif tok == "enum":
            msg.enum_type.append(_parse_enum(t))
        elif tok in ("option", "reserved", "extensions"):
            _skip_statement(t)
        elif tok == ";":
            continue
        elif tok in LABELS:
            type_name, name = t.next(), t.next()
            t.expect("=")
            field = msg.field.add(name=name, number=int(t.next(), 0), label=LABELS[tok])
            if type_name in SCALARS:
                field.type = SCALARS[type_name]
            else:
                field.type_name = type_name     # resolved after the whole file is read
            if t.peek() == "[":
                t.next()
                while True:
                    option = t.next()
                    t.expect("=")
                    value = t.next()
                    if option == "default":
                        field.default_value = _unquote(value)
                    elif option == "packed":
                        field.options.packed = value == "true"
                    if (sep := t.next()) == "]":
                        break
                    if sep != ",":
                        raise t.error(f"expected ',' or ']' in field options, got {sep!r}")
            t.expect(";")
        else:
            raise t.error(f"unsupported statement {tok!r} in message {msg.name}")
    return msg


def parse_proto(text: str, path: str = "<proto>") -> descriptor_pb2.FileDescriptorProto:
    """Parse proto2 source into a FileDescriptorProto with every type name resolved to its full name."""
    t = _Tokens(text, path)
    fdp = descriptor_pb2.FileDescriptorProto(name=Path(path).name, syntax="proto2")
    while (tok := t.peek()) is not None:
        t.next()
        if tok == "syntax":
            t.expect("=")
            if _unquote(t.next()) != "proto2":
                raise t.error("only proto2 files are supported")
            t.expect(";")
        elif tok == "package":
            fdp.package = t.next()
            t.expect(";")
        elif tok in ("option", "import"):
            _skip_statement(t)
        elif tok == "message":
            fdp.message_type.append(_parse_message(t))
        elif tok == "enum":
            fdp.enum_type.append(_parse_enum(t))
        elif tok == ";":
            continue
        else:
            raise t.error(f"unsupported top-level statement {tok!r}")
    _resolve_types(fdp, path)
    return fdp


def _resolve_types(fdp: descriptor_pb2.FileDescriptorProto, path: str) -> None:
    """Every message/enum field's type name → its full name (innermost scope first) and TYPE_ENUM/MESSAGE."""
    kinds: dict[str, bool] = {}
    prefix = f".{fdp.package}" if fdp.package else ""

    def names(msg, scope):
        full = f"{scope}.{msg.name}"
        kinds[full] = False
        for e in msg.enum_type:
            kinds[f"{full}.{e.name}"] = True
        for nested in msg.nested_type:
            names(nested, full)

    def resolve(msg, scope):
        full = f"{scope}.{msg.name}"
        for field in msg.field:
            if not field.type_name:
                continue
            type_name = field.type_name
            if type_name.startswith("."):
                candidates = [type_name]
            else:
                parts = full.split(".")
                candidates = [".".join(parts[:i] + [type_name]) for i in range(len(parts), 0, -1)]
            found = next((c for c in candidates if c in kinds), None)
            if found is None:
                raise ModelLoadError(f"{path}: field {full[1:]}.{field.name}: unknown type {type_name!r}")
            field.type_name = found
            field.type = F.TYPE_ENUM if kinds[found] else F.TYPE_MESSAGE
        for nested in msg.nested_type:
            resolve(nested, full)

    for e in fdp.enum_type:
        kinds[f"{prefix}.{e.name}"] = True
    for m in fdp.message_type:
        names(m, prefix)
    for m in fdp.message_type:
        resolve(m, prefix)


def load_messages(path) -> dict:
    """Message classes of a proto2 file, keyed by name relative to its package (``"NetParameter"``)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ModelLoadError(f"{path}: cannot read the .proto file ({e.strerror or e})") from None
    fdp = parse_proto(text, str(path))
    pool = descriptor_pool.DescriptorPool()
    try:
        pool.AddSerializedFile(fdp.SerializeToString())
        file_desc = pool.FindFileByName(fdp.name)
    except (TypeError, ValueError, KeyError) as e:      # the pool rejects what protoc would
        raise ModelLoadError(f"{path}: invalid proto ({e})") from None
    classes = {}

    def collect(desc, name):
        classes[name] = message_factory.GetMessageClass(desc)
        for nested in desc.nested_types:
            collect(nested, f"{name}.{nested.name}")

    for desc in file_desc.message_types_by_name.values():
        collect(desc, desc.name)
    return classes

"""The Chakra execution-trace schema (``et_def.proto``), built with the protobuf package.

Written from the published schema, field number by field number:
mlcommons/chakra, ``schema/protobuf/et_def.proto`` at commit
6dc63e147b9d115286626cc122459e44d9d08401 (package ``ChakraProtoMsg``,
proto3). The storage-operation messages that file also defines (``StorageInfo``
and its ``FsOp`` / ``PageOp`` / ``BlockOp``, ``Node`` field 11) are left out:
protobuf keeps such fields as unknown fields, and accsim rejects
``STORAGE_NODE``s before it would need them.

No protoc step: the schema is a ``FileDescriptorProto`` built here, added to a
private ``DescriptorPool`` (so an installed ``chakra`` package with the same
names cannot clash) and turned into message classes by
``google.protobuf.message_factory.GetMessageClass`` when this module is
imported. To follow a new upstream schema, edit ``_MESSAGES`` / ``_ENUMS``
below from the new ``et_def.proto`` (numbers must stay as published).

A Chakra ``.et`` file is a ``GlobalMetadata`` message followed by ``Node``
messages, each preceded by its length as a base-128 varint (the framing of
mlcommons/chakra ``src/third_party/utils/protolib.py``, ``encodeMessage`` /
``decodeMessage``). ``read_messages`` and ``write_et`` implement it.
"""

from __future__ import annotations

from typing import BinaryIO, Iterable, Iterator

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

SCHEMA_SOURCE = ("mlcommons/chakra schema/protobuf/et_def.proto "
                 "@ 6dc63e147b9d115286626cc122459e44d9d08401")

_F = descriptor_pb2.FieldDescriptorProto
_SCALARS = {
    "double": _F.TYPE_DOUBLE, "float": _F.TYPE_FLOAT, "int32": _F.TYPE_INT32, "int64": _F.TYPE_INT64,
    "uint32": _F.TYPE_UINT32, "uint64": _F.TYPE_UINT64, "sint32": _F.TYPE_SINT32,
    "sint64": _F.TYPE_SINT64, "fixed32": _F.TYPE_FIXED32, "fixed64": _F.TYPE_FIXED64,
    "sfixed32": _F.TYPE_SFIXED32, "sfixed64": _F.TYPE_SFIXED64, "bool": _F.TYPE_BOOL,
    "string": _F.TYPE_STRING, "bytes": _F.TYPE_BYTES,
}
# AttributeProto's oneof ``value``: (scalar type, its field number); the
# matching ``<Type>List`` is field number + 1 (et_def.proto, fields 3..32).
_ATTRIBUTE_VALUES = [("double", 3), ("float", 5), ("int32", 7), ("int64", 9), ("uint32", 11),
                     ("uint64", 13), ("sint32", 15), ("sint64", 17), ("fixed32", 19),
                     ("fixed64", 21), ("sfixed32", 23), ("sfixed64", 25), ("bool", 27),
                     ("string", 29), ("bytes", 31)]


def _list_name(scalar: str) -> str:
    return {"uint32": "Uint32", "uint64": "Uint64", "sint32": "Sint32", "sint64": "Sint64",
            "sfixed32": "Sfixed32", "sfixed64": "Sfixed64"}.get(scalar, scalar.capitalize()) + "List"


# message -> [(field name, number, type: scalar name | ".ChakraProtoMsg.Msg" | "enum:.X", repeated)]
_MESSAGES: dict[str, list[tuple[str, int, str, bool]]] = {
    "AttributeProto": [("name", 1, "string", False), ("doc_string", 2, "string", False)]
    + [f for scalar, number in _ATTRIBUTE_VALUES
       for f in ((f"{scalar}_val", number, scalar, False),
                 (f"{scalar}_list", number + 1, f".ChakraProtoMsg.{_list_name(scalar)}", False))],
    **{_list_name(scalar): [("values", 1, scalar, True)] for scalar, _ in _ATTRIBUTE_VALUES},
    "GlobalMetadata": [("version", 1, "string", False),
                       ("attr", 2, ".ChakraProtoMsg.AttributeProto", True)],
    "Node": [("id", 1, "uint64", False), ("name", 2, "string", False),
             ("type", 3, "enum:.ChakraProtoMsg.NodeType", False),
             ("ctrl_deps", 4, "uint64", True), ("data_deps", 5, "uint64", True),
             ("start_time_micros", 6, "uint64", False), ("duration_micros", 7, "uint64", False),
             ("inputs", 8, ".ChakraProtoMsg.IOInfo", False),
             ("outputs", 9, ".ChakraProtoMsg.IOInfo", False),
             ("attr", 10, ".ChakraProtoMsg.AttributeProto", True)],
    "IOInfo": [("values", 1, "string", False), ("shapes", 2, "string", False),
               ("types", 3, "string", False)],
    "Tensor": [("tensor_id", 1, "uint64", False), ("storage_id", 2, "uint64", False),
               ("offset", 3, "uint64", False), ("num_elem", 4, "uint64", False),
               ("elem_bytes", 5, "uint64", False), ("device", 6, "string", False)],
}
_ENUMS = {
    "NodeType": ["INVALID_NODE", "METADATA_NODE", "MEM_LOAD_NODE", "MEM_STORE_NODE", "COMP_NODE",
                 "COMM_SEND_NODE", "COMM_RECV_NODE", "COMM_COLL_NODE", "STORAGE_NODE", "BATCH_NODE",
                 "CHECKPOINT_NODE"],
    "CollectiveCommType": ["ALL_REDUCE", "REDUCE", "ALL_GATHER", "GATHER", "SCATTER", "BROADCAST",
                           "ALL_TO_ALL", "REDUCE_SCATTER", "REDUCE_SCATTER_BLOCK", "BARRIER"],
}


def _file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto(name="et_def.proto", package="ChakraProtoMsg",
                                               syntax="proto3")
    for name, values in _ENUMS.items():
        enum = proto.enum_type.add(name=name)
        for number, value in enumerate(values):
            enum.value.add(name=value, number=number)
    for name, fields in _MESSAGES.items():
        message = proto.message_type.add(name=name)
        if name == "AttributeProto":
            message.oneof_decl.add(name="value")
        for field_name, number, kind, repeated in fields:
            field = message.field.add(name=field_name, number=number,
                                      label=_F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL)
            if kind in _SCALARS:
                field.type = _SCALARS[kind]
            elif kind.startswith("enum:"):
                field.type, field.type_name = _F.TYPE_ENUM, kind[5:]
            else:
                field.type, field.type_name = _F.TYPE_MESSAGE, kind
            if name == "AttributeProto" and number >= 3:
                field.oneof_index = 0
    return proto


_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_file_descriptor())
GlobalMetadata = message_factory.GetMessageClass(_POOL.FindMessageTypeByName("ChakraProtoMsg.GlobalMetadata"))
Node = message_factory.GetMessageClass(_POOL.FindMessageTypeByName("ChakraProtoMsg.Node"))
AttributeProto = message_factory.GetMessageClass(_POOL.FindMessageTypeByName("ChakraProtoMsg.AttributeProto"))
IOInfo = message_factory.GetMessageClass(_POOL.FindMessageTypeByName("ChakraProtoMsg.IOInfo"))
NODE_TYPES = dict(enumerate(_ENUMS["NodeType"]))
NODE_TYPE = {name: number for number, name in NODE_TYPES.items()}
COMM_TYPES = dict(enumerate(_ENUMS["CollectiveCommType"]))
COMM_TYPE = {name: number for number, name in COMM_TYPES.items()}


class FramingError(ValueError):
    """A length-delimited stream that ends inside a message or its length."""


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def read_messages(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(offset, payload) of each length-delimited message in ``data``; raises
    FramingError when a length or a payload is cut short."""
    position, end = 0, len(data)
    while position < end:
        start, length, shift = position, 0, 0
        while True:
            if position >= end:
                raise FramingError(f"at byte {start}: the file ends inside a message length")
            byte = data[position]
            position += 1
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
            if shift > 63:
                raise FramingError(f"at byte {start}: a message length longer than 10 bytes")
        if position + length > end:
            raise FramingError(f"at byte {start}: a message of {length} bytes, but only "
                               f"{end - position} bytes are left (truncated file)")
        yield start, data[position:position + length]
        position += length


def write_et(fh: BinaryIO, metadata, nodes: Iterable) -> None:
    """Write a GlobalMetadata and Nodes, each length-delimited, to ``fh``."""
    for message in (metadata, *nodes):
        payload = message.SerializeToString(deterministic=True)
        fh.write(_varint(len(payload)))
        fh.write(payload)


def attr(name: str, **value) -> "AttributeProto":
    """An AttributeProto: ``attr("comm_size", int64_val=1024)``."""
    return AttributeProto(name=name, **value)


def attribute_value(attribute):
    """The value an AttributeProto holds (a scalar or a list), or None."""
    which = attribute.WhichOneof("value")
    if which is None:
        return None
    value = getattr(attribute, which)
    return list(value.values) if which.endswith("_list") else value

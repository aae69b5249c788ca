"""Confluent's schema registry client and serializers, unmodified, against weir's registry (the
HTTP door) and its Kafka door, for the `schemas` integration tests. Each subcommand prints one
JSON object on stdout; a failure exits non-zero with the client's error on stderr.

Libraries: confluent-kafka with its avro, json and protobuf extras (fastavro, jsonschema,
protobuf), installed by examples/setup.sh into weir's kafka-venv.
"""

import argparse
import json
import sys

from confluent_kafka import Consumer, Producer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

AVRO = {
    "type": "record", "name": "OrderCreated", "namespace": "shop",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "customer", "type": "string"},
        {"name": "amount", "type": "double"},
    ],
}
JSON = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "OrderCreated", "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "customer": {"type": "string"},
        "amount": {"type": "number"},
    },
    "required": ["id", "customer", "amount"],
}


def order_class():
    """shop.OrderCreated as a Protobuf class built from a descriptor (no protoc needed)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    f = descriptor_pb2.FileDescriptorProto(name="shop/order.proto", package="shop", syntax="proto3")
    m = f.message_type.add(name="OrderCreated")
    T = descriptor_pb2.FieldDescriptorProto
    for number, (name, kind) in enumerate([("id", T.TYPE_INT64), ("customer", T.TYPE_STRING),
                                           ("amount", T.TYPE_DOUBLE)], start=1):
        m.field.add(name=name, number=number, type=kind, label=T.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(f)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("shop.OrderCreated"))


def registry(args):
    conf = {"url": args.registry}
    if args.auth:
        conf["basic.auth.user.info"] = args.auth
    return SchemaRegistryClient(conf)


def serde(args, sr):
    """(serializer, deserializer, make a value, a value as a dict) for the format."""
    if args.format == "avro":
        from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
        return (AvroSerializer(sr, json.dumps(AVRO)), AvroDeserializer(sr), lambda d: d, lambda v: v)
    if args.format == "json":
        from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer
        return (JSONSerializer(json.dumps(JSON), sr), JSONDeserializer(None, schema_registry_client=sr),
                lambda d: d, lambda v: v)
    from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer, ProtobufSerializer
    cls = order_class()
    to_dict = lambda m: {"id": m.id, "customer": m.customer, "amount": m.amount}
    return (ProtobufSerializer(cls, sr, {"use.deprecated.format": False}),
            ProtobufDeserializer(cls, {"use.deprecated.format": False}), lambda d: cls(**d), to_dict)


def roundtrip(args):
    """Serialize COUNT orders with the format's serializer (auto-registering the schema),
    produce them through the Kafka door, consume them back and deserialize them."""
    sr = registry(args)
    ser, de, make, as_dict = serde(args, sr)
    sent = [{"id": i, "customer": f"c{i % 5}", "amount": i * 1.5} for i in range(args.count)]
    p = Producer({"bootstrap.servers": args.bootstrap, "acks": "all"})
    failed = []
    for d in sent:
        ctx = SerializationContext(args.topic, MessageField.VALUE)
        p.produce(args.topic, value=ser(make(d), ctx), on_delivery=lambda e, m: e and failed.append(str(e)))
        p.poll(0)
    p.flush(30)
    c = Consumer({"bootstrap.servers": args.bootstrap, "group.id": f"check-{args.format}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([args.topic])
    got, ids = [], set()
    while len(got) < len(sent):
        m = c.poll(10)
        if m is None:
            break
        if m.error():
            raise SystemExit(f"consume: {m.error()}")
        ids.add(int.from_bytes(m.value()[1:5], "big"))
        got.append(as_dict(de(m.value(), SerializationContext(args.topic, MessageField.VALUE))))
    c.close()
    got.sort(key=lambda d: d["id"])
    print(json.dumps({"sent": len(sent), "failed": failed[:3], "received": len(got),
                      "equal": got == sent, "ids": sorted(ids), "magic": 0}))


def breaking(args):
    """Register a breaking change of the subject's schema through the client: the error the
    client raises (its code and message)."""
    sr = registry(args)
    if args.format == "avro":
        changed = dict(AVRO, fields=[{"name": "id", "type": "string"}] + AVRO["fields"][1:])
        schema = Schema(json.dumps(changed), "AVRO")
    else:
        changed = dict(JSON, properties=dict(JSON["properties"], id={"type": "string"}))
        schema = Schema(json.dumps(changed), "JSON")
    try:
        sid = sr.register_schema(args.subject, schema)
        print(json.dumps({"registered": sid}))
    except SchemaRegistryError as e:
        print(json.dumps({"status": e.http_status_code, "code": e.error_code, "message": e.error_message}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("command", choices=["roundtrip", "breaking"])
    ap.add_argument("--registry", required=True)
    ap.add_argument("--bootstrap")
    ap.add_argument("--auth")
    ap.add_argument("--format", choices=["avro", "json", "protobuf"], default="avro")
    ap.add_argument("--topic", default="orders")
    ap.add_argument("--subject")
    ap.add_argument("--count", type=int, default=100)
    args = ap.parse_args()
    {"roundtrip": roundtrip, "breaking": breaking}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())

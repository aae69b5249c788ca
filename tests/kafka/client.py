"""Real Kafka clients against weir's Kafka listener, for the `kafka` integration tests and
`weir bench --kafka`. Each subcommand prints one JSON object on stdout; a failure exits
non-zero with the client's error on stderr.

Libraries: confluent-kafka (librdkafka, bundled in its wheel) and kafka-python, installed by
examples/setup.sh into a virtualenv of weir's own.
"""

import argparse
import json
import sys
import time


def conf(args, **extra):
    c = {"bootstrap.servers": args.bootstrap, "client.id": "weir-test"}
    if args.sasl:
        user, password = args.sasl.split(":", 1)
        c.update({"security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": "PLAIN",
                  "sasl.username": user, "sasl.password": password})
    c.update(extra)
    return c


def produce(args):
    """Produce COUNT records `<prefix>-<i>` with key `k<i % 7>` and a header; acks=all and
    idempotence unless told otherwise. Acknowledged values go to --acked as they are
    acknowledged (one per line), so a crash of the server mid-run leaves the list of what
    weir acknowledged."""
    from confluent_kafka import Producer
    p = Producer(conf(args, **{"acks": args.acks, "enable.idempotence": args.idempotent,
                               "linger.ms": 5, "message.timeout.ms": args.timeout_ms}))
    acked_file = open(args.acked, "a", buffering=1) if args.acked else None
    acked, failed = [], []

    def report(err, msg):
        if err is not None:
            failed.append(str(err))
        else:
            acked.append(msg.value().decode())
            if acked_file:
                acked_file.write(msg.value().decode() + "\n")

    header = args.header_value.encode() if args.header_value is not None else b"v"
    if args.binary_header:
        header = b"\xff\xfe"
    for i in range(args.count):
        while True:
            try:
                p.produce(args.topic, key=f"k{i % 7}".encode(), value=f"{args.prefix}-{i}".encode(),
                          headers=[("h", header)], on_delivery=report)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    left = p.flush(args.timeout_ms / 1000 + 5)
    print(json.dumps({"acked": len(acked), "failed": failed[:5], "failures": len(failed), "unflushed": left}))


def consume(args):
    """Consume COUNT records in group GROUP from the start, committing as it goes; prints the
    values and the partitions it was assigned."""
    from confluent_kafka import Consumer
    c = Consumer(conf(args, **{"group.id": args.group, "auto.offset.reset": "earliest",
                               "enable.auto.commit": False, "session.timeout.ms": 6000,
                               "heartbeat.interval.ms": 500}))
    c.subscribe([args.topic])
    values, deadline = [], time.time() + args.timeout_ms / 1000
    while len(values) < args.count and time.time() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            print(json.dumps({"error": str(m.error())}), file=sys.stderr)
            continue
        values.append(m.value().decode())
        c.commit(message=m, asynchronous=False)
    assigned = sorted(tp.partition for tp in c.assignment())
    c.close()
    print(json.dumps({"values": values, "assigned": assigned}))


def rebalance(args):
    """Two consumers in one group: both get partitions; when one leaves, the other gets all."""
    from confluent_kafka import Consumer

    def member():
        c = Consumer(conf(args, **{"group.id": args.group, "auto.offset.reset": "earliest",
                                   "session.timeout.ms": 6000, "heartbeat.interval.ms": 300,
                                   "partition.assignment.strategy": "range"}))
        c.subscribe([args.topic])
        return c

    def until(what, members, check):
        deadline = time.time() + args.timeout_ms / 1000
        while time.time() < deadline:
            for m in members:
                m.poll(0.1)
            if check():
                return
        raise SystemExit(f"timed out waiting for {what}: " +
                         str([[tp.partition for tp in m.assignment()] for m in members]))

    a = member()
    until("the first member's assignment", [a], lambda: len(a.assignment()) == args.partitions)
    b = member()
    until("a split between two members", [a, b],
          lambda: len(a.assignment()) > 0 and len(b.assignment()) > 0
          and len(a.assignment()) + len(b.assignment()) == args.partitions)
    split = [sorted(tp.partition for tp in m.assignment()) for m in (a, b)]
    b.close()
    until("the remaining member to take every partition", [a], lambda: len(a.assignment()) == args.partitions)
    after = sorted(tp.partition for tp in a.assignment())
    a.close()
    print(json.dumps({"split": split, "after_leave": after}))


def admin(args):
    """Create or delete a topic through the Admin API."""
    from confluent_kafka.admin import AdminClient, NewTopic
    a = AdminClient(conf(args))
    if args.action == "create":
        config = {"retention.ms": "3600000"}
        config.update(kv.split("=", 1) for kv in args.config)
        futures = a.create_topics([NewTopic(args.topic, num_partitions=args.partitions, replication_factor=1,
                                            config=config)])
    else:
        futures = a.delete_topics([args.topic])
    errors = {}
    for name, f in futures.items():
        try:
            f.result(15)
        except Exception as e:  # the client's error, reported to the test
            errors[name] = str(e)
    md = a.list_topics(timeout=10)
    print(json.dumps({"errors": errors, "topics": sorted(md.topics.keys())}))


def metadata(args):
    """The cluster as Metadata describes it: brokers, and the leader of each partition of TOPIC."""
    from confluent_kafka.admin import AdminClient
    # With a topic named, Metadata asks for that topic alone (as producers do), and its error
    # (none, UNKNOWN_TOPIC_OR_PART, TOPIC_AUTHORIZATION_FAILED) is reported.
    md = AdminClient(conf(args)).list_topics(topic=args.topic, timeout=10)
    brokers = sorted(f"{b.host}:{b.port}" for b in md.brokers.values())
    topic = md.topics.get(args.topic)
    leaders = {}
    if topic is not None:
        by_id = {b.id: f"{b.host}:{b.port}" for b in md.brokers.values()}
        leaders = {str(p): by_id.get(pm.leader) for p, pm in topic.partitions.items()}
    error = topic.error.name() if topic is not None and topic.error is not None else None
    print(json.dumps({"brokers": brokers, "leaders": leaders, "error": error}))


def kafka_python(args):
    """kafka-python: produce COUNT records, then read them back in a group and commit."""
    from kafka import KafkaConsumer, KafkaProducer
    p = KafkaProducer(bootstrap_servers=args.bootstrap, acks="all")
    for i in range(args.count):
        p.send(args.topic, key=f"k{i}".encode(), value=f"{args.prefix}-{i}".encode(),
               headers=[("h", b"v")])
    p.flush(30)
    p.close()
    c = KafkaConsumer(args.topic, bootstrap_servers=args.bootstrap, group_id=args.group,
                      auto_offset_reset="earliest", enable_auto_commit=False, consumer_timeout_ms=args.timeout_ms)
    values = []
    for m in c:
        values.append(m.value.decode())
        if len(values) == args.count:
            break
    c.commit()
    broker_version = list(c.config.get("api_version") or ())
    c.close()
    print(json.dumps({"values": values, "api_version": broker_version}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("command")
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", default="t")
    ap.add_argument("--group", default="g")
    ap.add_argument("--count", type=int, default=10)
    ap.add_argument("--partitions", type=int, default=1)
    ap.add_argument("--prefix", default="m")
    ap.add_argument("--acks", default="all")
    ap.add_argument("--idempotent", action="store_true")
    ap.add_argument("--acked")
    ap.add_argument("--sasl")
    ap.add_argument("--header-value")
    ap.add_argument("--binary-header", action="store_true")
    ap.add_argument("--action", default="create")
    ap.add_argument("--config", action="append", default=[], help="admin create: a topic config KEY=VALUE")
    ap.add_argument("--timeout-ms", type=int, default=30000)
    args = ap.parse_args()
    {"produce": produce, "consume": consume, "rebalance": rebalance, "admin": admin,
     "metadata": metadata, "kafka-python": kafka_python}[args.command](args)


if __name__ == "__main__":
    main()

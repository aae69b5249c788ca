"""A real AMQP 0-9-1 client (pika) against weir's AMQP listener, for the `amqp` integration
tests and benchmarks. Each subcommand prints exactly one JSON object on stdout and exits 0; a
client failure (or a wait that runs past --timeout) exits non-zero with the error on stderr.

Every wait is bounded by --timeout and polls for its condition; nothing sleeps in place of
synchronisation. Queue and exchange names come from the arguments, so one server can carry
several scenarios.

Library: pika 1.4.4, installed by examples/setup.sh into $WEIR_TOOLS/amqp-venv; run with
`~/.cache/weir-tools/amqp-venv/bin/python tests/amqp/client.py SUBCOMMAND --url amqp://...`.
"""

import argparse
import datetime
import json
import logging
import socket
import sys
import threading
import time
import traceback

import pika
import pika.exceptions


# -- plumbing -----------------------------------------------------------------------------------

def params(args):
    p = pika.URLParameters(args.url)
    p.connection_attempts = 1
    p.socket_timeout = args.timeout
    p.stack_timeout = args.timeout
    p.blocked_connection_timeout = args.timeout
    return p


def connect(args):
    return pika.BlockingConnection(params(args))


class Deadline:
    def __init__(self, args):
        self.at = time.monotonic() + args.timeout

    def left(self):
        return max(0.0, self.at - time.monotonic())

    def expired(self):
        return time.monotonic() >= self.at


def describe(e):
    """An exception as `Class: text`; pika's connection errors wrap the cause, unprinted."""
    text = str(e)
    if not text:
        inner = [a for a in e.args] + ([e.exception] if hasattr(e, "exception") else [])
        text = "; ".join(describe(a) if isinstance(a, BaseException) else str(a) for a in inner)
    return f"{type(e).__name__}: {text}"


def timed_out(what, state=None):
    raise SystemExit(f"timed out waiting for {what}" + (f": {state}" if state is not None else ""))


def pump(conn, deadline, done, what, state=lambda: None):
    """Run CONN's I/O until done() holds, or fail when the deadline passes."""
    while not done():
        if deadline.expired():
            timed_out(what, state())
        conn.process_data_events(time_limit=min(0.05, deadline.left()))


def plain(value):
    """A header value as JSON: leaves as strings, tables and arrays kept as dicts and lists."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, datetime.datetime):
        return str(int(value.timestamp()))
    return str(value)


def headers_of(props):
    return plain(props.headers or {})


def confirmed_channel(conn):
    ch = conn.channel()
    ch.confirm_delivery()
    return ch


def publish(ch, exchange, key, body, **props):
    persistent = props.pop("persistent", True)
    ch.basic_publish(exchange=exchange, routing_key=key, body=body.encode(),
                     properties=pika.BasicProperties(delivery_mode=2 if persistent else 1, **props))


def get_all(ch, queue, deadline, ack=True):
    """basic.get until the queue answers get-empty; returns [(method, properties, body)]."""
    got = []
    while True:
        if deadline.expired():
            timed_out(f"{queue} to drain", len(got))
        method, props, body = ch.basic_get(queue, auto_ack=not ack)
        if method is None:
            return got
        if ack:
            ch.basic_ack(method.delivery_tag)
        got.append((method, props, body.decode()))


def get_until(ch, queue, n, deadline, what):
    """basic.get with ack, polling, until N messages came (they may not be there yet)."""
    got = []
    while len(got) < n:
        if deadline.expired():
            timed_out(what, [b for _, _, b in got])
        method, props, body = ch.basic_get(queue, auto_ack=False)
        if method is None:
            ch.connection.process_data_events(time_limit=0.02)
            continue
        ch.basic_ack(method.delivery_tag)
        got.append((method, props, body.decode()))
    return got


class Worker(threading.Thread):
    """A thread owning its own connection; errors are kept for the main thread to raise."""

    def __init__(self, target):
        super().__init__(daemon=True)
        self.target = target
        self.ready = threading.Event()
        self.stop = threading.Event()
        self.error = None

    def run(self):
        try:
            self.target(self)
        except BaseException as e:  # handed to the main thread
            self.error = e
        finally:
            self.ready.set()

    def wait_ready(self, deadline, what):
        if not self.ready.wait(deadline.left()):
            timed_out(what)
        self.check()

    def check(self):
        if self.error is not None:
            raise self.error

    def finish(self, deadline):
        self.stop.set()
        self.join(deadline.left())
        self.check()


def serve(worker, conn, deadline):
    """A worker's loop: the connection's I/O until told to stop."""
    worker.ready.set()
    while not worker.stop.is_set():
        if deadline.expired():
            timed_out("the main thread to finish")
        conn.process_data_events(time_limit=0.05)
    conn.close()


def abort(conn):
    """Drop CONN's socket without connection.close, as a crashed client would."""
    conn._impl._transport._sock.shutdown(socket.SHUT_RDWR)
    try:
        conn.process_data_events(time_limit=0)
    except pika.exceptions.AMQPError:
        pass


# -- scenarios ----------------------------------------------------------------------------------

def work_queue(args):
    """Two competing consumers (prefetch P, manual ack) share COUNT confirmed messages."""
    deadline = Deadline(args)
    conn = connect(args)
    ch = confirmed_channel(conn)
    ch.queue_declare(args.queue, durable=True)
    lock = threading.Condition()
    got = {"a": [], "b": []}

    def consumer(name):
        def run(w):
            c = connect(args)
            cch = c.channel()
            cch.basic_qos(prefetch_count=args.prefetch)

            def on_message(ch_, method, _props, body):
                with lock:
                    got[name].append(body.decode())
                    lock.notify_all()
                ch_.basic_ack(method.delivery_tag)
            cch.basic_consume(args.queue, on_message_callback=on_message)
            serve(w, c, deadline)
        return Worker(run)

    workers = [consumer("a"), consumer("b")]
    for w in workers:
        w.start()
    for w in workers:
        w.wait_ready(deadline, "the consumers to start")
    for i in range(args.count):
        publish(ch, "", args.queue, f"m-{i}")
    with lock:
        while len(set(got["a"]) | set(got["b"])) < args.count:
            for w in workers:
                w.check()
            if deadline.expired():
                timed_out("every message to be consumed", {k: len(v) for k, v in got.items()})
            lock.wait(min(0.1, deadline.left()))
    while ch.queue_declare(args.queue, passive=True).method.message_count != 0:
        if deadline.expired():
            timed_out("the queue to be empty")
        conn.process_data_events(time_limit=0.05)
    for w in workers:
        w.finish(deadline)
    conn.close()
    print(json.dumps({"a": got["a"], "b": got["b"], "published": args.count}))


def redelivery(args):
    """Unacked deliveries of a consumer that goes away come again, flagged redelivered."""
    deadline = Deadline(args)
    conn = connect(args)
    ch = confirmed_channel(conn)
    ch.queue_declare(args.queue, durable=True)
    for i in range(args.count):
        publish(ch, "", args.queue, f"m-{i}")

    def take(ack):
        c = connect(args)
        cch = c.channel()
        cch.basic_qos(prefetch_count=args.count)
        seen = []

        def on_message(ch_, method, _props, body):
            seen.append([body.decode(), bool(method.redelivered)])
            if ack:
                ch_.basic_ack(method.delivery_tag)
        cch.basic_consume(args.queue, on_message_callback=on_message)
        pump(c, deadline, lambda: len(seen) >= args.count, "deliveries", lambda: seen)
        return c, seen

    c1, first = take(ack=False)
    if args.abrupt:
        abort(c1)
    else:
        c1.close()
    c2, second = take(ack=True)
    c2.close()
    conn.close()
    print(json.dumps({"first": first, "second": second}))


def dead_letter_queue(ch, args):
    """The fanout exchange --dlx with the queue --dlq bound to it: where dead letters land."""
    ch.exchange_declare(args.dlx, exchange_type="fanout", durable=True)
    ch.queue_declare(args.dlq, durable=True)
    ch.queue_bind(args.dlq, args.dlx)


def dead_letter(args):
    """nack and reject without requeue dead-letter through the queue's x-dead-letter-exchange."""
    deadline = Deadline(args)
    conn = connect(args)
    ch = confirmed_channel(conn)
    dead_letter_queue(ch, args)
    ch.queue_declare(args.queue, durable=True, arguments={"x-dead-letter-exchange": args.dlx})
    for body in ("a", "b", "c"):
        publish(ch, "", args.queue, body)

    c = connect(args)
    cch = c.channel()
    handled = []

    def on_message(ch_, method, _props, body):
        body = body.decode()
        if body == "a":
            ch_.basic_nack(method.delivery_tag, requeue=False)
        elif body == "b":
            ch_.basic_reject(method.delivery_tag, requeue=False)
        else:
            ch_.basic_ack(method.delivery_tag)
        handled.append(body)
    cch.basic_consume(args.queue, on_message_callback=on_message)
    pump(c, deadline, lambda: len(handled) >= 3, "a, b and c", lambda: handled)
    c.close()

    dead = get_until(ch, args.dlq, 2, deadline, "two dead letters")
    conn.close()
    print(json.dumps({"dead": [b for _, _, b in dead], "headers": [headers_of(p) for _, p, _ in dead]}))


def routing(args):
    """Topic and headers exchanges route as RabbitMQ's tutorials say; an unroutable mandatory
    publish comes back."""
    deadline = Deadline(args)
    P = args.prefix
    conn = connect(args)
    ch = confirmed_channel(conn)
    ch.exchange_declare(f"{P}.topic", exchange_type="topic")
    ch.exchange_declare(f"{P}.headers", exchange_type="headers")
    for q in ("q1", "q2", "hall", "hany"):
        ch.queue_declare(f"{P}.{q}")
    ch.queue_bind(f"{P}.q1", f"{P}.topic", "*.orange.*")
    ch.queue_bind(f"{P}.q2", f"{P}.topic", "*.*.rabbit")
    ch.queue_bind(f"{P}.q2", f"{P}.topic", "lazy.#")
    ch.queue_bind(f"{P}.hall", f"{P}.headers", "",
                  arguments={"x-match": "all", "format": "pdf", "type": "report"})
    ch.queue_bind(f"{P}.hany", f"{P}.headers", "",
                  arguments={"x-match": "any", "format": "pdf", "type": "log"})
    for key in ("quick.orange.rabbit", "lazy.orange.elephant", "quick.orange.fox",
                "lazy.brown.fox", "lazy.pink.rabbit", "quick.brown.fox"):
        publish(ch, f"{P}.topic", key, key, persistent=False)
    for body, headers in (("h1", {"format": "pdf", "type": "report"}),
                          ("h2", {"format": "zip", "type": "log"}),
                          ("h3", {"format": "zip", "type": "x"})):
        publish(ch, f"{P}.headers", "", body, persistent=False, headers=headers)
    out = {q: [b for _, _, b in get_all(ch, f"{P}.{q}", deadline, ack=False)]
           for q in ("q1", "q2", "hall", "hany")}
    try:
        ch.basic_publish(f"{P}.topic", "nobody.listens.here", b"lost", mandatory=True)
        out["returned"] = False
    except pika.exceptions.UnroutableError:
        out["returned"] = True
    conn.close()
    print(json.dumps(out))


def priority(args):
    """x-max-priority: higher priorities first, FIFO within one."""
    deadline = Deadline(args)
    conn = connect(args)
    ch = confirmed_channel(conn)
    ch.queue_declare(args.queue, durable=True, arguments={"x-max-priority": 10})
    for i, prio in enumerate([1, 5, 9, 0, 5, 9, 1]):
        publish(ch, "", args.queue, f"p{prio}-{i}", priority=prio)
    order = [b for _, _, b in get_all(ch, args.queue, deadline)]
    conn.close()
    print(json.dumps({"order": order}))


def ttl(args):
    """Queue TTL (x-message-ttl 200) and a message's own expiration (100 ms) dead-letter."""
    deadline = Deadline(args)
    conn = connect(args)
    ch = confirmed_channel(conn)
    dead_letter_queue(ch, args)
    ch.queue_declare(args.queue, durable=True,
                     arguments={"x-message-ttl": 200, "x-dead-letter-exchange": args.dlx})
    publish(ch, "", args.queue, "t1")
    publish(ch, "", args.queue, "t2")
    publish(ch, "", args.queue, "t3", expiration="100")
    dead = get_until(ch, args.dlq, 3, deadline, "three expired messages")
    conn.close()

    def reason(props):
        deaths = (props.headers or {}).get("x-death") or [{}]
        r = deaths[0].get("reason")
        return r.decode() if isinstance(r, bytes) else r
    print(json.dumps({"dead": [b for _, _, b in dead], "reasons": [reason(p) for _, p, _ in dead]}))


def rpc(args):
    """Request/reply: a server upper-cases requests and answers reply_to with the
    correlation id, the client waiting on a server-named exclusive queue or direct reply-to."""
    deadline = Deadline(args)
    conn = connect(args)
    ch = conn.channel()
    ch.queue_declare(args.queue)
    seen_reply_to = []

    def server(w):
        c = connect(args)
        sch = c.channel()

        def on_request(ch_, method, props, body):
            seen_reply_to.append(props.reply_to)
            ch_.basic_publish("", props.reply_to, body.decode().upper().encode(),
                              properties=pika.BasicProperties(correlation_id=props.correlation_id))
            ch_.basic_ack(method.delivery_tag)
        sch.basic_consume(args.queue, on_message_callback=on_request)
        serve(w, c, deadline)

    w = Worker(server)
    w.start()
    w.wait_ready(deadline, "the RPC server to start")

    replies = []

    def on_reply(_ch, _method, props, body):
        replies.append([props.correlation_id, body.decode()])

    if args.direct:
        reply_queue = "amq.rabbitmq.reply-to"
    else:
        reply_queue = ch.queue_declare("", exclusive=True).method.queue
    ch.basic_consume(reply_queue, on_message_callback=on_reply, auto_ack=True)
    for i in range(3):
        ch.basic_publish("", args.queue, f"hello-{i}".encode(),
                         properties=pika.BasicProperties(reply_to=reply_queue, correlation_id=f"corr-{i}"))

    def done():
        w.check()
        return len(replies) >= 3
    pump(conn, deadline, done, "three replies", lambda: replies)
    w.finish(deadline)
    conn.close()
    print(json.dumps({"replies": replies, "reply_queue": reply_queue, "seen_reply_to": seen_reply_to}))


def publish_cmd(args):
    """COUNT confirmed messages `<prefix>-<i>`; each confirmed body goes to --acked as it is
    confirmed, so a server killed mid-run leaves the list of what it confirmed."""
    conn = connect(args)
    acked = open(args.acked, "a", buffering=1) if args.acked else None
    confirmed = 0
    try:
        ch = confirmed_channel(conn)
        if args.declare:
            ch.queue_declare(args.queue, durable=True)
        for i in range(args.count):
            body = f"{args.prefix}-{i}"
            publish(ch, "", args.queue, body)
            confirmed += 1
            if acked:
                acked.write(body + "\n")
    except (pika.exceptions.AMQPError, OSError) as e:
        print(json.dumps({"confirmed": confirmed, "error": describe(e)}))
        return
    conn.close()
    print(json.dumps({"confirmed": confirmed}))


def drain(args):
    """basic.get with ack until the queue is empty."""
    deadline = Deadline(args)
    conn = connect(args)
    ch = conn.channel()
    got = get_all(ch, args.queue, deadline)
    conn.close()
    print(json.dumps({"bodies": [b for _, _, b in got],
                      "redelivered": sum(1 for m, _, _ in got if m.redelivered)}))


def send(args):
    """One confirmed publish with the properties given."""
    conn = connect(args)
    ch = confirmed_channel(conn)
    headers = dict(h.split("=", 1) for h in args.header) if args.header else None
    props = pika.BasicProperties(
        content_type=args.content_type, correlation_id=args.correlation_id, reply_to=args.reply_to,
        message_id=args.message_id, type=args.type, priority=args.priority, headers=headers,
        timestamp=args.timestamp, delivery_mode=args.delivery_mode)
    ch.basic_publish(args.exchange, args.routing_key, args.body.encode(), properties=props,
                     mandatory=args.mandatory)
    conn.close()
    print(json.dumps({"ok": True}))


def get(args):
    """One basic.get with ack."""
    conn = connect(args)
    ch = conn.channel()
    method, p, body = ch.basic_get(args.queue, auto_ack=False)
    if method is None:
        conn.close()
        print(json.dumps({"empty": True}))
        return
    ch.basic_ack(method.delivery_tag)
    conn.close()
    print(json.dumps({
        "body": body.decode(),
        "properties": {"content_type": p.content_type, "correlation_id": p.correlation_id,
                       "reply_to": p.reply_to, "message_id": p.message_id, "type": p.type,
                       "priority": p.priority, "headers": headers_of(p) if p.headers is not None else None,
                       "timestamp": p.timestamp, "delivery_mode": p.delivery_mode,
                       "expiration": p.expiration},
        "redelivered": bool(method.redelivered),
        "exchange": method.exchange, "routing_key": method.routing_key,
        "message_count": method.message_count,
    }))


def auth(args):
    """Connect with the URL's credentials; if let in, a passive declare of QUEUE and a
    confirmed publish to it, reporting the channel error the broker closes with."""
    try:
        conn = connect(args)
    except pika.exceptions.AMQPConnectionError as e:
        print(json.dumps({"connected": False, "error": describe(e)}))
        return
    try:
        ch = conn.channel()
        ch.queue_declare(args.queue, passive=True)
        ch.confirm_delivery()
        ch.basic_publish("", args.queue, b"auth")
    except pika.exceptions.ChannelClosedByBroker as e:
        print(json.dumps({"connected": True, "code": e.reply_code, "text": e.reply_text}))
        conn.close()
        return
    conn.close()
    print(json.dumps({"connected": True, "code": 0}))


def death(props):
    """The first x-death entry as {reason, count} (RabbitMQ keeps one per queue and reason)."""
    deaths = (props.headers or {}).get("x-death") or [{}]
    r = deaths[0].get("reason")
    return {"reason": r.decode() if isinstance(r, bytes) else r, "count": deaths[0].get("count")}


def delivery_limit(args):
    """A quorum-style queue with x-delivery-limit 2 and a DLX: a message nacked with requeue
    comes back until its limit, then goes to the dead-letter queue."""
    deadline = Deadline(args)
    conn = connect(args)
    ch = confirmed_channel(conn)
    dead_letter_queue(ch, args)
    ch.queue_declare(args.queue, durable=True, arguments={
        "x-queue-type": "quorum", "x-delivery-limit": 2, "x-dead-letter-exchange": args.dlx})
    publish(ch, "", args.queue, "poison")
    deliveries = 0
    while True:
        if deadline.expired():
            timed_out("the poison message to leave", deliveries)
        method, _, _ = ch.basic_get(args.queue, auto_ack=False)
        if method is None:
            break
        deliveries += 1
        ch.basic_nack(method.delivery_tag, requeue=True)
    dead = get_until(ch, args.dlq, 1, deadline, "the dead letter")
    conn.close()
    print(json.dumps({"deliveries": deliveries, "dead": [b for _, _, b in dead], "death": death(dead[0][1])}))


def retry_loop(args):
    """The retry pattern: work queue → reject → DLX → retry queue with a TTL → back to the
    work queue. After COUNT rejections x-death counts them."""
    deadline = Deadline(args)
    conn = connect(args)
    ch = confirmed_channel(conn)
    work, retry = args.queue, args.queue + ".retry"
    ch.exchange_declare(args.dlx, exchange_type="direct", durable=True)
    ch.queue_declare(work, durable=True, arguments={
        "x-dead-letter-exchange": args.dlx, "x-dead-letter-routing-key": "retry"})
    ch.queue_declare(retry, durable=True, arguments={
        "x-message-ttl": 50, "x-dead-letter-exchange": args.dlx, "x-dead-letter-routing-key": "work"})
    ch.queue_bind(retry, args.dlx, "retry")
    ch.queue_bind(work, args.dlx, "work")
    publish(ch, "", work, "job")
    deaths = []
    while True:
        if deadline.expired():
            timed_out("the job back", deaths)
        method, props, _ = ch.basic_get(work, auto_ack=False)
        if method is None:
            ch.connection.process_data_events(time_limit=0.02)
            continue
        if props.headers and "x-death" in props.headers:
            deaths.append(death(props))
        if len(deaths) >= args.count:
            ch.basic_ack(method.delivery_tag)
            break
        ch.basic_reject(method.delivery_tag, requeue=False)
    conn.close()
    print(json.dumps({"deaths": deaths, "headers": len(props.headers or {})}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("command", choices=sorted(COMMANDS))
    ap.add_argument("--url", required=True, help="e.g. amqp://guest:guest@127.0.0.1:5672/%%2F")
    ap.add_argument("--timeout", type=float, default=20.0, help="seconds bounding every wait")
    ap.add_argument("--queue", default="weir.q")
    ap.add_argument("--dlx", default="weir.dlx")
    ap.add_argument("--dlq", default="weir.dlq")
    ap.add_argument("--prefix", default=None, help="routing: names' prefix (weir); publish: bodies' prefix (m)")
    ap.add_argument("--count", type=int, default=10)
    ap.add_argument("--prefetch", type=int, default=1)
    ap.add_argument("--abrupt", dest="abrupt", action="store_true", default=True,
                    help="redelivery: the first consumer's socket is dropped (the default)")
    ap.add_argument("--close", dest="abrupt", action="store_false",
                    help="redelivery: the first consumer closes its connection properly")
    ap.add_argument("--direct", action="store_true", help="rpc: direct reply-to")
    ap.add_argument("--acked", help="publish: append each confirmed body to this file")
    ap.add_argument("--declare", action="store_true", help="publish: declare the (durable) queue first")
    ap.add_argument("--exchange", default="")
    ap.add_argument("--routing-key", default="")
    ap.add_argument("--body", default="")
    ap.add_argument("--header", action="append", default=[], help="send: a header K=V (repeatable)")
    ap.add_argument("--correlation-id")
    ap.add_argument("--reply-to")
    ap.add_argument("--content-type")
    ap.add_argument("--message-id")
    ap.add_argument("--type")
    ap.add_argument("--priority", type=int)
    ap.add_argument("--timestamp", type=int)
    ap.add_argument("--delivery-mode", type=int)
    ap.add_argument("--mandatory", action="store_true")
    ap.add_argument("--verbose", action="store_true", help="pika's log on stderr")
    args = ap.parse_args()
    if args.prefix is None:
        args.prefix = "weir" if args.command == "routing" else "m"
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.CRITICAL, stream=sys.stderr)
    try:
        COMMANDS[args.command](args)
    except SystemExit:
        raise
    except BaseException as e:
        traceback.print_exc()
        sys.exit(f"{args.command}: {describe(e)}")
    sys.stdout.flush()


COMMANDS = {
    "work-queue": work_queue, "redelivery": redelivery, "dead-letter": dead_letter,
    "routing": routing, "priority": priority, "ttl": ttl, "rpc": rpc,
    "publish": publish_cmd, "drain": drain, "send": send, "get": get, "auth": auth,
    "delivery-limit": delivery_limit, "retry-loop": retry_loop,
}

if __name__ == "__main__":
    main()

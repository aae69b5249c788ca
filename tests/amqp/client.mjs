// A real AMQP 0-9-1 client (amqplib) against weir's AMQP listener, for the `amqp` integration
// tests and benchmarks: the Node.js counterpart of tests/amqp/client.py, with the same
// subcommands (a subset), options and JSON outputs. Each subcommand prints exactly one JSON
// object on stdout and exits 0; a client failure (or a wait that runs past --timeout) exits
// non-zero with the error on stderr. Every wait is bounded by --timeout and polls for its
// condition; nothing sleeps in place of synchronisation.
//
// Library: amqplib 2.3.1 (promise API), installed by examples/setup.sh into
// $WEIR_TOOLS/amqp-js (default ~/.cache/weir-tools/amqp-js); run with
// `node tests/amqp/client.mjs SUBCOMMAND --url amqp://guest:guest@127.0.0.1:PORT/%2F ...`.

import { createRequire } from 'node:module';
import { openSync, writeSync, closeSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const tools = process.env.WEIR_TOOLS || join(homedir(), '.cache', 'weir-tools');
const amqp = createRequire(join(tools, 'amqp-js', 'package.json'))('amqplib');

// -- plumbing ------------------------------------------------------------------------------------

const COMMANDS = {
  'work-queue': workQueue,
  redelivery,
  'dead-letter': deadLetter,
  routing,
  priority,
  rpc,
  publish: publishCmd,
  drain,
};

const { values: opts, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    url: { type: 'string' },
    timeout: { type: 'string', default: '20' },
    queue: { type: 'string', default: 'weir.q' },
    dlx: { type: 'string', default: 'weir.dlx' },
    dlq: { type: 'string', default: 'weir.dlq' },
    prefix: { type: 'string' },
    count: { type: 'string', default: '10' },
    prefetch: { type: 'string', default: '1' },
    abrupt: { type: 'boolean', default: true },
    close: { type: 'boolean', default: false },
    direct: { type: 'boolean', default: false },
    acked: { type: 'string' },
    declare: { type: 'boolean', default: false },
    window: { type: 'string', default: '64' },
  },
});
const command = positionals[0];
if (!COMMANDS[command] || !opts.url) {
  process.stderr.write(`usage: client.mjs {${Object.keys(COMMANDS).join(',')}} --url URL [options]\n`);
  process.exit(2);
}
const timeoutMs = Number(opts.timeout) * 1000;
const count = Number(opts.count);
const deadline = Date.now() + timeoutMs;
const prefix = opts.prefix ?? (command === 'routing' ? 'weir' : 'm');

// An error a connection or channel emits: kept, and raised by the next wait. Connections the
// scenario drops on purpose are exempt.
const failures = [];
const expectedDown = new WeakSet();

function watch(emitter, what) {
  emitter.on('error', (e) => {
    if (!expectedDown.has(emitter)) failures.push(new Error(`${what}: ${e.message}`));
  });
  return emitter;
}

function check() {
  if (failures.length) throw failures[0];
}

async function connect(what = 'connection') {
  const conn = await amqp.connect(opts.url, { timeout: timeoutMs, noDelay: true });
  return watch(conn, what);
}

const channels = new WeakMap();

function opened(conn, ch, what) {
  if (!channels.has(conn)) channels.set(conn, []);
  channels.get(conn).push(ch);
  return watch(ch, what);
}

async function channel(conn, what = 'channel') {
  return opened(conn, await conn.createChannel(), what);
}

async function confirmChannel(conn, what = 'confirm channel') {
  return opened(conn, await conn.createConfirmChannel(), what);
}

// Close CONN's channels, then CONN. amqplib writes each channel's frames through a buffer of its
// own and muxes them onto the socket, so a connection.close (channel 0) can overtake acks still
// queued on a channel; a channel.close cannot (same channel), and its close-ok means the server
// has seen everything before it.
async function shut(conn, what = 'the connection to close') {
  for (const ch of channels.get(conn) ?? []) await bounded(ch.close(), what);
  await bounded(conn.close(), what);
}

function timedOut(what, state) {
  return new Error(`timed out waiting for ${what}${state === undefined ? '' : `: ${JSON.stringify(state)}`}`);
}

// Poll COND until it holds; fail at the deadline or on a connection's error.
async function waitFor(cond, what, state) {
  for (;;) {
    check();
    if (cond()) return;
    if (Date.now() >= deadline) throw timedOut(what, state?.());
    await new Promise((r) => setTimeout(r, 5));
  }
}

// A promise bounded by the deadline (plus GRACE ms, so that the scenario's own waits, which
// say what they were waiting for, time out first).
function bounded(promise, what, grace = 0) {
  let timer;
  const t = new Promise((_, reject) => {
    timer = setTimeout(() => reject(timedOut(what)), Math.max(0, deadline + grace - Date.now()));
  });
  return Promise.race([promise, t]).finally(() => clearTimeout(timer));
}

// One publish on a confirm channel, resolved when the server acks it.
function publishConfirmed(ch, exchange, key, body, options = {}) {
  return bounded(
    new Promise((resolve, reject) => {
      ch.publish(exchange, key, Buffer.from(body), { persistent: true, ...options }, (err) =>
        err ? reject(err) : resolve(),
      );
    }),
    `the confirm of ${body}`,
  );
}

// A header value as JSON: leaves as strings, tables and arrays kept as objects and arrays.
function plain(v) {
  if (v === null || v === undefined) return String(v);
  if (Buffer.isBuffer(v)) return v.toString();
  if (Array.isArray(v)) return v.map(plain);
  if (v instanceof Date) return String(Math.floor(v.getTime() / 1000));
  // amqplib decodes some field types (timestamp) as {'!': type, value}.
  if (typeof v === 'object' && '!' in v && 'value' in v) return plain(v.value);
  if (typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));
  return String(v);
}

// basic.get until get-empty; returns the messages.
async function getAll(ch, queue, ack = true) {
  const got = [];
  for (;;) {
    check();
    if (Date.now() >= deadline) throw timedOut(`${queue} to drain`, got.length);
    const m = await bounded(ch.get(queue, { noAck: !ack }), `basic.get on ${queue}`);
    if (m === false) return got;
    if (ack) ch.ack(m);
    got.push(m);
  }
}

// basic.get with ack, polling, until N messages came.
async function getUntil(ch, queue, n, what) {
  const got = [];
  while (got.length < n) {
    check();
    if (Date.now() >= deadline) throw timedOut(what, got.map((m) => m.content.toString()));
    const m = await bounded(ch.get(queue, { noAck: false }), `basic.get on ${queue}`);
    if (m === false) {
      await new Promise((r) => setTimeout(r, 20));
      continue;
    }
    ch.ack(m);
    got.push(m);
  }
  return got;
}

const body = (m) => m.content.toString();

// -- scenarios -----------------------------------------------------------------------------------

async function workQueue() {
  const conn = await connect('publisher');
  const ch = await confirmChannel(conn);
  await ch.assertQueue(opts.queue, { durable: true });
  const got = { a: [], b: [] };
  const consumers = [];
  for (const name of ['a', 'b']) {
    const c = await connect(`consumer ${name}`);
    const cch = await channel(c, `consumer ${name}'s channel`);
    await cch.prefetch(Number(opts.prefetch));
    await cch.consume(
      opts.queue,
      (m) => {
        if (m === null) return failures.push(new Error(`consumer ${name} cancelled by the server`));
        got[name].push(body(m));
        cch.ack(m);
      },
      { noAck: false },
    );
    consumers.push(c);
  }
  for (let i = 0; i < count; i++) await publishConfirmed(ch, '', opts.queue, `m-${i}`);
  await waitFor(
    () => new Set([...got.a, ...got.b]).size >= count,
    'every message to be consumed',
    () => ({ a: got.a.length, b: got.b.length }),
  );
  for (;;) {
    const { messageCount } = await bounded(ch.checkQueue(opts.queue), 'queue.declare-ok');
    if (messageCount === 0) break;
    if (Date.now() >= deadline) throw timedOut('the queue to be empty', messageCount);
    await new Promise((r) => setTimeout(r, 20));
  }
  for (const c of consumers) await shut(c, 'a consumer to close');
  await shut(conn, 'the publisher to close');
  return { a: got.a, b: got.b, published: count };
}

async function redelivery() {
  const conn = await connect('publisher');
  const ch = await confirmChannel(conn);
  await ch.assertQueue(opts.queue, { durable: true });
  for (let i = 0; i < count; i++) await publishConfirmed(ch, '', opts.queue, `m-${i}`);

  async function take(ack) {
    const c = await connect(ack ? 'second consumer' : 'first consumer');
    const cch = await channel(c);
    await cch.prefetch(count);
    const seen = [];
    await cch.consume(
      opts.queue,
      (m) => {
        if (m === null) return;
        seen.push([body(m), m.fields.redelivered]);
        if (ack) cch.ack(m);
      },
      { noAck: false },
    );
    await waitFor(() => seen.length >= count, 'deliveries', () => seen);
    return [c, cch, seen];
  }

  const [c1, ch1, first] = await take(false);
  if (opts.abrupt && !opts.close) {
    // Drop the socket without connection.close, as a crashed client would.
    expectedDown.add(c1);
    expectedDown.add(ch1);
    c1.connection.stream.destroy();
  } else {
    // connection.close alone (no channel.close first): the server requeues the unacked
    // deliveries of every channel the connection had.
    await bounded(c1.close(), 'the first consumer to close');
  }
  const [c2, , second] = await take(true);
  await shut(c2, 'the second consumer to close');
  await shut(conn, 'the publisher to close');
  return { first, second };
}

async function deadLetter() {
  const conn = await connect('publisher');
  const ch = await confirmChannel(conn);
  await ch.assertExchange(opts.dlx, 'fanout', { durable: true });
  await ch.assertQueue(opts.dlq, { durable: true });
  await ch.bindQueue(opts.dlq, opts.dlx, '');
  await ch.assertQueue(opts.queue, { durable: true, arguments: { 'x-dead-letter-exchange': opts.dlx } });
  for (const b of ['a', 'b', 'c']) await publishConfirmed(ch, '', opts.queue, b);

  const c = await connect('consumer');
  const cch = await channel(c);
  const handled = [];
  await cch.consume(
    opts.queue,
    (m) => {
      if (m === null) return;
      const b = body(m);
      if (b === 'a') cch.nack(m, false, false);
      else if (b === 'b') cch.reject(m, false);
      else cch.ack(m);
      handled.push(b);
    },
    { noAck: false },
  );
  await waitFor(() => handled.length >= 3, 'a, b and c', () => handled);
  await shut(c, 'the consumer to close');

  const dead = await getUntil(ch, opts.dlq, 2, 'two dead letters');
  await shut(conn, 'the connection to close');
  return { dead: dead.map(body), headers: dead.map((m) => plain(m.properties.headers ?? {})) };
}

async function routing() {
  const P = prefix;
  const conn = await connect();
  const ch = await confirmChannel(conn);
  const returned = [];
  ch.on('return', (m) => returned.push(m));
  await ch.assertExchange(`${P}.topic`, 'topic', { durable: false });
  await ch.assertExchange(`${P}.headers`, 'headers', { durable: false });
  for (const q of ['q1', 'q2', 'hall', 'hany']) await ch.assertQueue(`${P}.${q}`, { durable: false });
  await ch.bindQueue(`${P}.q1`, `${P}.topic`, '*.orange.*');
  await ch.bindQueue(`${P}.q2`, `${P}.topic`, '*.*.rabbit');
  await ch.bindQueue(`${P}.q2`, `${P}.topic`, 'lazy.#');
  await ch.bindQueue(`${P}.hall`, `${P}.headers`, '', { 'x-match': 'all', format: 'pdf', type: 'report' });
  await ch.bindQueue(`${P}.hany`, `${P}.headers`, '', { 'x-match': 'any', format: 'pdf', type: 'log' });
  for (const key of [
    'quick.orange.rabbit',
    'lazy.orange.elephant',
    'quick.orange.fox',
    'lazy.brown.fox',
    'lazy.pink.rabbit',
    'quick.brown.fox',
  ]) {
    await publishConfirmed(ch, `${P}.topic`, key, key, { persistent: false });
  }
  for (const [b, headers] of [
    ['h1', { format: 'pdf', type: 'report' }],
    ['h2', { format: 'zip', type: 'log' }],
    ['h3', { format: 'zip', type: 'x' }],
  ]) {
    await publishConfirmed(ch, `${P}.headers`, '', b, { persistent: false, headers });
  }
  const out = {};
  for (const q of ['q1', 'q2', 'hall', 'hany']) out[q] = (await getAll(ch, `${P}.${q}`, false)).map(body);
  // The server sends basic.return before the basic.ack of an unroutable mandatory message.
  await publishConfirmed(ch, `${P}.topic`, 'nobody.listens.here', 'lost', { persistent: false, mandatory: true });
  out.returned = returned.some((m) => m.fields.routingKey === 'nobody.listens.here');
  await shut(conn, 'the connection to close');
  return out;
}

async function priority() {
  const conn = await connect();
  const ch = await confirmChannel(conn);
  await ch.assertQueue(opts.queue, { durable: true, arguments: { 'x-max-priority': 10 } });
  const prios = [1, 5, 9, 0, 5, 9, 1];
  for (let i = 0; i < prios.length; i++) {
    await publishConfirmed(ch, '', opts.queue, `p${prios[i]}-${i}`, { priority: prios[i] });
  }
  const order = (await getAll(ch, opts.queue)).map(body);
  await shut(conn, 'the connection to close');
  return { order };
}

async function rpc() {
  const conn = await connect('client');
  const ch = await channel(conn, "client's channel");
  await ch.assertQueue(opts.queue, { durable: false });

  const server = await connect('server');
  const sch = await channel(server, "server's channel");
  const seenReplyTo = [];
  await sch.consume(
    opts.queue,
    (m) => {
      if (m === null) return;
      seenReplyTo.push(m.properties.replyTo);
      sch.publish('', m.properties.replyTo, Buffer.from(body(m).toUpperCase()), {
        correlationId: m.properties.correlationId,
      });
      sch.ack(m);
    },
    { noAck: false },
  );

  const replies = [];
  let replyQueue;
  if (opts.direct) {
    replyQueue = 'amq.rabbitmq.reply-to';
  } else {
    replyQueue = (await ch.assertQueue('', { exclusive: true })).queue;
  }
  // Direct reply-to: the consumer (no-ack) must be there before the requests go out.
  await ch.consume(
    replyQueue,
    (m) => {
      if (m !== null) replies.push([m.properties.correlationId, body(m)]);
    },
    { noAck: true },
  );
  for (let i = 0; i < 3; i++) {
    ch.publish('', opts.queue, Buffer.from(`hello-${i}`), { replyTo: replyQueue, correlationId: `corr-${i}` });
  }
  await waitFor(() => replies.length >= 3, 'three replies', () => replies);
  await shut(server, 'the server to close');
  await shut(conn, 'the client to close');
  return { replies, reply_queue: replyQueue, seen_reply_to: seenReplyTo };
}

async function publishCmd() {
  // COUNT confirmed messages `<prefix>-<i>`, up to --window unconfirmed at once; each confirmed
  // body is appended to --acked as its confirm arrives, so a server killed mid-run leaves the
  // list of what it confirmed.
  const conn = await connect();
  const fd = opts.acked ? openSync(opts.acked, 'a') : null;
  const window = Math.max(1, Number(opts.window));
  let confirmed = 0;
  let inflight = 0;
  let dead = null;
  const down = (e) => {
    dead ??= e;
  };
  expectedDown.add(conn);
  conn.on('error', down);
  conn.on('close', (e) => down(e ?? new Error('connection closed')));
  try {
    const ch = await conn.createConfirmChannel();
    ch.on('error', down);
    if (opts.declare) await ch.assertQueue(opts.queue, { durable: true });
    for (let i = 0; i < count && !dead; i++) {
      await waitFor(() => inflight < window || dead, 'confirms');
      if (dead) break;
      const b = `${prefix}-${i}`;
      inflight++;
      ch.publish('', opts.queue, Buffer.from(b), { persistent: true }, (err) => {
        inflight--;
        if (err) return down(err);
        confirmed++;
        if (fd !== null) writeSync(fd, `${b}\n`);
      });
    }
    await waitFor(() => inflight === 0 || dead, 'the last confirms', () => ({ inflight, confirmed }));
    if (!dead) await shut(conn, 'the connection to close');
  } catch (e) {
    down(e);
  }
  if (fd !== null) closeSync(fd);
  if (dead && confirmed < count) return { confirmed, error: `${dead.name}: ${dead.message}` };
  return { confirmed };
}

async function drain() {
  const conn = await connect();
  const ch = await channel(conn);
  const got = await getAll(ch, opts.queue);
  await shut(conn, 'the connection to close');
  return { bodies: got.map(body), redelivered: got.filter((m) => m.fields.redelivered).length };
}

// -- main ----------------------------------------------------------------------------------------

try {
  const out = await bounded(COMMANDS[command](), command, 1000);
  process.stdout.write(`${JSON.stringify(out)}\n`, () => process.exit(0));
} catch (e) {
  process.stderr.write(`${command}: ${e?.stack ?? e}\n`, () => process.exit(1));
}

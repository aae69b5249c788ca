// Types of @weir/sdk: plugins for weir, written in JavaScript or TypeScript, built into wasm32-wasip2 components.

/** Header pairs as a plain object, a Map, or [name, value] pairs (the only form that keeps repeats). */
export type HeadersInit = Record<string, string> | Map<string, string> | Array<[string, string]>;

/** A payload: bytes as is, text as UTF-8, anything else as JSON. */
export type Payload = Uint8Array | string | number | boolean | null | object;

/** Well-known header names. */
export declare const headers: {
  readonly TYPE: 'weir-type';
  readonly PRIORITY: 'weir-priority';
  readonly CORRELATION_ID: 'weir-correlation-id';
  readonly REPLY_TO: 'weir-reply-to';
  readonly IDEMPOTENCY_KEY: 'weir-idempotency-key';
  readonly TRACEPARENT: 'traceparent';
  readonly DELIVERY_COUNT: 'weir-delivery-count';
  readonly ROUTING_KEY: 'weir-routing-key';
  readonly EXCHANGE: 'weir-exchange';
  readonly DLQ_ERROR: 'weir-dlq-error';
  readonly DLQ_PREFIX: 'weir-dlq-';
};

export interface MessageInit {
  key?: string | Uint8Array | null;
  headers?: HeadersInit;
  timestampMs?: number;
  partition?: number;
  offset?: number;
  topic?: string;
}

/** One input message, read in place from its batch. */
export declare class Message {
  constructor(value?: Payload, init?: MessageInit);
  /** Payload bytes: a view into the batch, valid during this call. */
  readonly value: Uint8Array;
  /** The key as UTF-8 text; null when absent or not UTF-8. */
  readonly key: string | null;
  readonly keyBytes: Uint8Array | null;
  /** Headers by name (the first value of a repeated name). */
  readonly headers: Map<string, string>;
  readonly timestampMs: number;
  readonly partition: number;
  readonly offset: number;
  readonly topic: string;
  /** `weir-type`, `weir-correlation-id`, `weir-reply-to`, `weir-idempotency-key`. */
  readonly type: string | undefined;
  readonly correlationId: string | undefined;
  readonly replyTo: string | undefined;
  readonly idempotencyKey: string | undefined;
  /** Every header in order, repeats included. */
  headerList(): Array<[string, string]>;
  header(name: string): string | undefined;
  /** UTF-8 text; throws Fatal when it is not UTF-8. */
  text(): string;
  /** Parsed JSON; throws Fatal ("invalid JSON payload: …") when it does not parse. */
  json<T = any>(): T;
}

export interface OutputInit {
  /** Undefined inherits the input's key; null sends none. */
  key?: string | Uint8Array | null;
  /** Undefined inherits the input's headers; `{}` sends none. */
  headers?: HeadersInit;
  /** A topic instead of the next step. */
  to?: string | null;
}

/** A message a plugin emits. */
export declare class Output {
  constructor(value: Payload, init?: OutputInit);
  static from(msg: Message): Output;
  value: Uint8Array;
  key: Uint8Array | null | undefined;
  headers: Array<[string, string]> | undefined;
  topic: string | null;
  /** Add a header after the inherited or given ones. */
  header(name: string, value: string): this;
  to(topic: string): this;
}

export declare function output(value: Payload, init?: OutputInit): Output;
/** The reply to a request: to its `weir-reply-to` topic with its correlation id; Fatal if it asked for none. */
export declare function reply(request: Message, value: Payload): Output;

/** What a kind may return as an output: an Output, a Message carried on, or a payload inheriting key and headers. */
export type OutputLike = Output | Message | Payload;

export type Outcome =
  | { readonly kind: 'keep' }
  | { readonly kind: 'drop' }
  | { readonly kind: 'emit'; readonly outputs: Output[] }
  | { readonly kind: 'forward'; readonly topic: string }
  | { readonly kind: 'fail'; readonly message: string; readonly retryable: boolean };

export declare function keep(): Outcome;
export declare function drop(): Outcome;
export declare function emit(...outputs: OutputLike[]): Outcome;
export declare function forward(topic: string): Outcome;
export declare function fail(message: string, opts?: { retryable?: boolean }): Outcome;

export interface TypedOptions<T> {
  default?: T;
  /** Fail naming the key when it is not set. */
  required?: boolean;
}

/** The `key=value` configuration of one step; errors name the key and the bad text. */
export declare class Config {
  constructor(pairs?: Array<[string, string]> | Map<string, string> | Record<string, string>);
  get(key: string): string | undefined;
  has(key: string): boolean;
  require(key: string): string;
  string(key: string): string | undefined;
  string(key: string, opts: TypedOptions<string> & ({ default: string } | { required: true })): string;
  string(key: string, opts: TypedOptions<string>): string | undefined;
  int(key: string): number | undefined;
  int(key: string, opts: TypedOptions<number> & ({ default: number } | { required: true })): number;
  int(key: string, opts: TypedOptions<number>): number | undefined;
  number(key: string): number | undefined;
  number(key: string, opts: TypedOptions<number> & ({ default: number } | { required: true })): number;
  number(key: string, opts: TypedOptions<number>): number | undefined;
  bool(key: string): boolean | undefined;
  bool(key: string, opts: TypedOptions<boolean> & ({ default: boolean } | { required: true })): boolean;
  bool(key: string, opts: TypedOptions<boolean>): boolean | undefined;
  /** `500ms`, `10s`, `5m`, `24h`, `7d` (a bare number is ms). */
  durationMs(key: string): number | undefined;
  durationMs(key: string, opts: TypedOptions<number> & ({ default: number } | { required: true })): number;
  durationMs(key: string, opts: TypedOptions<number>): number | undefined;
  /** `a, b` or a JSON array. */
  list(key: string): string[] | undefined;
  list(key: string, opts: TypedOptions<string[]> & ({ default: string[] } | { required: true })): string[];
  list(key: string, opts: TypedOptions<string[]>): string[] | undefined;
  /** Keys starting with `prefix`, prefix removed, in key order. */
  withPrefix(prefix: string): Array<[string, string]>;
  entries(): Array<[string, string]>;
  /** Fail naming the first key not in `known` (names, or prefixes ending in `.`); `weir.*` keys always pass. */
  rejectUnknown(known: string[]): this;
  /** `pipeline`, `step`, `plugin` or `version`, as the host set them. */
  reserved(name: string): string | undefined;
  readonly version: number | undefined;
  /** Replace `${weir.pipeline}`, `${weir.step}`, `${weir.plugin}`, `${weir.version}`. */
  expand(text: string): string;
}

export declare function parseDurationMs(raw: string): number | undefined;

/** A failure of one message. */
export declare class WeirError extends Error {
  constructor(message: string, retryable?: boolean);
  readonly retryable: boolean;
}
/** May succeed later: retried with backoff. */
export declare class Retryable extends WeirError {
  constructor(message: string);
}
/** The message is bad: dead-lettered or halts, as the failure policy says. */
export declare class Fatal extends WeirError {
  constructor(message: string);
}
/** The sentinel `abort` throws; do not catch it. */
export declare class Abort extends Error {}
/** Trap the instance (like a Rust panic): logged, then the host discards the instance. */
export declare function abort(reason?: string): never;

export type Bytes = Uint8Array | string;

/** Step state, scoped to the source partition, committed with the batch's outputs. */
export declare const state: {
  get(key: Bytes): Uint8Array | undefined;
  getText(key: Bytes): string | undefined;
  set(key: Bytes, value: Bytes, opts?: { ttlMs?: number }): void;
  delete(key: Bytes): void;
  getJson<T = any>(key: Bytes): T | undefined;
  setJson(key: Bytes, value: unknown, opts?: { ttlMs?: number }): void;
};

/** In-memory state with TTLs on a clock tests move. */
export declare class MemoryState {
  constructor(initial?: Record<string, unknown> | Map<string, unknown>, now?: number);
  now: number;
  get(key: Bytes): Uint8Array | undefined;
  set(key: Bytes, value: Bytes, ttlMs?: number | bigint): void;
  delete(key: Bytes): void;
  advance(ms: number): this;
  keys(): string[];
  getText(key: Bytes): string | undefined;
  getJson<T = any>(key: Bytes): T | undefined;
  toObject(): Record<string, string>;
}

type LogFn = (...args: unknown[]) => void;
export declare const log: { trace: LogFn; debug: LogFn; info: LogFn; warn: LogFn; error: LogFn };

/** Dotted paths into parsed JSON documents (`a.b.0.c`). */
export declare namespace json {
  function get(doc: unknown, path: string): any;
  function set(doc: unknown, path: string, value: unknown): boolean;
  function remove(doc: unknown, path: string): any;
  /** Valid JSON text as such, anything else as a string. */
  function parseValue(raw: string): any;
  /** Compact JSON with object keys sorted by code point, byte for byte as serde_json writes a
   * parsed document, except what JavaScript's one number type cannot keep: an integral number
   * (`1234.0` once parsed) is written `1234`, and an integer from 10^16 up as a float (`1e+16`). */
  function stringify(value: unknown): string;
  /** Compact JSON with keys in the object's own order, numbers as `stringify` writes them. */
  function compact(value: unknown): string;
  /** A number as serde_json writes it: `-0.0`, `1e+16`, `0.00001`, `1.5e-7`. */
  function numberText(value: number): string;
  /** Strings without quotes, anything else as compact JSON. */
  function asText(value: unknown): string;
}

/** Confluent's wire framing (a zero byte, the schema id, for Protobuf the message indexes, the value). */
export declare namespace schemas {
  function unframe(bytes: Uint8Array): { id: number; rest: Uint8Array } | null;
  function frame(id: number, payload: Uint8Array | string): Uint8Array;
  /** A framed JSON Schema payload, parsed; throws if it is not framed. */
  function jsonValue<T = any>(bytes: Uint8Array): { id: number; value: T };
  function unframeProtobuf(bytes: Uint8Array): { id: number; indexes: number[]; message: Uint8Array } | null;
  function frameProtobuf(id: number, indexes: number[], message: Uint8Array): Uint8Array;
}

/** A plugin definition, built by one of the kinds below; the default export of a plugin module. */
export interface PluginDefinition {
  readonly kind: string;
}

type Init<S> = { init?(config: Config): S };
type Fn<S, R> = (msg: Message, self: S) => R;

export declare function filter<S = Config>(def: Fn<S, boolean> | (Init<S> & { filter: Fn<S, boolean> })): PluginDefinition;
export declare function map<S = Config>(def: Fn<S, OutputLike> | (Init<S> & { map: Fn<S, OutputLike> })): PluginDefinition;
export declare function filterMap<S = Config>(
  def: Fn<S, OutputLike | null | undefined> | (Init<S> & { filterMap: Fn<S, OutputLike | null | undefined> }),
): PluginDefinition;
export declare function flatMap<S = Config>(
  def: Fn<S, Iterable<OutputLike> | null | undefined> | (Init<S> & { flatMap: Fn<S, Iterable<OutputLike> | null | undefined> }),
): PluginDefinition;
export declare function route<S = Config>(
  def: Fn<S, string | null | undefined> | (Init<S> & { route: Fn<S, string | null | undefined> }),
): PluginDefinition;
export declare function plugin<S = Config>(
  def: Fn<S, Outcome | OutputLike[] | OutputLike> | (Init<S> & { process: Fn<S, Outcome | OutputLike[] | OutputLike> }),
): PluginDefinition;

export interface Idempotency {
  by: 'key' | 'header' | 'field';
  name?: string;
  path?: string;
  windowMs: number;
}
export declare function byKey(opts?: { windowMs?: number }): Idempotency;
export declare function byHeader(name: string, opts?: { windowMs?: number }): Idempotency;
export declare function byField(path: string, opts?: { windowMs?: number }): Idempotency;
/** `key`, `header:NAME` or `field:PATH` from config; `what` names the key in errors. */
export declare function selector(what: string, spec: string, opts?: { windowMs?: number }): Idempotency;
export declare function select(sel: Idempotency, msg: Message): string | undefined;

export declare function handler<S = Config>(
  def: Init<S> & {
    idempotency?: Idempotency | ((self: S) => Idempotency | null | undefined) | null;
    /** Outputs: an array; one value is one output; null/undefined none. */
    handle: Fn<S, OutputLike[] | OutputLike | null | undefined>;
  },
): PluginDefinition;

export interface Window {
  /** Inclusive, ms since the epoch. */
  startMs: number;
  /** Exclusive. */
  endMs: number;
}

export declare function aggregate<S = Config, A = any>(
  def: Init<S> & {
    windowMs: number | ((self: S) => number);
    key(msg: Message, self: S): string;
    /** The input's time (default: its append time). */
    time?(msg: Message, self: S): number;
    /** The first accumulator of a key (default undefined). */
    initial?: A | (() => A);
    add(acc: A, msg: Message, self: S): A;
    emit(key: string, window: Window, acc: A, self: S): OutputLike;
  },
): PluginDefinition;

/** The component's imports (`weir:plugin/log@0.2.0`, `weir:plugin/state@0.2.0`) or stand-ins. */
export interface Host {
  log?: { write(level: 'trace' | 'debug' | 'info' | 'warn' | 'error', message: string): void };
  state?: {
    get(key: Uint8Array): Uint8Array | undefined;
    set(key: Uint8Array, value: Uint8Array, ttlMs: bigint | undefined): void;
    delete(key: Uint8Array): void;
  };
}

/** The `init`/`process` exports over the packed ABI (the generated entry calls this). */
export declare function component(
  definition: PluginDefinition | { init?(config: Config): unknown; process(msg: Message, self: any): unknown },
  host?: Host,
): { init(config: Array<[string, string]>): void; process(batch: Uint8Array): Uint8Array };

/** Run plugins without a server, through the same codec as the component. */
export declare namespace testing {
  interface TestOutput {
    value: Uint8Array;
    key: string | null;
    keyBytes: Uint8Array | null;
    headers: Record<string, string>;
    headerList: Array<[string, string]>;
    topic: string | null;
    text(): string;
    json<T = any>(): T;
    header(name: string): string | undefined;
  }
  type TestOutcome =
    | { kind: 'keep' }
    | { kind: 'drop' }
    | { kind: 'emit'; outputs: TestOutput[] }
    | { kind: 'forward'; topic: string }
    | { kind: 'fail'; message: string; retryable: boolean };
  interface RunOptions {
    config?: Record<string, string | number | boolean> | Array<[string, string]>;
    /** Initial entries (text, bytes, or values stored as JSON), or a MemoryState to share between runs. */
    state?: Record<string, unknown> | MemoryState;
    /** The state clock and the default timestamp of plain inputs (default: now). */
    now?: number;
    topic?: string;
  }
  /** Text, bytes, `message(...)`, or any other value as a JSON payload. */
  type Input = Message | Payload;
  function message(value: Payload, init?: MessageInit): Message;
  function instance(definition: PluginDefinition, opts?: RunOptions): {
    state: MemoryState;
    logs: Array<{ level: string; message: string }>;
    run(inputs: Input[] | Input): TestOutcome[];
  };
  function run(
    definition: PluginDefinition,
    inputs: Input[] | Input,
    opts?: RunOptions,
  ): TestOutcome[] & { state: MemoryState; logs: Array<{ level: string; message: string }> };
}

/** The packed WPB2 batch / WPR2 result codec (advanced: tests and tools). */
export declare namespace codec {
  class PackError extends Error {}
  function writeBatch(topic: string, messages: Array<{ offset?: number; timestampMs?: number; partition?: number; key?: Uint8Array | null; value: Uint8Array; headers?: Array<[string, string]> }>): Uint8Array;
  function readResult(buf: Uint8Array, inputs: number): Array<Record<string, any>>;
}

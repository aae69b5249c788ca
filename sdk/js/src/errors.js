// Failures of one message (retryable or fatal) and `abort`, which traps the whole instance.

/** A failure of one message; the pipeline's failure policy reads `retryable`. */
export class WeirError extends Error {
  constructor(message, retryable = false) {
    super(message);
    this.name = retryable ? 'Retryable' : 'Fatal';
    this.retryable = retryable;
  }
}

/** Something outside the message failed and may succeed later: tried again with backoff. */
export class Retryable extends WeirError {
  constructor(message) {
    super(message, true);
  }
}

/** The message itself is bad: retrying cannot help (dead-letter or halt, as the policy says). */
export class Fatal extends WeirError {
  constructor(message) {
    super(message, false);
  }
}

/** The sentinel `abort` throws; the SDK lets it escape the export so the instance traps. */
export class Abort extends Error {
  constructor(reason) {
    super(reason);
    this.name = 'Abort';
  }
}

let abortHook = () => {};

/** Called with the reason before the sentinel is thrown (the component logs it). */
export function onAbort(hook) {
  abortHook = hook;
}

/** Give up on this instance, like a Rust panic: the host discards it and the failure policy applies. */
export function abort(reason = 'aborted') {
  abortHook(String(reason));
  throw new Abort(String(reason));
}

/**
 * Whether `e` is the engine running out of memory (SpiderMonkey throws the string "out of memory"):
 * the instance hit its memory limit, so it must trap and be replaced, not carry on half-broken.
 */
export function isOutOfMemory(e) {
  return e === 'out of memory' || (e instanceof Error && e.name === 'InternalError' && /out of memory/i.test(e.message));
}

/** What a thrown value means for its message: its text and whether retrying may help. */
export function describe(e) {
  if (e instanceof WeirError) return { message: e.message, retryable: e.retryable };
  // An unexpected exception is a bug or bad data: fatal, named so the dead letter says which.
  if (e instanceof Error) return { message: `${e.name}: ${e.message}`, retryable: false };
  return { message: String(e), retryable: false };
}

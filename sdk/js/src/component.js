// The glue between the `weir:plugin@0.2.0` exports and a plugin definition: one packed batch in, one packed result out.
import { Abort, describe, isOutOfMemory, onAbort } from './errors.js';
import { Config } from './config.js';
import { BatchView, ResultWriter } from './codec.js';
import { Message, resolve } from './message.js';
import { asPlugin } from './kinds.js';
import { setStateBackend } from './state.js';
import { log, setLogSink } from './log.js';

/**
 * `{init, process}` over the packed ABI for `definition`; `host` is {log, state}: the component's
 * imports (the generated entry passes them) or in-memory stand-ins (`testing`).
 */
export function component(definition, host = {}) {
  const plugin = asPlugin(definition);
  if (host.state) setStateBackend(host.state);
  if (host.log) setLogSink(host.log);
  onAbort((reason) => {
    log.error(`abort: ${reason}`);
    // The host quotes what a trapped plugin printed, so the dead letter names the reason.
    if (typeof console !== 'undefined') console.error(`abort: ${reason}`);
  });
  const writer = new ResultWriter();
  let instance = null;

  /** The outcome of one input written to the result; the input's own failure never spoils the batch. */
  function record(msg) {
    let outcome, outs;
    try {
      outcome = instance.process(msg);
      // Resolved before anything is written, so a bad output fails its input alone.
      if (outcome.kind === 'emit') outs = outcome.outputs.map((o) => resolve(o, msg, msg));
    } catch (e) {
      // Escapes the export: the instance traps, as `abort` promises (and as a full heap demands).
      if (e instanceof Abort || isOutOfMemory(e)) throw e;
      const { message, retryable } = describe(e);
      return writer.fail(message, retryable);
    }
    switch (outcome.kind) {
      case 'keep': return writer.keep();
      case 'drop': return writer.drop();
      case 'forward': return writer.forward(outcome.topic);
      case 'fail': return writer.fail(outcome.message, outcome.retryable);
      default:
        // The input unchanged goes back as a code, not as bytes.
        if (outs.length === 1 && outs[0].unchanged) return outs[0].topic === null ? writer.keep() : writer.forward(outs[0].topic);
        return writer.emit(outs);
    }
  }

  return {
    init(pairs) {
      try {
        instance = plugin.create(new Config(pairs));
      } catch (e) {
        if (e instanceof Abort) throw e;
        // componentize-js turns a thrown string into `err(string)`; an Error object would trap.
        throw describe(e).message;
      }
    },

    process(buf) {
      let batch;
      try {
        batch = new BatchView(buf);
      } catch {
        // Unreadable: no outcomes, which the host refuses and reports as a contract breach.
        writer.reset();
        return writer.finish();
      }
      writer.reset();
      for (let i = 0; i < batch.count; i++) {
        if (instance === null) writer.fail('process called before init succeeded', false);
        else record(Message.packed(batch, i));
      }
      return writer.finish();
    },
  };
}

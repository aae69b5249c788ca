//! The glue between the generated `weir:plugin@0.2.0` exports and a [`Plugin`]: one packed
//! batch in, one packed result out ([`crate::packed`]).

use std::cell::RefCell;

use crate::bindings::weir::plugin::{log as wit_log, types as wit};
use crate::message::SharedBatch;
use crate::packed::{Entry, OutputRef, ResultWriter};
use crate::{Config, Message, Outcome, Output, Plugin};

pub use wit::Level;

/// `init` export: build the plugin, or explain which config key is wrong.
pub fn init<P: Plugin>(slot: &RefCell<Option<P>>, config: Vec<(String, String)>) -> Result<(), String> {
    let config = Config::from_pairs(config);
    let plugin = P::init(&config).map_err(|e| e.message().to_string())?;
    *slot.borrow_mut() = Some(plugin);
    Ok(())
}

/// `process` export: read the packed batch in place, run the plugin on each message, and
/// pack one outcome per input, in order. An output identical to its input crosses back as a
/// code (keep, or forward to a topic), not as bytes.
pub fn process<P: Plugin>(slot: &RefCell<Option<P>>, batch: Vec<u8>) -> Vec<u8> {
    let batch = match SharedBatch::new(batch) {
        Ok(b) => b,
        // The host sent something unreadable: no outcomes, which the host refuses and reports.
        Err(_) => return ResultWriter::new(0).finish(),
    };
    let n = batch.view().len();
    let mut out = ResultWriter::new(n);
    let mut guard = slot.borrow_mut();
    let Some(plugin) = guard.as_mut() else {
        (0..n).for_each(|_| out.fail("process called before init succeeded", false));
        return out.finish();
    };
    let view = batch.view();
    for i in 0..n {
        // The plugin owns its message; an emitted output is compared with the entry in the
        // batch, so no copy of the input is kept for it.
        let entry = view.get(i);
        match plugin.process(Message::packed(&batch, &entry)) {
            Ok(Outcome::Keep) => out.keep(),
            Ok(Outcome::Drop) => out.drop_input(),
            Ok(Outcome::Forward(topic)) => out.forward(&topic),
            Ok(Outcome::Emit(outputs)) => emit(&mut out, &entry, &outputs),
            Err(e) => out.fail(e.message(), e.is_retryable()),
        }
    }
    out.finish()
}

/// Whether `output` carries exactly the input's key, payload and headers (then it crosses
/// back as a code, not as bytes); the headers are compared in place, nothing decoded.
fn unchanged(input: &Entry<'_>, output: &Output) -> bool {
    let mut mine = input.headers();
    output.key.as_deref() == input.key
        && output.value == input.value
        && output.headers.iter().all(|(n, v)| mine.next() == Some((n.as_str(), v.as_str())))
        && mine.next().is_none()
}

fn emit(out: &mut ResultWriter, input: &Entry<'_>, outputs: &[Output]) {
    if let [one] = outputs
        && unchanged(input, one)
    {
        return match &one.topic {
            None => out.keep(),
            Some(topic) => out.forward(topic),
        };
    }
    out.emit(outputs.iter().map(|o| OutputRef {
        key: o.key.as_deref(),
        value: &o.value,
        headers: o.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect(),
        topic: o.topic.as_deref(),
    }));
}

/// Write a log line through the host.
pub fn log(level: Level, message: &str) {
    wit_log::write(level, message);
}

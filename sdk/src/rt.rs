//! The glue between the generated `weir:plugin` exports and a [`Plugin`]: one call per batch
//! in, one outcome per message out.

use std::cell::RefCell;
use std::rc::Rc;

use crate::bindings::weir::plugin::{log as wit_log, types as wit};
use crate::{Config, Message, Outcome, Plugin};

pub use wit::Level;

/// `init` export: build the plugin, or explain which config key is wrong.
pub fn init<P: Plugin>(slot: &RefCell<Option<P>>, config: Vec<(String, String)>) -> Result<(), String> {
    let config = Config::from_pairs(config);
    let plugin = P::init(&config).map_err(|e| e.message().to_string())?;
    *slot.borrow_mut() = Some(plugin);
    Ok(())
}

/// `process` export: one outcome per input, in order, whatever the plugin returns.
pub fn process<P: Plugin>(slot: &RefCell<Option<P>>, batch: wit::Batch) -> Vec<wit::Outcome> {
    let mut guard = slot.borrow_mut();
    let Some(plugin) = guard.as_mut() else {
        let fail = not_initialised();
        return batch.messages.iter().map(|_| fail.clone()).collect();
    };
    let topic: Rc<str> = Rc::from(batch.topic);
    batch.messages.into_iter().map(|m| to_wit(plugin.process(Message::from_wit(m, topic.clone())))).collect()
}

fn to_wit(result: Result<Outcome, crate::Error>) -> wit::Outcome {
    match result {
        Ok(Outcome::Emit(outputs)) => wit::Outcome::Emit(outputs.into_iter().map(|o| o.into_wit()).collect()),
        Ok(Outcome::Keep) => wit::Outcome::Keep,
        Ok(Outcome::Drop) => wit::Outcome::Drop,
        Err(e) => wit::Outcome::Fail(wit::Failure { retryable: e.is_retryable(), message: e.message().to_string() }),
    }
}

fn not_initialised() -> wit::Outcome {
    wit::Outcome::Fail(wit::Failure { message: "process called before init succeeded".to_string(), retryable: false })
}

/// Write a log line through the host.
pub fn log(level: Level, message: &str) {
    wit_log::write(level, message);
}

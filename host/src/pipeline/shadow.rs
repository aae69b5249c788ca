//! Shadow deploys: a candidate version runs beside the live one on the same input, emitting
//! nothing and writing no state; its outcomes are compared with the live ones here.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::runtime::{Message, Outcome};

/// Differences kept per plugin as samples.
pub const SAMPLES_MAX: usize = 20;
/// Characters of an outcome kept in a sample.
const SAMPLE_CHARS: usize = 300;

/// What `weir plugin diff NAME` shows.
#[derive(Debug, Clone, Default)]
pub struct ShadowReport {
    /// Plugin name.
    pub plugin: String,
    /// The shadow version compared, if one is deployed.
    pub shadow_version: Option<u32>,
    /// The live version it was compared with.
    pub live_version: Option<u32>,
    /// Inputs on which both versions produced the same outcome.
    pub matched: u64,
    /// Inputs on which they differed (including shadow failures).
    pub differed: u64,
    /// Shadow calls that trapped or broke the contract.
    pub shadow_failures: u64,
    /// Up to 20 differences, oldest first.
    pub samples: Vec<DiffSample>,
    /// How the shadow's declared schemas differ from the live version's, one line each.
    pub schema_changes: Vec<String>,
}

/// One input on which the versions disagreed.
#[derive(Debug, Clone)]
pub struct DiffSample {
    /// Pipeline.
    pub pipeline: String,
    /// Step, from 1.
    pub step: usize,
    /// Source partition.
    pub partition: u32,
    /// Source offset.
    pub offset: u64,
    /// The live outcome, abbreviated.
    pub live: String,
    /// The shadow outcome, abbreviated.
    pub shadow: String,
}

/// Running comparisons, per plugin name.
#[derive(Default)]
pub(crate) struct ShadowBoard {
    reports: Mutex<HashMap<String, ShadowReport>>,
}

impl ShadowBoard {
    /// Start a fresh comparison for a new shadow (or none).
    pub(crate) fn reset(&self, plugin: &str, live: Option<u32>, shadow: Option<u32>) {
        let report = ShadowReport {
            plugin: plugin.to_string(),
            live_version: live,
            shadow_version: shadow,
            ..Default::default()
        };
        self.reports.lock().expect("shadow board").insert(plugin.to_string(), report);
    }

    /// The comparison so far.
    pub(crate) fn report(&self, plugin: &str) -> Option<ShadowReport> {
        self.reports.lock().expect("shadow board").get(plugin).cloned()
    }

    /// Compare one batch's outcomes on `inputs`, by their effect: an output identical to its
    /// input is the same as keeping (or forwarding) it, whichever ABI version said so.
    pub(crate) fn compare(
        &self,
        plugin: &str,
        at: (&str, usize, u32),
        inputs: &[Message],
        live: &[Outcome],
        shadow: Result<&[Outcome], String>,
    ) {
        let offsets: Vec<u64> = inputs.iter().map(|m| m.offset).collect();
        let mut reports = self.reports.lock().expect("shadow board");
        let Some(r) = reports.get_mut(plugin) else { return };
        let (pipeline, step, partition) = at;
        let sample = |r: &mut ShadowReport, offset: u64, live: String, shadow: String| {
            if r.samples.len() < SAMPLES_MAX {
                r.samples.push(DiffSample {
                    pipeline: pipeline.to_string(),
                    step: step + 1,
                    partition,
                    offset,
                    live,
                    shadow,
                });
            }
        };
        match shadow {
            Err(e) => {
                r.shadow_failures += 1;
                r.differed += offsets.len() as u64;
                sample(r, offsets[0], format!("{} outcomes", live.len()), cut(&format!("failed: {e}")));
            }
            Ok(shadow) => {
                for (((l, s), offset), input) in live.iter().zip(shadow).zip(&offsets).zip(inputs) {
                    if effect(l, input) == effect(s, input) {
                        r.matched += 1;
                    } else {
                        r.differed += 1;
                        sample(r, *offset, describe(l), describe(s));
                    }
                }
            }
        }
    }
}

/// What an outcome does to its input: one unchanged output is a keep (or a forward).
fn effect<'a>(o: &'a Outcome, input: &Message) -> std::borrow::Cow<'a, Outcome> {
    if let Outcome::Emit(outs) = o
        && let [one] = outs.as_slice()
        && one.key == input.key
        && one.value == input.value
        && one.headers == input.headers
    {
        return std::borrow::Cow::Owned(match &one.topic {
            None => Outcome::Keep,
            Some(t) => Outcome::Forward(t.clone()),
        });
    }
    std::borrow::Cow::Borrowed(o)
}

/// An outcome in a line: `emit 1: {"a":1}`, `drop`, `fail: reason`.
fn describe(o: &Outcome) -> String {
    cut(&match o {
        Outcome::Emit(outs) => {
            let shown: Vec<String> = outs
                .iter()
                .map(|o| {
                    let to = o.topic.as_ref().map(|t| format!("→{t} ")).unwrap_or_default();
                    format!("{to}{}", String::from_utf8_lossy(&o.value))
                })
                .collect();
            format!("emit {}: {}", outs.len(), shown.join(" | "))
        }
        Outcome::Keep => "keep (unchanged)".into(),
        Outcome::Forward(t) => format!("forward (unchanged) →{t}"),
        Outcome::Drop => "drop".into(),
        Outcome::Fail(f) => format!("fail: {}", f.message),
    })
}

fn cut(s: &str) -> String {
    if s.chars().count() <= SAMPLE_CHARS {
        return s.to_string();
    }
    let mut out: String = s.chars().take(SAMPLE_CHARS).collect();
    out.push('…');
    out
}

//! The seven compatibility levels: which earlier versions a new schema is checked against
//! (the newest, or every one for the transitive levels) and in which direction — BACKWARD:
//! the new schema reads data written with the old; FORWARD: the old reads the new; FULL: both.

use super::format::Parsed;
use super::{Result, SchemaError};

/// A subject's (or the registry's) compatibility level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compatibility {
    /// No checks.
    None,
    /// The new schema reads the newest version's data.
    Backward,
    /// The new schema reads every version's data.
    BackwardTransitive,
    /// The newest version reads the new schema's data.
    Forward,
    /// Every version reads the new schema's data.
    ForwardTransitive,
    /// Backward and forward with the newest version.
    Full,
    /// Backward and forward with every version.
    FullTransitive,
}

impl Compatibility {
    /// Every level, for listings and errors.
    pub const ALL: [Compatibility; 7] = [
        Compatibility::None,
        Compatibility::Backward,
        Compatibility::BackwardTransitive,
        Compatibility::Forward,
        Compatibility::ForwardTransitive,
        Compatibility::Full,
        Compatibility::FullTransitive,
    ];

    /// The API's name.
    pub fn name(self) -> &'static str {
        match self {
            Compatibility::None => "NONE",
            Compatibility::Backward => "BACKWARD",
            Compatibility::BackwardTransitive => "BACKWARD_TRANSITIVE",
            Compatibility::Forward => "FORWARD",
            Compatibility::ForwardTransitive => "FORWARD_TRANSITIVE",
            Compatibility::Full => "FULL",
            Compatibility::FullTransitive => "FULL_TRANSITIVE",
        }
    }

    /// From the API's name (case-insensitive).
    pub fn parse(s: &str) -> Result<Compatibility> {
        Compatibility::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| SchemaError::InvalidCompatibility(s.to_string()))
    }

    /// Whether every earlier version is checked, not only the newest.
    pub fn transitive(self) -> bool {
        matches!(
            self,
            Compatibility::BackwardTransitive | Compatibility::ForwardTransitive | Compatibility::FullTransitive
        )
    }

    /// Why `new` may not follow `earlier` at this level (empty: it may).
    pub fn check(self, new: &Parsed, earlier: &Parsed) -> Vec<String> {
        let backward =
            || new.can_read(earlier).into_iter().map(|r| format!("the new schema cannot read its data: {r}"));
        let forward =
            || earlier.can_read(new).into_iter().map(|r| format!("it cannot read the new schema's data: {r}"));
        match self {
            Compatibility::None => Vec::new(),
            Compatibility::Backward | Compatibility::BackwardTransitive => backward().collect(),
            Compatibility::Forward | Compatibility::ForwardTransitive => forward().collect(),
            Compatibility::Full | Compatibility::FullTransitive => backward().chain(forward()).collect(),
        }
    }
}

/// A stored level.
pub(super) fn decode(bytes: &[u8]) -> Result<Compatibility> {
    Compatibility::parse(&String::from_utf8_lossy(bytes))
}

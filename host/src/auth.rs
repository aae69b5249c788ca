//! Who may do what: tokens from `--auth-token-file`, their grants, and the [`Authority`] that
//! holds the current token set (reloadable while the server runs).
//!
//! Token file, one token per line (`#` starts a comment):
//!
//! ```text
//! s3cret-admin-token                      # bare token: every permission on everything
//! ops:0ps-token admin:*                   # named token (the name shows in logs)
//! app:app-token write:orders* read:orders* read:jobs
//! ```
//!
//! Grants are `PERMISSION:PATTERN`: `read` (fetch, consume, receive and ack, describe, list,
//! status, group membership), `write` (produce, send, publish, request), `admin` (create,
//! delete, deploy, pipelines, bindings, state edits; implies read and write). Patterns match
//! topic, queue, exchange, pipeline, plugin or Kafka group names, with `*` as a wildcard.
//!
//! This module knows tokens and grants only. What each request needs is decided in one place,
//! the broker's access check (`broker::access`); pipelines ask the [`Authority`] for their
//! owner's current grants when they route outputs.

use std::borrow::Cow;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// What a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Permission {
    /// Look and consume.
    Read,
    /// Append and send.
    Write,
    /// Change the server's configuration.
    Admin,
}

impl Permission {
    /// The word used in token files and messages.
    pub fn word(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Write => "write",
            Permission::Admin => "admin",
        }
    }
}

/// What kind of thing a resource name names (for messages; patterns match names of any kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A topic.
    Topic,
    /// A queue.
    Queue,
    /// An exchange.
    Exchange,
    /// A pipeline.
    Pipeline,
    /// A plugin.
    Plugin,
    /// A Kafka consumer group (membership and descriptions; its offsets belong to topics).
    Group,
    /// A schema registry subject.
    Subject,
}

impl Kind {
    fn word(self) -> &'static str {
        match self {
            Kind::Topic => "topic",
            Kind::Queue => "queue",
            Kind::Exchange => "exchange",
            Kind::Pipeline => "pipeline",
            Kind::Plugin => "plugin",
            Kind::Group => "group",
            Kind::Subject => "subject",
        }
    }
}

/// One permission on one resource (or on any resource, for requests that name none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need<'a> {
    /// What is needed.
    pub permission: Permission,
    /// On what: `None` is satisfied by any grant of the permission.
    pub resource: Option<(Kind, Cow<'a, str>)>,
    /// Why, when it is not the request itself: "its source", "a binding's destination".
    pub why: Option<&'static str>,
}

impl<'a> Need<'a> {
    /// `permission` on `name` of kind `kind`.
    pub fn on(permission: Permission, kind: Kind, name: impl Into<Cow<'a, str>>) -> Need<'a> {
        Need { permission, resource: Some((kind, name.into())), why: None }
    }

    /// `permission` on anything.
    pub fn any(permission: Permission) -> Need<'static> {
        Need { permission, resource: None, why: None }
    }

    /// The same need, explained.
    pub fn because(mut self, why: &'static str) -> Need<'a> {
        self.why = Some(why);
        self
    }
}

/// Why access was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No token, or one the server does not know (any more).
    #[error("{0}")]
    Unauthenticated(String),
    /// The token lacks a grant.
    #[error("{0}")]
    Forbidden(String),
    /// A token set was offered to a server that runs without one.
    #[error("this server was started without --auth-token-file; restart it with one to require tokens")]
    NotEnforced,
}

/// Why a token file cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenFileError {
    /// The file cannot be read.
    #[error("cannot read the token file {}: {source}", path.display())]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line is malformed; `why` says how.
    #[error("{}line {line}: {why}", file.as_ref().map(|p| format!("{}: ", p.display())).unwrap_or_default())]
    Line {
        /// The file, when read from one.
        file: Option<std::path::PathBuf>,
        /// Line number, from 1.
        line: usize,
        /// What is wrong with it.
        why: String,
    },
    /// No token at all.
    #[error("no tokens in the file: a server with an empty token file would refuse everyone")]
    Empty,
}

/// One `PERMISSION:PATTERN` grant.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Grant {
    permission: Permission,
    pattern: String,
}

/// A token's name and grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The token's name (or `token-N` for unnamed lines).
    pub name: String,
    grants: Vec<Grant>,
}

impl Identity {
    /// Whether a grant covers `need`.
    pub fn allows(&self, need: &Need<'_>) -> bool {
        self.grants.iter().any(|g| {
            (g.permission == need.permission || g.permission == Permission::Admin)
                && need.resource.as_ref().is_none_or(|(_, r)| glob(&g.pattern, r))
        })
    }

    /// `(permission, pattern)` of each grant.
    pub fn grants(&self) -> impl Iterator<Item = (Permission, &str)> {
        self.grants.iter().map(|g| (g.permission, g.pattern.as_str()))
    }

    /// Refuse unless a grant covers every need; the error names the token, the permission,
    /// the resource and the grant to ask for.
    pub fn require(&self, needs: &[Need<'_>]) -> Result<(), AuthError> {
        match needs.iter().find(|n| !self.allows(n)) {
            None => Ok(()),
            Some(n) => Err(AuthError::Forbidden(self.refusal(n))),
        }
    }

    /// "token `x` has no write permission on topic `t` (its sink); ask for a grant like write:t".
    pub fn refusal(&self, need: &Need<'_>) -> String {
        let (what, pattern) = match &need.resource {
            Some((kind, name)) => (format!(" on {} `{name}`", kind.word()), name.as_ref()),
            None => (String::new(), "*"),
        };
        let why = need.why.map(|w| format!(" ({w})")).unwrap_or_default();
        format!(
            "token `{}` has no {} permission{what}{why}; ask for a grant like {}:{pattern}",
            self.name,
            need.permission.word(),
            need.permission.word()
        )
    }
}

/// The tokens a server accepts.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    entries: Vec<(String, Arc<Identity>)>,
}

impl Tokens {
    /// Read a token file.
    pub fn load(path: &Path) -> Result<Tokens, TokenFileError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| TokenFileError::Read { path: path.to_path_buf(), source })?;
        Tokens::parse(&text).map_err(|e| match e {
            TokenFileError::Line { line, why, .. } => TokenFileError::Line { file: Some(path.into()), line, why },
            other => other,
        })
    }

    /// Parse token-file text.
    pub fn parse(text: &str) -> Result<Tokens, TokenFileError> {
        let bad = |n: usize, why: String| TokenFileError::Line { file: None, line: n + 1, why };
        let mut entries = Vec::new();
        for (n, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut words = line.split_whitespace();
            let first = words.next().expect("non-empty line");
            let (name, token) = match first.split_once(':') {
                Some((name, token)) => (name.to_string(), token.to_string()),
                None => (format!("token-{}", n + 1), first.to_string()),
            };
            if token.len() < 8 {
                return Err(bad(n, "tokens must be at least 8 characters".into()));
            }
            if entries.iter().any(|(_, id): &(String, Arc<Identity>)| id.name == name) {
                return Err(bad(n, format!("a token named `{name}` is already defined")));
            }
            let mut grants = words.map(|w| parse_grant(w).map_err(|e| bad(n, e))).collect::<Result<Vec<_>, _>>()?;
            if grants.is_empty() {
                grants.push(Grant { permission: Permission::Admin, pattern: "*".into() });
            }
            entries.push((token, Arc::new(Identity { name, grants })));
        }
        if entries.is_empty() {
            return Err(TokenFileError::Empty);
        }
        Ok(Tokens { entries })
    }

    /// The identity of `token`, if it is one of ours.
    pub fn identify(&self, token: Option<&str>) -> Result<Arc<Identity>, AuthError> {
        let Some(token) = token else {
            return Err(AuthError::Unauthenticated(
                "this server requires a token: pass --token or set WEIR_TOKEN".into(),
            ));
        };
        self.entries
            .iter()
            // Compared in full every time, so timing does not reveal a matching prefix.
            .find(|(t, _)| constant_time_eq(t.as_bytes(), token.as_bytes()))
            .map(|(_, id)| id.clone())
            .ok_or_else(|| AuthError::Unauthenticated("the token is not valid for this server".into()))
    }

    /// The identity named `name`.
    pub fn named(&self, name: &str) -> Option<Arc<Identity>> {
        self.entries.iter().find(|(_, id)| id.name == name).map(|(_, id)| id.clone())
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn parse_grant(word: &str) -> Result<Grant, String> {
    let (perm, pattern) = word.split_once(':').ok_or_else(|| format!("grant {word:?} is not PERMISSION:PATTERN"))?;
    let permission = match perm {
        "read" => Permission::Read,
        "write" => Permission::Write,
        "admin" => Permission::Admin,
        other => return Err(format!("unknown permission {other:?}: use read, write or admin")),
    };
    if pattern.is_empty() {
        return Err(format!("grant {word:?} has an empty pattern (use * for everything)"));
    }
    Ok(Grant { permission, pattern: pattern.to_string() })
}

/// `*` matches any run of characters.
fn glob(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, rest)) => {
            let Some(after) = name.strip_prefix(head) else { return false };
            (0..=after.len()).filter(|i| after.is_char_boundary(*i)).any(|i| glob(rest, &after[i..]))
        }
    }
}

/// The token set in force. Without a token file every request is served (the authority is
/// *open*); with one, the set can be replaced while the server runs, and everything that
/// holds an identity notices through [`Authority::generation`].
#[derive(Debug, Default)]
pub struct Authority {
    /// `None`: open (no `--auth-token-file`). Never changes between open and closed.
    tokens: Option<RwLock<Arc<Tokens>>>,
    /// Bumped on every reload.
    generation: AtomicU64,
}

impl Authority {
    /// Serve everyone: no tokens, no checks.
    pub fn open() -> Authority {
        Authority::default()
    }

    /// Require one of `tokens`.
    pub fn with_tokens(tokens: Tokens) -> Authority {
        Authority { tokens: Some(RwLock::new(Arc::new(tokens))), generation: AtomicU64::new(0) }
    }

    /// Whether tokens are required.
    pub fn is_enforced(&self) -> bool {
        self.tokens.is_some()
    }

    /// Changes whenever the token set does.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Put a new token set in force. Refused on an open authority: turning authentication on
    /// needs a restart with `--auth-token-file`.
    pub fn replace(&self, tokens: Tokens) -> Result<(), AuthError> {
        let Some(lock) = &self.tokens else { return Err(AuthError::NotEnforced) };
        *lock.write().expect("tokens") = Arc::new(tokens);
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// Who presents `token`: `Ok(None)` on an open authority.
    pub fn identify(&self, token: Option<&str>) -> Result<Option<Arc<Identity>>, AuthError> {
        match &self.tokens {
            None => Ok(None),
            Some(lock) => lock.read().expect("tokens").identify(token).map(Some),
        }
    }

    /// The current identity named `name` (a pipeline's owner): `Ok(None)` on an open
    /// authority, an error if the token is gone.
    pub fn named(&self, name: &str) -> Result<Option<Arc<Identity>>, AuthError> {
        match &self.tokens {
            None => Ok(None),
            Some(lock) => lock.read().expect("tokens").named(name).map(Some).ok_or_else(|| {
                AuthError::Unauthenticated(format!("token `{name}` is no longer in the server's token file"))
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("*", "anything"));
        assert!(glob("orders*", "orders-eu"));
        assert!(glob("*-eu", "orders-eu"));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("orders*", "billing"));
        assert!(!glob("orders", "orders-eu"));
    }

    #[test]
    fn token_files_parse_and_grants_apply() {
        let t = Tokens::parse("# comment\nroot-token-1234\napp:app-token-99 write:orders* read:orders*\n").unwrap();
        let app = t.identify(Some("app-token-99")).unwrap();
        assert_eq!(app.name, "app");
        assert!(app.require(&[Need::on(Permission::Write, Kind::Topic, "orders-eu")]).is_ok());
        let e = app.require(&[Need::on(Permission::Write, Kind::Topic, "billing").because("its sink")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "token `app` has no write permission on topic `billing` (its sink); ask for a grant like write:billing"
        );
        assert!(app.require(&[Need::on(Permission::Admin, Kind::Topic, "orders-eu")]).is_err());
        assert!(app.require(&[Need::any(Permission::Read)]).is_ok());
        let root = t.identify(Some("root-token-1234")).unwrap();
        assert!(root.require(&[Need::on(Permission::Admin, Kind::Topic, "x")]).is_ok());
        assert!(matches!(t.identify(Some("nope")), Err(AuthError::Unauthenticated(_))));
        assert!(matches!(t.identify(None), Err(AuthError::Unauthenticated(_))));
        assert!(Tokens::parse("short").is_err());
        assert!(Tokens::parse("x:long-enough-token fly:*").is_err());
        assert!(Tokens::parse("\n# nothing\n").is_err());
        assert!(Tokens::parse("a:long-enough-1\na:long-enough-2").is_err(), "names are unique");
    }

    #[test]
    fn a_reload_changes_identities_and_the_generation() {
        let a = Authority::with_tokens(Tokens::parse("m:mallory-1 read:m*").unwrap());
        let g = a.generation();
        assert!(a.named("m").unwrap().is_some());
        a.replace(Tokens::parse("o:other-token-1").unwrap()).unwrap();
        assert_ne!(a.generation(), g);
        assert!(a.named("m").is_err());
        assert!(a.identify(Some("mallory-1")).is_err());
        assert!(Authority::open().identify(None).unwrap().is_none());
        assert!(Authority::open().replace(Tokens::default()).is_err());
    }
}

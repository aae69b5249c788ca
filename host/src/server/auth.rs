//! Authentication and access control: tokens from `--auth-token-file`, checked at `Hello`;
//! each request then needs a grant for its permission on its resource.
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
//! topic, queue, exchange, pipeline or plugin names, with `*` as a wildcard.

use std::path::Path;

use crate::wire::{ErrorCode, Request, WireError};

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

/// The tokens a server accepts.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    entries: Vec<(String, Identity)>,
}

impl Tokens {
    /// Read a token file.
    pub fn load(path: &Path) -> Result<Tokens, String> {
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("cannot read the token file {}: {e}", path.display()))?;
        Tokens::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parse token-file text.
    pub fn parse(text: &str) -> Result<Tokens, String> {
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
                return Err(format!("line {}: tokens must be at least 8 characters", n + 1));
            }
            let mut grants = words
                .map(|w| parse_grant(w).map_err(|e| format!("line {}: {e}", n + 1)))
                .collect::<Result<Vec<_>, _>>()?;
            if grants.is_empty() {
                grants.push(Grant { permission: Permission::Admin, pattern: "*".into() });
            }
            entries.push((token, Identity { name, grants }));
        }
        if entries.is_empty() {
            return Err("no tokens in the file: a server with an empty token file would refuse everyone".into());
        }
        Ok(Tokens { entries })
    }

    /// The identity of `token`, if it is one of ours.
    pub fn identify(&self, token: Option<&str>) -> Result<Identity, WireError> {
        let Some(token) = token else {
            return Err(WireError::new(
                ErrorCode::Unauthenticated,
                "this server requires a token: pass --token or set WEIR_TOKEN",
            ));
        };
        self.entries
            .iter()
            // Compared in full every time, so timing does not reveal a matching prefix.
            .find(|(t, _)| constant_time_eq(t.as_bytes(), token.as_bytes()))
            .map(|(_, id)| id.clone())
            .ok_or_else(|| WireError::new(ErrorCode::Unauthenticated, "the token is not valid for this server"))
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

impl Identity {
    /// Refuse `request` unless a grant covers it.
    pub fn authorize(&self, request: &Request) -> Result<(), WireError> {
        let (needed, resource) = requirement(request);
        let ok = self.grants.iter().any(|g| {
            (g.permission == needed || g.permission == Permission::Admin)
                && resource.is_none_or(|r| glob(&g.pattern, r))
        });
        if ok {
            return Ok(());
        }
        let what = resource.map(|r| format!(" on `{r}`")).unwrap_or_default();
        Err(WireError::new(
            ErrorCode::Forbidden,
            format!(
                "token `{}` has no {needed:?} permission{what}; ask for a grant like {}:{}",
                self.name,
                perm_word(needed),
                resource.unwrap_or("*")
            ),
        ))
    }
}

fn perm_word(p: Permission) -> &'static str {
    match p {
        Permission::Read => "read",
        Permission::Write => "write",
        Permission::Admin => "admin",
    }
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

/// The permission a request needs and the resource it acts on (`None`: any resource).
fn requirement(r: &Request) -> (Permission, Option<&str>) {
    use Permission::{Admin, Read, Write};
    match r {
        Request::Hello { .. } => (Read, None),
        Request::Produce { topic, .. } | Request::Request { topic, .. } => (Write, Some(topic)),
        Request::QueueSend { queue, .. } => (Write, Some(queue)),
        Request::Publish { exchange, .. } => (Write, Some(exchange)),
        Request::Fetch { topic, .. }
        | Request::DescribeTopic { name: topic }
        | Request::FetchOffsets { topic, .. }
        | Request::OffsetsForTime { topic, .. }
        | Request::CommitOffsets { topic, .. }
        | Request::JoinGroup { topic, .. }
        | Request::Heartbeat { topic, .. }
        | Request::LeaveGroup { topic, .. } => (Read, Some(topic)),
        Request::QueueReceive { queue, .. }
        | Request::QueueAck { queue, .. }
        | Request::QueueNack { queue, .. }
        | Request::QueueExtend { queue, .. }
        | Request::DescribeQueue { name: queue } => (Read, Some(queue)),
        Request::PipelineStatus { name }
        | Request::StateGet { pipeline: name, .. }
        | Request::StateList { pipeline: name, .. } => (Read, Some(name)),
        Request::PluginVersions { name }
        | Request::PluginDiff { name }
        | Request::DescribePlugin { reference: name } => (Read, Some(name)),
        Request::ListTopics
        | Request::ListGroups
        | Request::ListQueues
        | Request::ListPlugins
        | Request::ListPipelines
        | Request::ListExchanges
        | Request::DescribeGroups => (Read, None),
        Request::CreateTopic { name, .. } | Request::DeleteTopic { name } => (Admin, Some(name)),
        Request::CreateQueue { name, .. } | Request::DeleteQueue { name } | Request::PurgeQueue { name } => {
            (Admin, Some(name))
        }
        Request::CreateExchange { name, .. } | Request::DeleteExchange { name } => (Admin, Some(name)),
        Request::Bind { exchange, .. } | Request::Unbind { exchange, .. } => (Admin, Some(exchange)),
        Request::DeployPlugin { name, .. }
        | Request::RemovePlugin { name }
        | Request::RollbackPlugin { name, .. }
        | Request::PromotePlugin { name } => (Admin, Some(name)),
        Request::CreatePipeline { spec } | Request::ApplyPipeline { spec } => (Admin, Some(&spec.name)),
        Request::DeletePipeline { name }
        | Request::PausePipeline { name }
        | Request::ResumePipeline { name }
        | Request::ResetPipeline { name, .. }
        | Request::StateDelete { pipeline: name, .. } => (Admin, Some(name)),
        // Anything added later needs admin until it is classified here.
        #[allow(unreachable_patterns)]
        _ => (Admin, None),
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
        let produce = Request::Produce { topic: "orders-eu".into(), partition: None, records: vec![] };
        assert!(app.authorize(&produce).is_ok());
        let other = Request::Produce { topic: "billing".into(), partition: None, records: vec![] };
        let e = app.authorize(&other).unwrap_err();
        assert_eq!(e.code, ErrorCode::Forbidden);
        assert!(e.message.contains("`billing`"), "{}", e.message);
        assert!(app.authorize(&Request::DeleteTopic { name: "orders-eu".into() }).is_err());
        let root = t.identify(Some("root-token-1234")).unwrap();
        assert!(root.authorize(&Request::DeleteTopic { name: "x".into() }).is_ok());
        assert_eq!(t.identify(Some("nope")).unwrap_err().code, ErrorCode::Unauthenticated);
        assert_eq!(t.identify(None).unwrap_err().code, ErrorCode::Unauthenticated);
        assert!(Tokens::parse("short").is_err());
        assert!(Tokens::parse("x:long-enough-token fly:*").is_err());
        assert!(Tokens::parse("\n# nothing\n").is_err());
    }
}

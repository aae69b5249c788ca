//! `weir schema …`: the schema registry, through the HTTP door's Confluent-compatible API
//! (the same paths Confluent's clients use), so what the CLI shows is what they see.

use anyhow::{Context, bail};
use clap::Subcommand;
use serde_json::{Value, json};

use super::output;

/// Confluent's media type, sent and expected.
const MEDIA: &str = "application/vnd.schemaregistry.v1+json";

/// Where the registry is, and the token (the global `--token`).
#[derive(clap::Args)]
pub struct SchemaArgs {
    /// The HTTP door of the weir server (`weir serve --http-listen`).
    #[arg(long, env = "WEIR_REGISTRY", default_value = "http://127.0.0.1:7080")]
    registry: String,

    #[command(subcommand)]
    cmd: SchemaCmd,
}

#[derive(Subcommand)]
enum SchemaCmd {
    /// Register a schema under a subject (a compatible one only, at the subject's level).
    Register {
        /// Subject, e.g. `orders-value`.
        subject: String,
        /// The schema file (`.avsc`, `.json`, `.proto`).
        #[arg(long)]
        file: std::path::PathBuf,
        /// Format: avro, json or protobuf (default: from the file's extension).
        #[arg(long = "type")]
        kind: Option<String>,
        /// A reference: NAME=SUBJECT:VERSION (repeatable).
        #[arg(long = "reference", value_name = "NAME=SUBJECT:VERSION")]
        references: Vec<String>,
    },
    /// Show a subject's version (default: the latest), or a schema by id.
    Get {
        /// Subject.
        subject: Option<String>,
        /// Version number or `latest`.
        #[arg(long, default_value = "latest")]
        version: String,
        /// A schema id instead of a subject.
        #[arg(long, conflicts_with = "subject")]
        id: Option<u32>,
    },
    /// Subjects and their versions.
    List {
        /// Include soft-deleted subjects.
        #[arg(long)]
        deleted: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Whether a schema may follow a subject's version, and why not.
    Check {
        /// Subject.
        subject: String,
        /// The schema file.
        #[arg(long)]
        file: std::path::PathBuf,
        /// Format (default: from the file's extension).
        #[arg(long = "type")]
        kind: Option<String>,
        /// The version to check against (`latest`: at transitive levels, every version).
        #[arg(long, default_value = "latest")]
        version: String,
    },
    /// Delete a subject or one version: soft, then with --permanent for good.
    Delete {
        /// Subject.
        subject: String,
        /// Only this version.
        #[arg(long)]
        version: Option<String>,
        /// After a soft delete: remove for good.
        #[arg(long)]
        permanent: bool,
    },
    /// Show or set the compatibility level (of a subject, or the registry's default).
    Config {
        /// Subject (default: the registry's level).
        subject: Option<String>,
        /// Set it: NONE, BACKWARD, BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL,
        /// FULL_TRANSITIVE.
        #[arg(long)]
        set: Option<String>,
    },
}

/// Run one `weir schema` subcommand.
pub async fn run(args: SchemaArgs, token: Option<String>) -> anyhow::Result<()> {
    let r = Registry { base: args.registry.trim_end_matches('/').to_string(), token, http: reqwest::Client::new() };
    match args.cmd {
        SchemaCmd::Register { subject, file, kind, references } => {
            let body = schema_body(&file, kind.as_deref(), &references)?;
            let v = r.call(reqwest::Method::POST, &format!("/subjects/{}/versions", enc(&subject)), Some(body)).await?;
            println!("registered {subject} version {} (schema id {})", v["version"], v["id"]);
        }
        SchemaCmd::Get { subject, version, id } => {
            let v = match (subject, id) {
                (_, Some(id)) => r.call(reqwest::Method::GET, &format!("/schemas/ids/{id}"), None).await?,
                (Some(s), None) => {
                    r.call(reqwest::Method::GET, &format!("/subjects/{}/versions/{}", enc(&s), enc(&version)), None)
                        .await?
                }
                (None, None) => bail!("name a subject, or a schema with --id"),
            };
            output::json(&v)?;
        }
        SchemaCmd::List { deleted, json } => list(&r, deleted, json).await?,
        SchemaCmd::Check { subject, file, kind, version } => {
            let body = schema_body(&file, kind.as_deref(), &[])?;
            let path = format!("/compatibility/subjects/{}/versions/{}?verbose=true", enc(&subject), enc(&version));
            let v = r.call(reqwest::Method::POST, &path, Some(body)).await?;
            if v["is_compatible"] == true {
                println!("compatible with {subject} version {version}");
            } else {
                println!("NOT compatible with {subject} version {version}:");
                for m in v["messages"].as_array().into_iter().flatten() {
                    println!("  {}", m.as_str().unwrap_or_default());
                }
                bail!("the schema would be refused");
            }
        }
        SchemaCmd::Delete { subject, version, permanent } => {
            let path = match &version {
                Some(v) => format!("/subjects/{}/versions/{}?permanent={permanent}", enc(&subject), enc(v)),
                None => format!("/subjects/{}?permanent={permanent}", enc(&subject)),
            };
            let v = r.call(reqwest::Method::DELETE, &path, None).await?;
            let how = if permanent { "permanently " } else { "soft-" };
            println!("{how}deleted {subject} version(s) {v}");
        }
        SchemaCmd::Config { subject, set } => {
            let path = match &subject {
                Some(s) => format!("/config/{}?defaultToGlobal=true", enc(s)),
                None => "/config".to_string(),
            };
            let v = match set {
                Some(level) => {
                    let path = path.split('?').next().unwrap_or(&path).to_string();
                    let v = r.call(reqwest::Method::PUT, &path, Some(json!({"compatibility": level}))).await?;
                    v["compatibility"].clone()
                }
                None => r.call(reqwest::Method::GET, &path, None).await?["compatibilityLevel"].clone(),
            };
            println!("{}: {}", subject.as_deref().unwrap_or("(registry default)"), v.as_str().unwrap_or_default());
        }
    }
    Ok(())
}

async fn list(r: &Registry, deleted: bool, as_json: bool) -> anyhow::Result<()> {
    let subjects = r.call(reqwest::Method::GET, &format!("/subjects?deleted={deleted}"), None).await?;
    let mut rows = Vec::new();
    for s in subjects.as_array().into_iter().flatten().filter_map(Value::as_str) {
        let path = format!("/subjects/{}/versions/latest?deleted={deleted}", enc(s));
        let latest = r.call(reqwest::Method::GET, &path, None).await?;
        let versions =
            r.call(reqwest::Method::GET, &format!("/subjects/{}/versions?deleted={deleted}", enc(s)), None).await?;
        let kind = latest["schemaType"].as_str().unwrap_or("AVRO").to_string();
        rows.push((s.to_string(), kind, versions, latest["version"].clone(), latest["id"].clone()));
    }
    if as_json {
        let all: Vec<Value> = rows
            .iter()
            .map(|(s, k, v, l, id)| json!({"subject": s, "type": k, "versions": v, "latest": l, "id": id}))
            .collect();
        return output::json(&all);
    }
    let table = rows
        .into_iter()
        .map(|(s, k, v, l, id)| vec![s, k, v.as_array().map_or(0, Vec::len).to_string(), l.to_string(), id.to_string()])
        .collect();
    output::table(&["SUBJECT", "TYPE", "VERSIONS", "LATEST", "ID"], table);
    Ok(())
}

/// The registry's HTTP API.
struct Registry {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Registry {
    /// One request; a Confluent error body becomes an error naming its code.
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let mut req = self.http.request(method, format!("{}{path}", self.base)).header("accept", MEDIA);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.header("content-type", MEDIA).body(b.to_string());
        }
        let response = req.send().await.with_context(|| format!("reaching the schema registry at {}", self.base))?;
        let status = response.status();
        let v: Value = response.json().await.with_context(|| format!("reading the registry's answer ({status})"))?;
        if !status.is_success() {
            let message = v["message"].as_str().or(v["error"]["message"].as_str()).unwrap_or("no message");
            bail!("{message} (HTTP {status}, error code {})", v["error_code"]);
        }
        Ok(v)
    }
}

/// A registration body from a schema file.
fn schema_body(file: &std::path::Path, kind: Option<&str>, references: &[String]) -> anyhow::Result<Value> {
    let schema = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let kind = match kind {
        Some(k) => k.to_ascii_uppercase(),
        None => match file.extension().and_then(|e| e.to_str()) {
            Some("proto") => "PROTOBUF".into(),
            Some("json") => "JSON".into(),
            _ => "AVRO".into(),
        },
    };
    let mut refs = Vec::new();
    for r in references {
        let (name, at) = r.split_once('=').with_context(|| format!("reference {r:?}: use NAME=SUBJECT:VERSION"))?;
        let (subject, version) =
            at.rsplit_once(':').with_context(|| format!("reference {r:?}: use NAME=SUBJECT:VERSION"))?;
        let version: u32 = version.parse().with_context(|| format!("reference {r:?}: the version is a number"))?;
        refs.push(json!({"name": name, "subject": subject, "version": version}));
    }
    Ok(json!({"schema": schema, "schemaType": kind, "references": refs}))
}

/// A path segment, percent-encoded.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

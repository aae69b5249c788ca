//! `weir exchange …`, `weir publish` and `weir request`.

use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use weir_client::client::Client;
use weir_client::wire::{Binding, Destination, ExchangeType};

use super::output;

#[derive(Subcommand)]
pub enum ExchangeCmd {
    /// Create an exchange.
    Create {
        /// Exchange name.
        name: String,
        /// direct: key equals; topic: AMQP patterns (`*` one word, `#` zero or more);
        /// fanout: every binding; headers: header matches.
        #[arg(long = "type", value_parser = super::kebab::<ExchangeType>)]
        kind: ExchangeType,
        /// Exchange that receives messages nothing here matches.
        #[arg(long)]
        alternate: Option<String>,
    },
    /// Bind a topic or queue.
    Bind {
        /// Exchange name.
        name: String,
        /// `topic:NAME` or `queue:NAME`.
        #[arg(long, value_parser = Destination::parse)]
        to: Destination,
        /// Binding key (direct) or pattern (topic).
        #[arg(long)]
        key: Option<String>,
        /// Header match `K=V` (headers exchanges); repeat for more.
        #[arg(long = "match", value_parser = super::parse_kv)]
        matches: Vec<(String, String)>,
        /// Match when any header pair matches (default: all must).
        #[arg(long)]
        any: bool,
    },
    /// Remove bindings to a destination.
    Unbind {
        /// Exchange name.
        name: String,
        /// `topic:NAME` or `queue:NAME`.
        #[arg(long, value_parser = Destination::parse)]
        to: Destination,
        /// Only the binding with this key.
        #[arg(long)]
        key: Option<String>,
    },
    /// Every exchange with its bindings.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete an exchange.
    Delete {
        /// Exchange name.
        name: String,
    },
}

#[derive(Args)]
pub struct PublishArgs {
    /// Exchange.
    exchange: String,
    /// The message; without it, each stdin line is one.
    body: Option<String>,
    /// Routing key.
    #[arg(long, default_value = "")]
    routing_key: String,
    /// Header `NAME=VALUE`; repeat for more.
    #[arg(long = "header", value_parser = super::parse_kv)]
    headers: Vec<(String, String)>,
}

#[derive(Args)]
pub struct RequestArgs {
    /// Topic the request goes to.
    topic: String,
    /// The request body (default: empty).
    #[arg(default_value = "")]
    body: String,
    /// How long to wait for the reply.
    #[arg(long, default_value = "5s", value_parser = super::parse_duration)]
    timeout: Duration,
    /// Header `NAME=VALUE`; repeat for more.
    #[arg(long = "header", value_parser = super::parse_kv)]
    headers: Vec<(String, String)>,
}

pub async fn run(client: &Client, cmd: ExchangeCmd) -> anyhow::Result<()> {
    match cmd {
        ExchangeCmd::Create { name, kind, alternate } => {
            client.create_exchange(&name, kind, alternate).await?;
            println!("created {} exchange {name}", format!("{kind:?}").to_lowercase());
        }
        ExchangeCmd::Bind { name, to, key, matches, any } => {
            let shown = to.to_string();
            client.bind(&name, Binding { destination: to, key, matches, match_any: any }).await?;
            println!("bound {shown} to {name}");
        }
        ExchangeCmd::Unbind { name, to, key } => {
            client.unbind(&name, to, key).await?;
            println!("unbound");
        }
        ExchangeCmd::List { json } => {
            let all = client.list_exchanges().await?;
            if json {
                return output::json(&all);
            }
            let mut rows = Vec::new();
            for e in &all {
                let kind = format!("{:?}", e.kind).to_lowercase();
                if e.bindings.is_empty() {
                    rows.push(vec![e.name.clone(), kind.clone(), "-".into(), "-".into()]);
                }
                for b in &e.bindings {
                    let rule = match (&b.key, b.matches.is_empty()) {
                        (Some(k), _) => k.clone(),
                        (None, false) => {
                            let pairs: Vec<String> = b.matches.iter().map(|(k, v)| format!("{k}={v}")).collect();
                            format!("{} ({})", pairs.join(","), if b.match_any { "any" } else { "all" })
                        }
                        (None, true) => "*".into(),
                    };
                    rows.push(vec![e.name.clone(), kind.clone(), rule, b.destination.to_string()]);
                }
            }
            output::table(&["EXCHANGE", "TYPE", "KEY/MATCH", "DESTINATION"], rows);
        }
        ExchangeCmd::Delete { name } => {
            client.delete_exchange(&name).await?;
            println!("deleted exchange {name}");
        }
    }
    Ok(())
}

pub async fn publish(client: &Client, args: PublishArgs) -> anyhow::Result<()> {
    let bodies = match args.body {
        Some(b) => vec![b],
        None => {
            std::io::read_to_string(std::io::stdin()).context("reading stdin")?.lines().map(str::to_string).collect()
        }
    };
    for body in bodies {
        let dests = client.publish(&args.exchange, &args.routing_key, body.into_bytes(), args.headers.clone()).await?;
        eprintln!("routed to {}", dests.join(", "));
    }
    Ok(())
}

pub async fn request(client: &Client, args: RequestArgs) -> anyhow::Result<()> {
    let reply = client.request_reply(&args.topic, args.body.into_bytes(), args.headers, args.timeout).await?;
    println!("{}", String::from_utf8_lossy(&reply.value));
    Ok(())
}

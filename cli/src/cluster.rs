//! `weir cluster status`: the live nodes, the NATS server the answering node talks to, and
//! which node owns each pipeline partition with its committed progress.

use clap::Subcommand;
use weir_client::client::Client;

use super::output;

#[derive(Subcommand)]
pub enum ClusterCmd {
    /// Nodes, partition owners and NATS health, as the node at --server sees them.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(client: &Client, cmd: ClusterCmd) -> anyhow::Result<()> {
    let ClusterCmd::Status { json } = cmd;
    let s = client.cluster_status().await?;
    if json {
        return output::json(&s);
    }
    let health = if s.connected { "connected" } else { "NOT CONNECTED (reconnecting)" };
    println!("node {} — NATS {}, {health}", s.node, s.nats);
    println!(
        "this node: {} commits, {} refused by a newer owner, {} takeovers",
        s.commits, s.fenced_commits, s.takeovers
    );
    println!();
    let nodes = s
        .nodes
        .iter()
        .map(|n| {
            vec![
                n.id.clone(),
                n.native.clone(),
                n.kafka.clone().unwrap_or_default(),
                n.http.clone().unwrap_or_default(),
            ]
        })
        .collect();
    output::table(&["NODE", "NATIVE", "KAFKA", "HTTP"], nodes);
    if !s.partitions.is_empty() {
        println!();
        let rows = s
            .partitions
            .iter()
            .map(|p| {
                vec![
                    p.pipeline.clone(),
                    p.partition.to_string(),
                    p.owner.clone().unwrap_or_else(|| "-".into()),
                    p.committed.map_or("-".into(), |o| o.to_string()),
                    p.committed_by.clone().unwrap_or_else(|| "-".into()),
                    p.versions.join(" "),
                ]
            })
            .collect();
        output::table(&["PIPELINE", "PARTITION", "OWNER", "COMMITTED", "BY", "VERSIONS"], rows);
    }
    Ok(())
}

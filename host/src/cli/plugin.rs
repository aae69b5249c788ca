//! `weir plugin …`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use weir_host::client::Client;

use super::output;

#[derive(Subcommand)]
pub enum PluginCmd {
    /// Deploy a component as the next version of NAME.
    Deploy {
        /// Plugin name.
        name: String,
        /// The component, built for wasm32-wasip2.
        file: PathBuf,
    },
    /// The latest version of every plugin.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(client: &Client, cmd: PluginCmd) -> anyhow::Result<()> {
    match cmd {
        PluginCmd::Deploy { name, file } => {
            let wasm =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let info = client.deploy_plugin(&name, wasm).await?;
            println!(
                "deployed {} ({}, {}, sha {})",
                info.label(),
                info.world,
                output::bytes(info.size),
                &info.hash[..12]
            );
        }
        PluginCmd::List { json } => {
            let plugins = client.list_plugins().await?;
            if json {
                return output::json(&plugins);
            }
            let rows = plugins
                .iter()
                .map(|p| {
                    vec![
                        p.name.clone(),
                        p.version.to_string(),
                        output::bytes(p.size),
                        p.hash[..12].to_string(),
                        output::time(p.deployed_ms),
                    ]
                })
                .collect();
            output::table(&["PLUGIN", "VERSION", "SIZE", "HASH", "DEPLOYED"], rows);
        }
    }
    Ok(())
}

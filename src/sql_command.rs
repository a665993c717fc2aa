//! `hourlake sql`: the REPL over a lake folder or a Flight SQL server; with `-c` or a
//! script on stdin it runs the statements and exits (non-zero if one failed).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};
use hourlake_repl::{Backend, OutputFormat, ReplOptions};
use hourlake_sql::SessionFactory;

use crate::config::CommonArgs;

/// How results are printed (`\format` changes it in the REPL).
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
    Vertical,
}

/// Options of `hourlake sql`.
#[derive(Debug, Clone, Args)]
pub struct SqlArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Query a running server over Flight SQL instead of opening the lake, e.g.
    /// grpc://127.0.0.1:50051.
    #[arg(long, env = "HOURLAKE_CONNECT")]
    connect: Option<String>,
    /// Bearer token for --connect.
    #[arg(long, env = "HOURLAKE_TOKEN")]
    token: Option<String>,
    /// Run this SQL (statements separated by `;`) and exit.
    #[arg(short = 'c', long = "command")]
    command: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// History file of the interactive REPL. [default: ~/.hourlake_history]
    #[arg(long, env = "HOURLAKE_HISTORY")]
    history: Option<PathBuf>,
}

/// Runs the REPL or the script.
pub async fn run(args: SqlArgs) -> anyhow::Result<()> {
    let backend = match &args.connect {
        Some(url) => Backend::connect(url, args.token.clone(), None)
            .await
            .with_context(|| format!("connecting to {url}"))?,
        None => {
            let file = args.common.file()?;
            Backend::lake(SessionFactory::new(args.common.lake(&file)?))
                .context("opening the lake")?
        }
    };
    let history = args.history.clone().or_else(|| {
        std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".hourlake_history"))
    });
    let options = ReplOptions {
        command: args.command.clone(),
        format: match args.format {
            Format::Table => OutputFormat::Table,
            Format::Csv => OutputFormat::Csv,
            Format::Json => OutputFormat::Json,
            Format::Vertical => OutputFormat::Vertical,
        },
        history,
    };
    let ok = tokio::task::spawn_blocking(move || hourlake_repl::run(backend, options))
        .await
        .context("REPL thread")??;
    if ok {
        Ok(())
    } else {
        anyhow::bail!("a statement failed")
    }
}

//! `hourlake sql`: run statements against the lake and print the results.

use std::io::Read;

use anyhow::Context;
use clap::{Args, ValueEnum};
use hourlake_sql::SessionFactory;

use crate::config::CommonArgs;

/// How results are printed.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
}

/// Options of `hourlake sql`.
#[derive(Debug, Clone, Args)]
pub struct SqlArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// The SQL to run; without it, statements separated by `;` are read from stdin.
    #[arg(short = 'c', long = "command")]
    command: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

/// Runs each statement and prints its result.
pub async fn run(args: SqlArgs) -> anyhow::Result<()> {
    let file = args.common.file()?;
    let lake = args.common.lake(&file)?;
    let ctx = SessionFactory::new(lake).session().await?;
    let text = match args.command {
        Some(sql) => sql,
        None => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("reading SQL from stdin")?;
            s
        }
    };
    for statement in text.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        let batches = ctx.sql(statement).await?.collect().await?;
        let mut out = Vec::new();
        match args.format {
            Format::Table => {
                out.extend(
                    arrow::util::pretty::pretty_format_batches(&batches)?
                        .to_string()
                        .into_bytes(),
                );
                out.push(b'\n');
            }
            Format::Csv => {
                let mut w = arrow::csv::Writer::new(&mut out);
                for b in &batches {
                    w.write(b)?;
                }
            }
            Format::Json => {
                let mut w = arrow::json::LineDelimitedWriter::new(&mut out);
                for b in &batches {
                    w.write(b)?;
                }
                w.finish()?;
            }
        }
        std::io::Write::write_all(&mut std::io::stdout(), &out)?;
    }
    Ok(())
}

//! `hourlake forget-user`: erases users everywhere (raw events, dead letters, rollups and
//! their sketches, older file versions), recorded in `erasure_log` without their ids.

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use hourlake_compactor::erasure;
use hourlake_compactor::Compactor;

use crate::config::{CommonArgs, CompactArgs};

/// The command line of `hourlake forget-user`.
#[derive(Debug, Args)]
pub struct ForgetArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub compact: CompactArgs,
    /// The user ids to erase.
    #[arg(required = true, value_name = "USER_ID")]
    pub users: Vec<String>,
    /// Seconds to wait for a running compactor (which holds the tables' leases) to carry
    /// the request out; the request stays queued after that.
    #[arg(long, default_value_t = 600)]
    pub wait_secs: u64,
}

/// Queues the request, carries it out (or waits for the running compactor to), and
/// prints what was removed as JSON.
pub async fn run(args: ForgetArgs) -> anyhow::Result<()> {
    let file = args.common.file()?;
    let lake = args.common.lake(&file)?;
    let request = erasure::enqueue(&lake, &args.users)
        .await
        .context("queueing the erasure request")?;
    eprintln!(
        "erasure request {} queued for {} user(s)",
        request.id,
        request.users.len()
    );
    let compactor = Compactor::new(
        lake.clone(),
        args.compact.resolve(&file)?,
        args.compact.holder(),
    );
    let deadline = Instant::now() + Duration::from_secs(args.wait_secs);
    let mut told = false;
    loop {
        let reports = compactor
            .process_erasures()
            .await
            .context("erasing the users")?;
        if let Some(report) = reports.into_iter().find(|r| r.request_id == request.id) {
            compactor
                .release()
                .await
                .context("releasing the compactor leases")?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            return Ok(());
        }
        if !erasure::is_pending(&lake, &request.id).await? {
            println!(
                "{}",
                serde_json::json!({"request_id": request.id, "carried_out_by": "the running compactor",
                    "see": format!("SELECT * FROM erasure_log WHERE request_id = '{}'", request.id)})
            );
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "erasure request {} is still queued after {} s: the compactor holding the tables' leases carries it out on its next pass (check erasure_log)",
            request.id,
            args.wait_secs
        );
        if !told {
            eprintln!("a running compactor holds the tables' leases; waiting for it to carry the request out");
            told = true;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

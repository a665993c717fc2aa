//! Sessionization: the `sessions` table derived from the deduplicated engagement
//! events, and its rollup `sessions_hourly`.
//!
//! **What a session is.** Per user, a run of events (every engagement event type,
//! duplicates left out as [`crate::dedup`] says) in which no two consecutive events are
//! more than `session_gap` apart ([`CompactorConfig::session_gap`], 30 minutes by
//! default; exactly the gap still continues a session). Its key is
//! `<user_id>/<start microseconds>`, so recomputing it yields the same key while its
//! first event stays. Rows are partitioned by the hour of the session's start; the
//! columns are described at [`hourlake_catalog::schema::sessions`].
//!
//! **Final and provisional.** Let the horizon be the start of the first hour that is not
//! closed (`closed_after` past its end). A session is final when its last event plus
//! the gap is before the horizon: an event that could still extend it would be late
//! data. Otherwise it is written with `is_final = false` and recomputed by every pass
//! until it is final.
//!
//! **What a pass recomputes.** The `sessions` table records, as a `txn` watermark
//! ([`WATERMARK_APP_ID`]), the `engagement_events` version its rows reflect. A pass
//! (under the `engagement_events` lease, after that table's rewrites and rollups) starts
//! windows of event time from the hours that received events since the watermark
//! ([`crate::plan::hours_changed_between`]; every hour when that is unknown) and from
//! the span of the stored provisional sessions; windows then grow until every stored
//! session that comes within the gap of a window lies inside it, and windows within the
//! gap of each other merge ([`windows`]). The events of the windows are sessionized
//! alone ([`sessionize`]) — a late event may thereby merge two stored sessions, extend
//! one, or start one between two — and every start-hour partition the windows touch is
//! replaced in one commit (an overwrite of those hours carrying the watermark,
//! [`replace`]): the recomputed sessions plus the stored sessions of those hours outside
//! the windows, unchanged, streamed from the queries into files, so a pass over any
//! span of history holds only the queries' spillable state. A pass with nothing changed
//! and nothing provisional commits nothing.
//!
//! **sessions_hourly** ([`hourlake_catalog::rollup::SESSIONS_HOURLY`]) and its `ALL`
//! rows alone, `sessions_hourly_totals`, are kept by the rollup machinery
//! ([`crate::rollup`]) with `sessions` as their source: they count final sessions only. A start hour is rolled up once no provisional session starts in or
//! before it (from then on the views read its rollup rows); an hour already rolled up is
//! recomputed whenever its sessions change, so rows never go stale. Until then the
//! dashboard views read the hour's sessions raw, provisional ones included.
//!
//! Erasure (`forget-user`) deletes the users' sessions and recomputes the
//! `sessions_hourly` hours they started in ([`crate::erasure`]); retention drops both
//! tables' partitions with the rollups' (`[retention] rollups_days`).

mod replace;
mod sessionize;
#[cfg(test)]
pub(crate) mod tests;
pub mod windows;

use std::collections::BTreeSet;

use arrow::array::{Array, AsArray};
use deltalake::kernel::Transaction;
use deltalake::DeltaTable;
use hourlake_catalog::rollup::Rollup;
use hourlake_catalog::schema::{IS_FINAL, SESSION_START};
use hourlake_catalog::{Hour, Lake, TableId};
use hourlake_sql::{register_table, SessionFactory};

use self::replace::replace_hours;
pub use self::sessionize::Sessionize;
use self::windows::{extend_to_stored_sessions, hours_sql, times_sql, Window};
use crate::dedup::register_duplicates;
use crate::lease::Lease;
use crate::plan::{files_by_hour, hours_changed_between};
use crate::rollup::RollupPass;
use crate::{CompactorConfig, CompactorError};

/// The `txn` app id, in `sessions`, of the `engagement_events` version the sessions
/// reflect.
pub const WATERMARK_APP_ID: &str = "hourlake-sessions-engagement_events";

/// The table of duplicate copies the sessionization leaves out.
const DUPLICATES: &str = "duplicate_copies";

/// What one pass did to `sessions` and `sessions_hourly`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionsReport {
    /// The windows of event time sessionized again.
    pub windows: Vec<Window>,
    /// Start-hour partitions of `sessions` replaced.
    pub hours_replaced: usize,
    /// Sessions recomputed (inside the windows).
    pub sessions: usize,
    /// Of those, still provisional.
    pub provisional: usize,
    /// Stored sessions of the replaced hours carried over unchanged.
    pub carried: usize,
    /// Start hours whose `sessions_hourly` rows were recomputed.
    pub rolled_up: Vec<Hour>,
    /// `sessions_hourly` rows written.
    pub rollup_rows: usize,
}

impl SessionsReport {
    /// Whether nothing was written.
    pub fn is_idle(&self) -> bool {
        self.windows.is_empty() && self.rolled_up.is_empty()
    }
}

/// The horizon at `now_micros`: the start of the first hour that is not closed.
pub fn final_horizon(config: &CompactorConfig, now_micros: i64) -> i64 {
    let grace = i64::try_from(config.closed_after.as_micros()).unwrap_or(i64::MAX);
    Hour::of_micros(now_micros.saturating_sub(grace)).start_micros()
}

fn gap_micros(config: &CompactorConfig) -> i64 {
    i64::try_from(config.session_gap.as_micros()).unwrap_or(i64::MAX)
}

/// The `engagement_events` version `sessions` reflects, if it was ever computed.
pub async fn watermark(table: &DeltaTable) -> Result<Option<u64>, CompactorError> {
    let id = TableId::Sessions;
    let snapshot = table.snapshot().map_err(id.delta_error())?;
    let v = snapshot
        .transaction_version(table.log_store().as_ref(), WATERMARK_APP_ID)
        .await
        .map_err(id.delta_error())?;
    Ok(v.and_then(|v| u64::try_from(v).ok()))
}

/// Brings `sessions` and `sessions_hourly` up to `events` (`engagement_events`, loaded
/// at or after version `upto`, whose changes up to `upto` are then reflected), as seen
/// at `now_micros`. The caller holds the `engagement_events` lease (`lease`).
pub async fn update(
    lake: &Lake,
    factory: &SessionFactory,
    config: &CompactorConfig,
    events: &DeltaTable,
    upto: u64,
    lease: &mut Lease,
    now_micros: i64,
) -> Result<SessionsReport, CompactorError> {
    let mut sessions = lake.open_or_create(TableId::Sessions).await?;
    let gap = gap_micros(config);
    let changed = match watermark(&sessions).await? {
        Some(w) => hours_changed_between(TableId::EngagementEvents, events, w, upto).await?,
        None => None,
    };
    let changed: BTreeSet<Hour> = match changed {
        Some(hours) => hours,
        None => files_by_hour(TableId::EngagementEvents, events)?
            .into_keys()
            .collect(),
    };
    let ctx = factory.context()?;
    register_table(&ctx, TableId::Sessions.name(), &sessions).await?;
    let mut seeds: Vec<Window> = changed.iter().copied().map(Window::of_hour).collect();
    seeds.extend(provisional_span(&ctx).await?);

    let mut report = SessionsReport::default();
    // The earliest start of a provisional session after this pass (`None`: none).
    let mut provisional_from = None;
    if !seeds.is_empty() {
        let windows = extend_to_stored_sessions(&ctx, seeds, gap).await?;
        register_table(&ctx, TableId::EngagementEvents.name(), events).await?;
        let hours = hours_sql(&windows);
        let duplicates = register_duplicates(
            &ctx,
            TableId::EngagementEvents.name(),
            &hours,
            None,
            DUPLICATES,
        )
        .await?;
        let query = Sessionize {
            windows: &windows,
            gap,
            final_before: final_horizon(config, now_micros),
            source_version: events.version().unwrap_or(0),
            duplicates: (duplicates > 0).then_some(DUPLICATES),
        };
        let carried = format!(
            "SELECT * FROM {} WHERE {hours} AND NOT {}",
            TableId::Sessions.name(),
            times_sql(&windows, SESSION_START)
        );
        let watermark = Transaction::new(WATERMARK_APP_ID, i64::try_from(upto).unwrap_or(i64::MAX));
        let replaced = replace_hours(
            &ctx,
            &mut sessions,
            &query,
            chrono::Utc::now().timestamp_micros(),
            &carried,
            watermark,
            config.target_file_size,
            lease,
        )
        .await?;
        provisional_from = replaced.earliest_provisional;
        report.sessions = replaced.sessions;
        report.provisional = replaced.provisional;
        report.carried = replaced.carried;
        report.hours_replaced = replaced_hours(&windows);
        report.windows = windows;
    }
    let (rolled_up, rows) =
        update_hourly(lake, factory, &sessions, provisional_from, lease).await?;
    report.rolled_up = rolled_up;
    report.rollup_rows = rows;
    Ok(report)
}

/// Recomputes the hours of the rollups of `sessions` that need it (see the module doc): stale
/// hours (changed since its watermark, or never rolled up) that are either ready — no
/// provisional session starts at or before them (`provisional_from`) — or already rolled
/// up. Returns the hours and the rows written.
async fn update_hourly(
    lake: &Lake,
    factory: &SessionFactory,
    sessions: &DeltaTable,
    provisional_from: Option<i64>,
    lease: &mut Lease,
) -> Result<(Vec<Hour>, usize), CompactorError> {
    let upto = sessions.version().unwrap_or(0);
    let hours: Vec<Hour> = files_by_hour(TableId::Sessions, sessions)?
        .into_keys()
        .collect();
    let (mut recomputed, mut rows) = (BTreeSet::new(), 0);
    for rollup in Rollup::of_source(TableId::Sessions) {
        let mut pass = RollupPass::start(lake, factory, rollup, sessions, upto).await?;
        for &hour in &hours {
            let ready = is_settled(hour, provisional_from);
            if pass.is_stale(hour) && (ready || pass.is_rolled(hour)) {
                pass.mark(hour);
            }
        }
        if pass.stale.is_empty() {
            continue;
        }
        lease.renew().await?;
        rows += pass.recompute(factory, sessions, upto).await?;
        recomputed.extend(pass.stale);
    }
    Ok((recomputed.into_iter().collect(), rows))
}

/// The earliest start of a provisional session in `sessions` (the table), if any: the
/// start hours ending at or before it are the ones `sessions_hourly` covers once a pass
/// has run.
pub async fn first_provisional_start(
    factory: &SessionFactory,
    sessions: &DeltaTable,
) -> Result<Option<i64>, CompactorError> {
    let ctx = factory.context()?;
    register_table(&ctx, TableId::Sessions.name(), sessions).await?;
    Ok(provisional_span(&ctx).await?.map(|w| w.lo))
}

/// Whether every session starting in `hour` is final, given the earliest start of a
/// provisional one.
pub fn is_settled(hour: Hour, first_provisional_start: Option<i64>) -> bool {
    first_provisional_start.is_none_or(|p| hour.end_micros() <= p)
}

/// The span from the earliest start to the latest end of the stored provisional
/// sessions, if there are any.
async fn provisional_span(
    ctx: &datafusion::prelude::SessionContext,
) -> Result<Option<Window>, CompactorError> {
    let sql = format!(
        "SELECT min(arrow_cast({SESSION_START}, 'Int64')), max(arrow_cast(session_end, 'Int64')) \
         FROM {} WHERE NOT {IS_FINAL}",
        TableId::Sessions.name()
    );
    for batch in ctx.sql(&sql).await?.collect().await? {
        use arrow::datatypes::Int64Type;
        let (lo, hi) = (
            batch.column(0).as_primitive::<Int64Type>(),
            batch.column(1).as_primitive::<Int64Type>(),
        );
        if batch.num_rows() > 0 && !lo.is_null(0) && !hi.is_null(0) {
            return Ok(Some(Window {
                lo: lo.value(0),
                hi: hi.value(0),
            }));
        }
    }
    Ok(None)
}

/// The start-hour partitions `windows` touch.
fn replaced_hours(windows: &[Window]) -> usize {
    windows
        .iter()
        .map(|w| {
            let (first, last) = w.hours();
            let n = (last.end_micros() - first.start_micros()) / 3_600_000_000;
            usize::try_from(n).unwrap_or(0)
        })
        .sum()
}

//! Keeps a nested-loop join interruptible.
//!
//! A nested-loop join (and a cross join under a filter) works through one whole probe
//! batch against every buffered row inside a single poll while its filter matches
//! nothing: `a, b WHERE regexp_like(...)` over 20 000 × 8 192 rows is minutes of work
//! without one `await`. A cancelled or timed-out query runs on until that poll ends,
//! holding its CPU and its concurrency slot. [`SliceJoinProbes`] feeds such joins their
//! probe side through [`ProbeSlices`]: batches cut into slices sized so that one slice
//! takes a few milliseconds of the join's work, with a yield to the runtime every
//! [`YIELD_EVERY`], so cancellation and deadlines take effect within milliseconds.
//! Slices are zero-copy views; rows, order and results are unchanged.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::error::Result;
use datafusion::execution::RecordBatchStream;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::execution_plan::{ChildrenPropertiesMode, ReplaceChildrenOptions};
use datafusion::physical_plan::joins::{CrossJoinExec, NestedLoopJoinExec};
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream};
use futures::{Stream, StreamExt};

use crate::pass_through::{PassThrough, Wrapped};

/// How long a join may work between two chances for the runtime to cancel it.
pub const YIELD_EVERY: Duration = Duration::from_millis(10);

/// A slice is grown while the join takes less than this over one…
const GROW_BELOW: Duration = Duration::from_millis(1);
/// …and shrunk while it takes more than this.
const SHRINK_ABOVE: Duration = Duration::from_millis(5);

/// The rule: the probe (right) input of every nested-loop and cross join goes through
/// [`ProbeSlices`].
#[derive(Debug, Default)]
pub struct SliceJoinProbes;

impl PhysicalOptimizerRule for SliceJoinProbes {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let is_loop_join = node.is::<NestedLoopJoinExec>() || node.is::<CrossJoinExec>();
            let children = node.children();
            let already = children
                .get(1)
                .is_some_and(|probe| probe.is::<ProbeSlices>());
            if !is_loop_join || already || children.len() != 2 {
                return Ok(Transformed::no(node));
            }
            let build = Arc::clone(children[0]);
            let probe =
                Arc::new(ProbeSlices::new(Arc::clone(children[1]))) as Arc<dyn ExecutionPlan>;
            // The slices keep the probe side's partitioning and order.
            let keep = ReplaceChildrenOptions::new(ChildrenPropertiesMode::Keep);
            node.replace_children(vec![build, probe], keep)
                .map(Transformed::yes)
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "slice_join_probes"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Passes its input on in slices that keep the join above it interruptible.
pub type ProbeSlices = Wrapped<Slices>;

/// The [`PassThrough`] kind of [`ProbeSlices`].
#[derive(Debug)]
pub struct Slices;

impl PassThrough for Slices {
    const NAME: &'static str = "ProbeSlices";

    fn stream(input: SendableRecordBatchStream) -> SendableRecordBatchStream {
        Box::pin(SliceStream {
            schema: input.schema(),
            input,
            pending: None,
            slice_rows: 1,
            handed_out: None,
            last_yield: Instant::now(),
        })
    }
}

/// The stream of [`ProbeSlices`]. The time between handing out a slice and the next
/// poll is the join's work on that slice; the slice size follows it.
struct SliceStream {
    schema: SchemaRef,
    input: SendableRecordBatchStream,
    /// The batch being sliced and the offset of its next slice.
    pending: Option<(RecordBatch, usize)>,
    slice_rows: usize,
    /// When the last slice was handed out.
    handed_out: Option<Instant>,
    last_yield: Instant,
}

impl SliceStream {
    fn adapt(&mut self, now: Instant) {
        if let Some(at) = self.handed_out.take() {
            let spent = now.saturating_duration_since(at);
            if spent < GROW_BELOW {
                self.slice_rows = self.slice_rows.saturating_mul(2);
            } else if spent > SHRINK_ABOVE {
                self.slice_rows = (self.slice_rows / 2).max(1);
            }
        }
    }

    fn next_slice(&mut self, now: Instant) -> Option<RecordBatch> {
        let (batch, offset) = self.pending.as_mut()?;
        let len = self.slice_rows.min(batch.num_rows() - *offset);
        let slice = batch.slice(*offset, len);
        *offset += len;
        if *offset >= batch.num_rows() {
            self.pending = None;
        }
        self.handed_out = Some(now);
        Some(slice)
    }
}

impl Stream for SliceStream {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let now = Instant::now();
        self.adapt(now);
        if now.saturating_duration_since(self.last_yield) >= YIELD_EVERY {
            // Give the runtime its chance to cancel (or to run other tasks), then go on.
            self.last_yield = now;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        loop {
            if let Some(slice) = self.next_slice(now) {
                return Poll::Ready(Some(Ok(slice)));
            }
            match self.input.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(batch))) if batch.num_rows() > 0 => {
                    self.pending = Some((batch, 0));
                }
                Poll::Ready(Some(Ok(_empty))) => continue,
                Poll::Pending => {
                    self.last_yield = Instant::now();
                    return Poll::Pending;
                }
                other => return other,
            }
        }
    }
}

impl RecordBatchStream for SliceStream {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::physical_plan::displayable;
    use datafusion::prelude::SessionContext;

    /// A session with the rule, as hourlake's sessions have it.
    fn session() -> SessionContext {
        let mut rules = datafusion::physical_optimizer::optimizer::PhysicalOptimizer::new().rules;
        rules.push(Arc::new(SliceJoinProbes));
        let state = datafusion::execution::SessionStateBuilder::new()
            .with_default_features()
            .with_physical_optimizer_rules(rules)
            .build();
        SessionContext::new_with_state(state)
    }

    const JOIN: &str = "SELECT count(*) AS n, sum(a.value * b.value) AS s \
        FROM generate_series(1, 3000) a, generate_series(1, 2000) b \
        WHERE (a.value + b.value) % 7 = 3";

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sliced_probes_give_the_same_answer() {
        let sliced = session();
        let plan = sliced
            .sql(JOIN)
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap();
        let shown = displayable(plan.as_ref()).indent(false).to_string();
        assert!(shown.contains("ProbeSlices"), "{shown}");
        let plain = SessionContext::new();
        let answer = |ctx: SessionContext| async move {
            let batches = ctx.sql(JOIN).await.unwrap().collect().await.unwrap();
            arrow::util::pretty::pretty_format_batches(&batches)
                .unwrap()
                .to_string()
        };
        let expected = answer(plain).await;
        // Counted independently (Python over the same ranges).
        assert!(
            expected.contains("| 857142 | 1286782496714 |"),
            "{expected}"
        );
        assert_eq!(answer(sliced).await, expected);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cancelled_join_stops_within_its_slices() {
        // Without the slices, one poll is one probe batch against every buffered row:
        // 8 192 × 100 000 regexes, over a minute.
        let sql =
            "SELECT count(*) FROM generate_series(1, 100000) a, generate_series(1, 100000) b \
                   WHERE regexp_like(CAST(a.value * b.value AS VARCHAR), '^(1|2|3)+(4|5)*7$')";
        // The query runs on a runtime of its own, as in the server, so that this test
        // keeps its threads to watch it.
        let queries = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let ctx = session();
        let task = queries.spawn(async move {
            // Planned and executed there: DataFusion spawns a plan's tasks on the runtime
            // that executes it.
            let df = ctx.sql(sql).await.unwrap();
            let mut stream = df.execute_stream().await.unwrap();
            while stream.next().await.is_some() {}
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !task.is_finished(),
            "the join finished before it was cancelled"
        );
        task.abort();
        // The plan's own tasks (its partitions) are aborted with it and end at their
        // next yield. Liveness, not speed: with the slices that is milliseconds, far
        // within this bound; without them the join ran on for over a minute.
        let metrics = queries.metrics();
        let until = Instant::now() + Duration::from_secs(20);
        let mut stopped = false;
        while Instant::now() < until {
            if metrics.num_alive_tasks() == 0 {
                stopped = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left = metrics.num_alive_tasks();
        queries.shutdown_background();
        assert!(stopped, "{left} tasks of the cancelled join kept running");
    }
}

//! Sketch functions: mergeable Apache DataSketches HLL (distinct counts) and KLL
//! (quantiles), stored as their standard serialized bytes so sketches made by
//! different processes, on different days, or by Druid/Spark/Java merge.

pub mod bounded;
mod groups;
mod hashing;
pub mod hll;
pub mod quantile;

use datafusion::prelude::SessionContext;

/// Registers every hourlake function with a session.
pub fn register_all(ctx: &SessionContext) {
    hll::register(ctx);
    quantile::register(ctx);
    bounded::register(ctx);
}

//! # hourlake-query
//!
//! The query server: SQL over HTTP for dashboards, Arrow Flight SQL for BI tools,
//! recommendation lookups by user. (The analysts' REPL, `hourlake-repl`, runs its
//! statements through the same [`QueryExecutor`].)
//!
//! - [`QueryExecutor`]: the one way a statement runs — admission (concurrency slot and
//!   deadline), planning within the statement limits on a runtime of its own, the
//!   read-only guard, parameters, the cache key (none for answers that depend on the
//!   clock or chance), and rows streamed until the deadline. HTTP, Flight SQL and the
//!   REPL all run through it.
//! - [`QueryServer`]: the axum app — `POST /v1/sql` and `GET /v1/sql` (formats json,
//!   ndjson, csv, arrow), `GET /health`, `GET /metrics`, `GET /` (the live dashboard,
//!   a page built on the SQL API); ETag / `If-None-Match` and a
//!   result cache keyed by the Delta versions a query reads; read-only guard; limits
//!   (timeout, concurrency, result size, memory) and bearer-token auth.
//! - [`RecommendationIndex`]: the newest served recommendations per user, kept current
//!   from the Delta commits of `recommendation_events`, behind
//!   `GET /v1/users/{user_id}/recommendations` and the SQL table function
//!   `user_recommendations('user')`.
//! - [`FlightSqlServer`]: Arrow Flight SQL over the same session, guard and limits —
//!   statements, prepared statements with bound parameters, catalog metadata, SqlInfo,
//!   cancellation, Basic-auth handshake to a bearer token.
//! - [`ServerConfig`]: those limits and settings.
//! - [`ApiError`]: every error as JSON `{"error": {"code", "message"}}` with its status.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use hourlake_catalog::Lake;
//! use hourlake_query::{QueryExecutor, QueryServer, ServerConfig};
//! use hourlake_sql::{LiveLake, SessionFactory};
//! let live = LiveLake::new(SessionFactory::new(Lake::local("./lake")?), std::time::Duration::from_secs(1));
//! let config = ServerConfig::default();
//! let executor = Arc::new(QueryExecutor::new(Arc::new(live), &config)?);
//! let server = QueryServer::new(executor, config, Default::default())?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! server.serve(listener, std::future::pending()).await?;
//! # Ok(()) }
//! ```

mod cache;
mod config;
mod dashboard;
mod error;
mod executor;
mod flight;
mod format;
#[cfg(test)]
mod hostile_tests;
mod http;
mod lookup;
mod metrics;
mod query_string;
mod runtime;
#[cfg(test)]
mod tests;

pub use config::{
    ConfigError, LookupConfig, ServerConfig, DEFAULT_LOOKUP_LISTS_PER_USER,
    DEFAULT_LOOKUP_MAX_AGE_DAYS,
};
pub use error::ApiError;
pub use executor::{
    Admission, CancelHandle, ExecutionStats, Parameters, PlannedQuery, QueryExecutor, ResultStream,
};
pub use flight::FlightSqlServer;
pub use format::{Format, Stats};
pub use http::QueryServer;
pub use lookup::{IndexSize, RecommendationIndex, RecommendedItem, ServedRecommendations};
pub use metrics::LookupIndexMetrics;

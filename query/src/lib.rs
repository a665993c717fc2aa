//! # hourlake-query
//!
//! The query server: SQL over HTTP for dashboards, Arrow Flight SQL for BI tools,
//! recommendation lookups, metrics, auth and limits; and the analysts' REPL.
//!
//! Not built yet: this crate is a placeholder for the query-server issue.

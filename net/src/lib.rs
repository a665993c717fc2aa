//! # hourlake-net
//!
//! What every hourlake network endpoint shares, so the query server and the event
//! collector defend themselves the same way:
//!
//! - [`Tokens`] (`tokens`): the accepted bearer tokens, compared in constant time;
//!   [`credentials`] reads an `Authorization` header of a given scheme.
//! - [`serve`] (`connections`): the HTTP connection loop with the timeouts a public
//!   server needs (slow request headers, a client that stops reading).
//!
//! ```no_run
//! # async fn demo(router: axum::Router) -> std::io::Result<()> {
//! let tokens = hourlake_net::Tokens::new(&["s3cret".to_string()]).expect("not blank");
//! assert!(tokens.allows(Some("Bearer s3cret")));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! hourlake_net::serve(listener, router, std::time::Duration::from_secs(30), std::future::pending()).await
//! # }
//! ```

mod connections;
mod tokens;

pub use connections::serve;
pub use tokens::{credentials, EmptyToken, Tokens};

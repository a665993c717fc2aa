//! Flight SQL authentication: the `Handshake` exchanges Basic credentials (any user
//! name, a configured token as password) for a bearer token, and every other call must
//! carry `authorization: Bearer <token>` — checked once, in front of the whole service.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use base64::Engine;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::Status;

use hourlake_net::Tokens;

/// The gRPC path suffix of the one call that may come without a bearer token.
const HANDSHAKE: &str = "/Handshake";

/// The user name and password of an `authorization: Basic ...` header value.
pub fn basic_credentials(authorization: &str) -> Option<(String, String)> {
    let encoded = hourlake_net::credentials(authorization, "Basic")?;
    // Padded or not: Go's Flight client (ADBC) sends unpadded base64.
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let decoded = engine.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// Wraps a gRPC service so that every call but `Handshake` needs an accepted bearer token.
#[derive(Clone)]
pub struct BearerCheck<S> {
    inner: S,
    tokens: Arc<Tokens>,
}

impl<S> BearerCheck<S> {
    /// Checks calls to `inner` against `tokens` (none configured: all pass).
    pub fn new(inner: S, tokens: Arc<Tokens>) -> BearerCheck<S> {
        BearerCheck { inner, tokens }
    }
}

impl<S: NamedService> NamedService for BearerCheck<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> tower::Service<http::Request<Body>> for BearerCheck<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<http::Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let allowed = request.uri().path().ends_with(HANDSHAKE)
            || self.tokens.allows(
                request
                    .headers()
                    .get(http::header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok()),
            );
        if allowed {
            Box::pin(self.inner.call(request))
        } else {
            let status = Status::unauthenticated(
                "a valid `authorization: Bearer <token>` header is required \
                 (or a Handshake with Basic credentials whose password is a token)",
            );
            Box::pin(std::future::ready(Ok(status.into_http())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::basic_credentials;

    #[test]
    fn basic_headers() {
        // "analyst:s3cret"
        assert_eq!(
            basic_credentials("Basic YW5hbHlzdDpzM2NyZXQ="),
            Some(("analyst".to_string(), "s3cret".to_string()))
        );
        // "analyst:tk", unpadded as the Go client sends it.
        assert_eq!(
            basic_credentials("Basic YW5hbHlzdDp0aw"),
            Some(("analyst".to_string(), "tk".to_string()))
        );
        assert_eq!(basic_credentials("Bearer YW5hbHlzdDpzM2NyZXQ="), None);
        assert_eq!(basic_credentials("Basic !!!"), None);
        // "nocolon"
        assert_eq!(basic_credentials("Basic bm9jb2xvbg=="), None);
    }
}

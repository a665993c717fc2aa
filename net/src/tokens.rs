//! Bearer-token authentication, compared in constant time.

use subtle::ConstantTimeEq;

/// A blank accepted token: a stray comma in a token list would let in clients that send
/// no token at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an accepted token is empty (a stray comma in the token list?); tokens must not be blank")]
pub struct EmptyToken;

/// The accepted tokens; none configured means every request is let in.
#[derive(Debug, Clone, Default)]
pub struct Tokens(Vec<Vec<u8>>);

/// The credentials of an `Authorization` header value whose scheme is `scheme`
/// (compared without regard to case, as HTTP schemes are).
pub fn credentials<'a>(authorization: &'a str, scheme: &str) -> Option<&'a str> {
    let (given, rest) = authorization.trim_start().split_once(' ')?;
    given.eq_ignore_ascii_case(scheme).then_some(rest.trim())
}

impl Tokens {
    /// Accepts these tokens. An empty (or blank) token is refused: a stray comma in a
    /// token list must not let in a client that sends no token at all.
    pub fn new(tokens: &[String]) -> Result<Tokens, EmptyToken> {
        if tokens.iter().any(|t| t.trim().is_empty()) {
            return Err(EmptyToken);
        }
        Ok(Tokens(
            tokens
                .iter()
                .map(|t| t.trim().as_bytes().to_vec())
                .collect(),
        ))
    }

    /// Whether authentication is on.
    pub fn required(&self) -> bool {
        !self.0.is_empty()
    }

    /// Whether `token` is an accepted token. Every configured token is compared, so
    /// timing does not tell which one matched; an empty token never matches.
    pub fn accepts(&self, token: &str) -> bool {
        let token = token.trim().as_bytes();
        if token.is_empty() {
            return false;
        }
        self.0
            .iter()
            .fold(subtle::Choice::from(0), |acc, t| {
                acc | t.as_slice().ct_eq(token)
            })
            .into()
    }

    /// Whether an `Authorization` header value carries an accepted bearer token (or no
    /// authentication is configured).
    pub fn allows(&self, authorization: Option<&str>) -> bool {
        if !self.required() {
            return true;
        }
        authorization
            .and_then(|h| credentials(h, "Bearer"))
            .is_some_and(|token| self.accepts(token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens() {
        let open = Tokens::default();
        assert!(open.allows(None));
        let t = Tokens::new(&["s3cret".into(), "other".into()]).unwrap();
        assert!(t.allows(Some("Bearer s3cret")));
        assert!(t.allows(Some("Bearer other")));
        // The scheme is case-insensitive.
        assert!(t.allows(Some("BEARER s3cret")));
        assert!(t.allows(Some("bearer s3cret")));
        assert!(!t.allows(Some("Bearer s3cre")));
        assert!(!t.allows(Some("Basic s3cret")));
        assert!(!t.allows(Some("Bearer ")));
        assert!(!t.allows(Some("Bearer")));
        assert!(!t.allows(Some("")));
        assert!(!t.allows(None));
        assert!(!t.accepts(""));
    }

    #[test]
    fn empty_tokens_are_refused() {
        for tokens in [
            vec!["secret".to_string(), String::new()],
            vec![" ".to_string()],
        ] {
            assert!(matches!(Tokens::new(&tokens), Err(EmptyToken)));
        }
    }
}

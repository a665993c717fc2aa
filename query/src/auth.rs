//! Bearer-token authentication, compared in constant time.

use subtle::ConstantTimeEq;

/// The accepted tokens; none configured means every request is let in.
#[derive(Debug, Clone, Default)]
pub struct Tokens(Vec<Vec<u8>>);

impl Tokens {
    /// Accepts these tokens.
    pub fn new(tokens: &[String]) -> Tokens {
        Tokens(tokens.iter().map(|t| t.as_bytes().to_vec()).collect())
    }

    /// Whether authentication is on.
    pub fn required(&self) -> bool {
        !self.0.is_empty()
    }

    /// Whether an `Authorization` header value carries an accepted bearer token.
    /// Every configured token is compared, so timing does not tell which one matched.
    pub fn allows(&self, authorization: Option<&str>) -> bool {
        if !self.required() {
            return true;
        }
        let Some(token) = authorization.and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        }) else {
            return false;
        };
        let token = token.trim().as_bytes();
        self.0
            .iter()
            .fold(subtle::Choice::from(0), |acc, t| {
                acc | t.as_slice().ct_eq(token)
            })
            .into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens() {
        let open = Tokens::default();
        assert!(open.allows(None));
        let t = Tokens::new(&["s3cret".into(), "other".into()]);
        assert!(t.allows(Some("Bearer s3cret")));
        assert!(t.allows(Some("Bearer other")));
        assert!(!t.allows(Some("Bearer s3cre")));
        assert!(!t.allows(Some("Basic s3cret")));
        assert!(!t.allows(None));
    }
}

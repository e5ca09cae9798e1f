//! Revoked tokens: one token by its `jti`, or every token a `sub` was issued up to the
//! moment of revocation (a token minted later for the same `sub` works). The list is kept
//! in MongoDB by the nodes; this is the pure check against a copy of it.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::{AuthError, Principal};

/// One revocation, as `POST /_auth/revoke` takes it (`jti` or `sub`) and `GET
/// /_auth/revoked` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// When, in seconds since the Unix epoch: a `sub`'s tokens issued (`iat`) up to this
    /// second are revoked.
    pub revoked_at: u64,
    /// The `sub` of the admin who revoked it.
    #[serde(default)]
    pub by: String,
}

/// The revocations in force, indexed for a check per request.
#[derive(Debug, Clone, Default)]
pub struct Revocations {
    jtis: HashSet<String>,
    subs: HashMap<String, u64>,
}

impl Revocations {
    pub fn new<'a>(list: impl IntoIterator<Item = &'a Revocation>) -> Revocations {
        let mut out = Revocations::default();
        for r in list {
            out.add(r);
        }
        out
    }

    pub fn add(&mut self, r: &Revocation) {
        if let Some(jti) = &r.jti {
            self.jtis.insert(jti.clone());
        }
        if let Some(sub) = &r.sub {
            let at = self.subs.entry(sub.clone()).or_insert(r.revoked_at);
            *at = (*at).max(r.revoked_at);
        }
    }

    /// [`AuthError::Revoked`] when `principal`'s token is revoked: its `jti` is listed, or
    /// its `sub` was revoked at or after the token was issued (a token without `iat` counts
    /// as issued before any revocation).
    pub fn check(&self, principal: &Principal) -> Result<(), AuthError> {
        if !principal.authenticated {
            return Ok(());
        }
        if principal
            .jti
            .as_ref()
            .is_some_and(|j| self.jtis.contains(j))
        {
            return Err(AuthError::Revoked);
        }
        let revoked_sub = principal
            .sub
            .as_ref()
            .and_then(|s| self.subs.get(s))
            .is_some_and(|at| principal.issued_at.is_none_or(|iat| iat <= *at));
        if revoked_sub {
            return Err(AuthError::Revoked);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Scopes;

    fn principal(sub: &str, jti: Option<&str>, iat: Option<u64>) -> Principal {
        Principal {
            sub: Some(sub.into()),
            jti: jti.map(str::to_string),
            issued_at: iat,
            authenticated: true,
            ..Principal::anonymous(Scopes::NONE)
        }
    }

    #[test]
    fn a_jti_revokes_one_token_a_sub_every_token_issued_until_then() {
        let list = [
            Revocation {
                jti: Some("t1".into()),
                sub: None,
                revoked_at: 100,
                by: "root".into(),
            },
            Revocation {
                jti: None,
                sub: Some("bob".into()),
                revoked_at: 200,
                by: "root".into(),
            },
        ];
        let r = Revocations::new(&list);
        assert_eq!(
            r.check(&principal("alice", Some("t1"), Some(50))),
            Err(AuthError::Revoked)
        );
        assert!(r.check(&principal("alice", Some("t2"), Some(50))).is_ok());
        assert_eq!(
            r.check(&principal("bob", Some("t3"), Some(200))),
            Err(AuthError::Revoked)
        );
        assert_eq!(
            r.check(&principal("bob", None, None)),
            Err(AuthError::Revoked)
        );
        assert!(r.check(&principal("bob", Some("t4"), Some(201))).is_ok());
        assert!(r.check(&Principal::anonymous(Scopes::ALL)).is_ok());
    }
}

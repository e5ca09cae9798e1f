//! Access control on the node: which scope each [`Route`] needs, and the principal a
//! request proves (see [`speedbox_common::auth`]). Every node checks every request itself,
//! so a node reached directly is as protected as the balancer.
//!
//! Routes that name a file are checked here against that name; the rest of the rules live
//! where the name or owner becomes known: each form part's name ([`crate::multipart`]), a
//! tus upload's `filename` and owner ([`crate::tus`]), a listing's prefix
//! ([`narrow_listing`]), the size limit ([`upload_limit`]).

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::{HeaderMap, Method};
use speedbox_common::auth::{
    bearer, AuthError, Authenticator, LiveAuth, Principal, Revocation, Revocations, Scope,
};

use crate::error::Result;
use crate::routes::{ListQuery, Route, TusRoute};
use crate::store::Store;

/// How often each node reads the revocations: a token revoked on one node is refused by
/// every other within this (the node that took the revocation refuses it at once).
pub const REVOCATIONS_POLL: Duration = Duration::from_millis(500);

/// What a route needs before its handler runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule<'a> {
    /// Anyone: health checks, CORS preflights, tus discovery.
    Open,
    /// `scope` on the named file, or on no one name (checked further by the handler).
    Need(Scope, Option<&'a str>),
    /// Any valid token; the handler decides with the principal (signing a link).
    Token,
}

/// The rule of `route`.
pub fn rule(route: &Route) -> Rule<'_> {
    match route {
        Route::Preflight | Route::Health | Route::Tus(TusRoute::Options) => Rule::Open,
        Route::Get { name, .. } | Route::Media(name) => Rule::Need(Scope::Read, Some(name)),
        Route::Put(name) => Rule::Need(Scope::Write, Some(name)),
        Route::Delete(name) => Rule::Need(Scope::Delete, Some(name)),
        Route::List(_) => Rule::Need(Scope::Read, None),
        Route::Multipart | Route::Tus(_) => Rule::Need(Scope::Write, None),
        Route::Revoke | Route::Revoked | Route::MintToken | Route::Metrics => {
            Rule::Need(Scope::Admin, None)
        }
        Route::Sign => Rule::Token,
    }
}

/// What a request proves itself by.
#[derive(Debug, Clone, Copy)]
pub struct Proof<'a> {
    pub headers: &'a HeaderMap,
    pub query: Option<&'a str>,
    /// A signed link's signature (`/s/<sig>/…` or `?sig=`).
    pub link: Option<&'a str>,
}

/// The principal of a request to `route`, refused (401/403, 410 for an expired link)
/// unless it may take the route. An open route needs no token and ignores one. A signed
/// link stands in for a token on the GET or PUT of a file it covers.
pub fn check(
    auth: &Authenticator,
    revoked: &Revocations,
    route: &Route,
    proof: Proof<'_>,
) -> Result<Principal> {
    let (scope, name) = match rule(route) {
        Rule::Open => return Ok(Principal::open()),
        Rule::Need(scope, name) => (Some(scope), name),
        Rule::Token => (None, None),
    };
    let principal = match proof.link {
        Some(sig) if auth.enabled() => link_principal(auth, sig, route)?,
        _ => auth.authenticate(bearer(proof.headers, proof.query)?)?,
    };
    revoked.check(&principal)?;
    if let Some(scope) = scope {
        principal.may(scope, name)?;
    } else if !principal.authenticated && auth.enabled() {
        return Err(AuthError::Missing.into());
    }
    Ok(principal)
}

fn link_principal(auth: &Authenticator, sig: &str, route: &Route) -> Result<Principal> {
    let (method, name) = match route {
        Route::Get { name, head: true } => (Method::HEAD, name),
        Route::Get { name, head: false } | Route::Media(name) => (Method::GET, name),
        Route::Put(name) => (Method::PUT, name),
        _ => {
            let why =
                "a signed link is for the GET or PUT of a file, or its video's state".to_string();
            return Err(AuthError::Forbidden(why).into());
        }
    };
    Ok(auth.link(sig, &method, name)?)
}

/// The revocations in force on this node: read from the store every [`REVOCATIONS_POLL`],
/// and added to at once when this node takes one. If the database cannot be read, the last
/// list read stays in force.
#[derive(Default)]
pub struct RevokedSet {
    current: ArcSwap<Revocations>,
}

impl RevokedSet {
    pub fn current(&self) -> Arc<Revocations> {
        self.current.load_full()
    }

    pub fn add(&self, r: &Revocation) {
        self.current.rcu(|now| {
            let mut next = Revocations::clone(now);
            next.add(r);
            next
        });
    }

    /// Keeps the set in step with the store until the task is dropped; reads nothing while
    /// access control is off.
    pub async fn watch(self: Arc<Self>, store: Store, auth: Arc<LiveAuth>) {
        loop {
            if !auth.current().enabled() {
                tokio::time::sleep(REVOCATIONS_POLL).await;
                continue;
            }
            match store.revocations().await {
                Ok(list) => self.current.store(Arc::new(Revocations::new(&list))),
                Err(e) => tracing::debug!(error = %e, "revocations not read; the last ones stay"),
            }
            tokio::time::sleep(REVOCATIONS_POLL).await;
        }
    }
}

/// Narrows a listing to the names `principal` covers; `false` when it can see none of the
/// names the query asks for.
pub fn narrow_listing(query: &mut ListQuery, principal: &Principal) -> bool {
    let covered = &principal.prefix;
    if query.prefix.starts_with(covered.as_str()) {
        true
    } else if covered.starts_with(query.prefix.as_str()) {
        query.prefix = covered.clone();
        true
    } else {
        false
    }
}

/// The largest upload `principal` may make under the node's own `limit`, in bytes.
pub fn upload_limit(principal: &Principal, limit: u64) -> u64 {
    principal.max_bytes.map_or(limit, |m| m.min(limit))
}

#[cfg(test)]
mod tests {
    use super::*;
    use speedbox_common::auth::Scopes;

    fn principal(prefix: &str) -> Principal {
        Principal {
            sub: Some("a".into()),
            scopes: Scopes::parse("read").unwrap(),
            prefix: prefix.into(),
            max_bytes: Some(10),
            jti: None,
            issued_at: None,
            sha256: None,
            authenticated: true,
        }
    }

    #[test]
    fn every_route_has_its_rule() {
        let name = || "a/b".to_string();
        let cases = [
            (Route::Preflight, Rule::Open),
            (Route::Health, Rule::Open),
            (Route::Tus(TusRoute::Options), Rule::Open),
            (
                Route::Get {
                    name: name(),
                    head: true,
                },
                Rule::Need(Scope::Read, Some("a/b")),
            ),
            (Route::Put(name()), Rule::Need(Scope::Write, Some("a/b"))),
            (
                Route::Delete(name()),
                Rule::Need(Scope::Delete, Some("a/b")),
            ),
            (
                Route::List(ListQuery::default()),
                Rule::Need(Scope::Read, None),
            ),
            (Route::Multipart, Rule::Need(Scope::Write, None)),
            (Route::Tus(TusRoute::Create), Rule::Need(Scope::Write, None)),
            (
                Route::Tus(TusRoute::Head("x".into())),
                Rule::Need(Scope::Write, None),
            ),
            (
                Route::Tus(TusRoute::Patch("x".into())),
                Rule::Need(Scope::Write, None),
            ),
            (
                Route::Tus(TusRoute::Delete("x".into())),
                Rule::Need(Scope::Write, None),
            ),
            (Route::Revoke, Rule::Need(Scope::Admin, None)),
            (Route::Revoked, Rule::Need(Scope::Admin, None)),
            (Route::MintToken, Rule::Need(Scope::Admin, None)),
            (Route::Sign, Rule::Token),
        ];
        for (route, want) in &cases {
            assert_eq!(rule(route), *want, "{route:?}");
        }
    }

    #[test]
    fn a_listing_sees_only_what_the_token_covers() {
        let mut q = ListQuery {
            prefix: "alice/videos/".into(),
            ..ListQuery::default()
        };
        assert!(narrow_listing(&mut q, &principal("alice/")));
        assert_eq!(q.prefix, "alice/videos/");
        let mut q = ListQuery::default();
        assert!(narrow_listing(&mut q, &principal("alice/")));
        assert_eq!(q.prefix, "alice/");
        let mut q = ListQuery {
            prefix: "bob/".into(),
            ..ListQuery::default()
        };
        assert!(!narrow_listing(&mut q, &principal("alice/")));
    }

    #[test]
    fn the_smaller_upload_limit_wins() {
        assert_eq!(upload_limit(&principal(""), 100), 10);
        assert_eq!(upload_limit(&principal(""), 5), 5);
        assert_eq!(upload_limit(&Principal::open(), 100), 100);
    }
}

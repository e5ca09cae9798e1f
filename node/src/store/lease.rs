//! Leases with fencing tokens, the compare-and-set machinery shared by resumable uploads
//! ([`super::tus`]) and video jobs ([`super::media`]).
//!
//! A lease is three fields of the leased document: `lease_until` (when it runs out),
//! `lease_token` (bumped by every taking, so every later write conditional on it proves
//! that no one took the lease since) and `lease_holder` (a fresh id per taking, which the
//! read after the compare-and-set compares to learn whether the taking was ours).

use std::time::Duration;

use bson::oid::ObjectId;
use bson::{doc, Bson, DateTime, Document};
use mongodb::Collection;
use serde::de::DeserializeOwned;

use crate::error::Result;

/// A document that carries a lease.
pub(super) trait Leased: DeserializeOwned + Send + Sync + Unpin {
    fn lease_holder(&self) -> Option<ObjectId>;
    fn lease_token(&self) -> i64;
}

/// What [`take`] found.
pub(super) enum Taken<T> {
    /// The lease is ours, with this fencing token.
    Ours(Box<T>, i64),
    /// Someone else's, or not takeable (the filter did not match).
    Not(Box<T>),
    NotFound,
}

/// Matches a document whose lease is free (`null`) or has run out. Written as `$not`
/// rather than an `$or` of the two cases: the embedded database plans a query with a
/// top-level `$or` as a collection scan, whatever else it names; `$not` keeps the `_id` (or
/// other indexed) part of the filter on its index, and means the same on MongoDB.
pub(super) fn lease_free(now: DateTime) -> Document {
    doc! {"lease_until": {"$not": {"$gte": now}}}
}

/// The time `d` from now.
pub(super) fn after(d: Duration) -> DateTime {
    DateTime::from_millis(DateTime::now().timestamp_millis() + d.as_millis() as i64)
}

/// Takes the lease of document `id` of `coll` for `ttl` on behalf of `node` where `filter`
/// matches (it should name `_id` and what makes the document takeable), setting `set` in
/// the same update; then reads the document back to prove whose the lease is.
pub(super) async fn take<T: Leased>(
    coll: &Collection<T>,
    id: impl Into<Bson>,
    filter: Document,
    ttl: Duration,
    node: &str,
    set: Document,
) -> Result<Taken<T>> {
    let holder = ObjectId::new();
    let mut fields = doc! {
        "lease_until": after(ttl), "lease_node": node, "lease_holder": holder,
    };
    fields.extend(set);
    let taken = coll
        .update_one(filter, doc! {"$set": fields, "$inc": {"lease_token": 1}})
        .await?;
    let Some(leased) = coll.find_one(doc! {"_id": id.into()}).await? else {
        return Ok(Taken::NotFound);
    };
    if taken.matched_count == 1 && leased.lease_holder() == Some(holder) {
        let token = leased.lease_token();
        return Ok(Taken::Ours(Box::new(leased), token));
    }
    Ok(Taken::Not(Box::new(leased)))
}

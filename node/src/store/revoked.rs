//! `<bucket>.revoked`: the revoked tokens (by `jti`) and principals (by `sub`), one document
//! per revocation, shared by every node.

use bson::doc;
use futures::TryStreamExt;
use speedbox_common::auth::Revocation;

use super::Store;
use crate::error::Result;

impl Store {
    /// Records `r`, idempotently: revoking the same `jti` or `sub` again keeps one
    /// document. Its time only moves forward, in the same update (`$max`): a revocation
    /// that arrives late, after a newer one of the same `sub`, never narrows it. `by` is
    /// who revoked it first.
    pub async fn revoke(&self, r: &Revocation) -> Result<()> {
        let _timer = self.metrics.time("revoke");
        let (id, key, value) = match (&r.jti, &r.sub) {
            (Some(jti), _) => (format!("jti:{jti}"), "jti", jti),
            (None, Some(sub)) => (format!("sub:{sub}"), "sub", sub),
            (None, None) => return Ok(()),
        };
        let update = doc! {
            "$max": {"revoked_at": r.revoked_at as i64},
            "$setOnInsert": {key: value, "by": &r.by},
        };
        self.revoked
            .update_one(doc! {"_id": id}, update)
            .upsert(true)
            .await?;
        Ok(())
    }

    /// Every revocation.
    pub async fn revocations(&self) -> Result<Vec<Revocation>> {
        let _timer = self.metrics.time("revocations");
        let docs: Vec<bson::Document> = self.revoked.find(doc! {}).await?.try_collect().await?;
        Ok(docs
            .into_iter()
            .filter_map(|d| bson::from_document(d).ok())
            .collect())
    }
}

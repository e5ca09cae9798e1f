//! `<bucket>.revoked`: the revoked tokens (by `jti`) and principals (by `sub`), one document
//! per revocation, shared by every node.

use bson::doc;
use futures::TryStreamExt;
use speedbox_common::auth::Revocation;

use super::Store;
use crate::error::Result;

impl Store {
    /// Records `r` (idempotent: revoking the same `jti` twice keeps one document; a `sub`
    /// revoked again moves its time forward).
    pub async fn revoke(&self, r: &Revocation) -> Result<()> {
        let id = match (&r.jti, &r.sub) {
            (Some(jti), _) => format!("jti:{jti}"),
            (None, Some(sub)) => format!("sub:{sub}"),
            (None, None) => return Ok(()),
        };
        let mut doc = bson::to_document(r).map_err(|e| {
            crate::error::NodeError::Internal(format!("cannot encode a revocation: {e}"))
        })?;
        doc.insert("_id", id.clone());
        self.revoked
            .replace_one(doc! {"_id": id}, doc)
            .upsert(true)
            .await?;
        Ok(())
    }

    /// Every revocation.
    pub async fn revocations(&self) -> Result<Vec<Revocation>> {
        let docs: Vec<bson::Document> = self.revoked.find(doc! {}).await?.try_collect().await?;
        Ok(docs
            .into_iter()
            .filter_map(|d| bson::from_document(d).ok())
            .collect())
    }
}

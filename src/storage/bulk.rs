//! A bulk operator action: one action over every payout a filter matches, each payout in its
//! own transaction under its own safety rules, with a dry run that shows what would change
//! (each action done and rolled back). One payout's refusal never stops the others.

use crate::domain::ids::PayoutId;
use crate::domain::operator::{Acted, ActionRequest, BULK_LIMIT, PayoutFilter, Refusal};
use crate::storage::{Store, StoreError, StoreResult};

/// What happened (or would happen) to each matched payout.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct BulkReport {
    pub dry_run: bool,
    pub matched: usize,
    /// More payouts matched than one bulk action touches; run it again for the rest.
    pub truncated: bool,
    pub results: Vec<BulkResult>,
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct BulkResult {
    pub payout_id: String,
    /// What was done (or would be), when allowed.
    pub acted: Option<Acted>,
    /// Why not, when refused.
    pub refused: Option<String>,
}

impl Store {
    /// Does (or, with `dry_run`, previews) `request` on every payout `filter` matches, up to
    /// [`BULK_LIMIT`], oldest first.
    pub async fn bulk_act(
        &self,
        filter: &PayoutFilter,
        request: &ActionRequest,
        dry_run: bool,
    ) -> StoreResult<BulkReport> {
        if request.reason.trim().is_empty() {
            return Err(Refusal::NoReason.into());
        }
        if filter.is_empty() {
            return Err(Refusal::NoFilter.into());
        }
        let mut ids = self.payouts_matching(filter, BULK_LIMIT + 1).await?;
        let truncated = ids.len() > BULK_LIMIT as usize;
        ids.truncate(BULK_LIMIT as usize);
        let mut results = Vec::with_capacity(ids.len());
        for id in &ids {
            results.push(one(self, id, request, dry_run).await?);
        }
        Ok(BulkReport {
            dry_run,
            matched: ids.len(),
            truncated,
            results,
        })
    }
}

async fn one(
    store: &Store,
    id: &PayoutId,
    request: &ActionRequest,
    dry_run: bool,
) -> StoreResult<BulkResult> {
    let outcome = if dry_run {
        store.operator_preview(id, request).await
    } else {
        store.operator_act(id, request).await
    };
    let (acted, refused) = match outcome {
        Ok(acted) => (Some(acted), None),
        Err(StoreError::Operator(refusal)) => (None, Some(refusal.to_string())),
        Err(e) => return Err(e),
    };
    Ok(BulkResult {
        payout_id: id.to_string(),
        acted,
        refused,
    })
}

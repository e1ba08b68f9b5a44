//! Applying a policy change whose quorum and delay are met.

use bitcoin::hashes::{Hash as _, sha256};
use chrono::Utc;
use policies::{PolicyDocument, PolicyId};
use serde_json::json;

use super::super::ApiError;
use super::super::approvals::now_secs;
use crate::approvals::{ChangeDocument, Officer};
use crate::audit::{self, Kind};
use crate::store::approvals::{add_officer_in_tx, revoke_officer_in_tx};
use crate::store::policies::PolicyState;
use crate::store::policy_changes::{
    ChangeRecord, ChangeStatus, counting_change_approvers_in_tx, due_changes_in_tx,
    finish_change_in_tx,
};
use crate::store::{Store, StoreError, Tx};

pub(super) async fn registered_in_tx(
    tx: &mut Tx,
    id: &PolicyId,
) -> Result<Option<(PolicyDocument, String)>, ApiError> {
    let row: Option<(String, String)> =
        sqlx::query_as("SELECT document, state FROM signer_policies WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&mut **tx)
            .await
            .map_err(StoreError::from)?;
    row.map(|(text, state)| {
        PolicyDocument::from_json(&text)
            .map(|d| (d, state))
            .map_err(|e| ApiError::Internal(e.to_string()))
    })
    .transpose()
}

/// Applies a change whose quorum and delay are met, in `tx`; a change that can
/// no longer apply is marked failed with the reason.
pub(super) async fn apply_in_tx(tx: &mut Tx, record: &ChangeRecord) -> Result<(), ApiError> {
    let now = Utc::now();
    let document = ChangeDocument::from_canonical(&record.document)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let failure = match &document {
        ChangeDocument::Policy { document, replaces } => {
            let mut failure = None;
            if let Some(old) = replaces {
                match registered_in_tx(tx, old).await? {
                    Some((_, state)) if state == "active" => {
                        Store::set_policy_state_in_tx(tx, &old.to_string(), PolicyState::Retired)
                            .await?;
                        // Clients of the policy it replaces may use the new document.
                        sqlx::query(
                            "UPDATE signer_clients SET policies = array_append(policies, $2) \
                             WHERE $1 = ANY(policies) AND NOT ($2 = ANY(policies))",
                        )
                        .bind(old.to_string())
                        .bind(document.id.to_string())
                        .execute(&mut **tx)
                        .await
                        .map_err(StoreError::from)?;
                    }
                    _ => failure = Some(format!("policy {old} is no longer active")),
                }
            }
            if failure.is_none() {
                Store::register_policy_in_tx(tx, document).await?;
                // A document registered before (and perhaps retired) becomes active again.
                Store::set_policy_state_in_tx(tx, &document.id.to_string(), PolicyState::Active)
                    .await?;
                if let Some(old) = replaces {
                    carry_over_in_tx(tx, old, &document.id).await?;
                }
            }
            failure
        }
        ChangeDocument::AddOfficer {
            officer,
            name,
            client,
        } => {
            let officer = Officer {
                id: *officer,
                name: name.clone(),
                client: client.clone(),
                revoked: false,
            };
            match add_officer_in_tx(tx, &officer, Some(record.id), now).await {
                Ok(_) => None,
                Err(StoreError::Invalid { detail, .. }) => Some(detail),
                Err(e) => return Err(e.into()),
            }
        }
        ChangeDocument::RevokeOfficer { officer } => {
            revoke_officer_in_tx(tx, officer, record.id, now).await?;
            None
        }
    };
    finish_change_in_tx(tx, record.id, failure.as_deref(), now).await?;
    audit::append_in_tx(
        tx,
        Kind::Policy,
        &json!({
            "event": if failure.is_none() { "change_effective" } else { "change_failed" },
            "change_id": record.id.to_string(),
            "kind": record.kind,
            "direction": record.direction.as_str(),
            "document_sha256": sha256::Hash::from_byte_array(record.document_sha256).to_string(),
            "failure": failure,
        }),
    )
    .await?;
    tracing::info!(change = %record.id, kind = %record.kind, ?failure, "policy change applied");
    Ok(())
}

/// Whether `record` may take effect now.
pub(super) async fn ready_in_tx(tx: &mut Tx, record: &ChangeRecord) -> Result<bool, ApiError> {
    if record.status != ChangeStatus::Pending || record.not_before > Utc::now() {
        return Ok(false);
    }
    if record.quorum == 0 {
        return Ok(true);
    }
    let approvers = counting_change_approvers_in_tx(tx, record.id, now_secs()).await?;
    Ok(approvers.len() >= record.quorum as usize)
}

/// Applies every pending change whose delay passed and whose quorum is met.
///
/// # Errors
/// A store failure (nothing is applied then).
pub async fn settle_due_changes(store: &Store) -> Result<usize, ApiError> {
    let mut tx = store.begin().await?;
    let mut applied = 0;
    for record in due_changes_in_tx(&mut tx, Utc::now()).await? {
        if ready_in_tx(&mut tx, &record).await? {
            apply_in_tx(&mut tx, &record).await?;
            applied += 1;
        }
    }
    tx.commit().await.map_err(StoreError::from)?;
    Ok(applied)
}

/// Moves what the old document has spent and used to its replacement: the same
/// coins under new rules must not start with fresh velocity budget (a new
/// document id would otherwise reset every window), nor forget the highest
/// derivation indexes used. The old document is retired, so nothing counts twice.
async fn carry_over_in_tx(tx: &mut Tx, old: &PolicyId, new: &PolicyId) -> Result<(), ApiError> {
    let (old, new) = (old.to_string(), new.to_string());
    sqlx::query("UPDATE signer_velocity SET policy_id = $2 WHERE policy_id = $1")
        .bind(&old)
        .bind(&new)
        .execute(&mut **tx)
        .await
        .map_err(StoreError::from)?;
    sqlx::query(
        "UPDATE signer_policy_state n SET \
         highest_receive_index = GREATEST(n.highest_receive_index, o.highest_receive_index), \
         highest_change_index = GREATEST(n.highest_change_index, o.highest_change_index) \
         FROM signer_policy_state o WHERE o.policy_id = $1 AND n.policy_id = $2",
    )
    .bind(&old)
    .bind(&new)
    .execute(&mut **tx)
    .await
    .map_err(StoreError::from)?;
    Ok(())
}

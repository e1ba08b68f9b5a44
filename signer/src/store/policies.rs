//! Registered policies: the document as registered, and whether it is active.

use std::sync::Arc;

use policies::PolicyDocument;

use super::{Store, StoreError, Tx};

/// Whether a registered policy may sign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PolicyState {
    /// It signs.
    Active,
    /// It no longer signs.
    Retired,
}

impl PolicyState {
    fn as_str(self) -> &'static str {
        match self {
            PolicyState::Active => "active",
            PolicyState::Retired => "retired",
        }
    }

    fn parse(s: &str) -> Result<PolicyState, StoreError> {
        match s {
            "active" => Ok(PolicyState::Active),
            "retired" => Ok(PolicyState::Retired),
            other => Err(StoreError::Corrupt {
                what: "policy state",
                detail: other.to_owned(),
            }),
        }
    }
}

/// A registered policy.
#[derive(Debug, Clone)]
pub struct RegisteredPolicy {
    /// The document (its id is the hash of its content).
    pub document: Arc<PolicyDocument>,
    /// Its state.
    pub state: PolicyState,
}

fn parse_document(text: &str) -> Result<PolicyDocument, StoreError> {
    PolicyDocument::from_json(text).map_err(|e| StoreError::Corrupt {
        what: "policy document",
        detail: e.to_string(),
    })
}

impl Store {
    /// Registers `document` as active, in `tx`; registering the same document again
    /// changes nothing.
    ///
    /// This is the store's write only: whether a registration is allowed (a
    /// ceremony file at first start, or a quorum-approved policy change) is
    /// decided by the caller.
    ///
    /// # Errors
    /// A database failure.
    pub async fn register_policy_in_tx(
        tx: &mut Tx,
        document: &PolicyDocument,
    ) -> Result<bool, StoreError> {
        let json = document.to_json_pretty().map_err(|e| StoreError::Invalid {
            what: "policy document",
            detail: e.to_string(),
        })?;
        let inserted = sqlx::query!(
            "INSERT INTO signer_policies (id, document, state) VALUES ($1, $2, 'active')
             ON CONFLICT (id) DO NOTHING",
            document.id.to_string(),
            json
        )
        .execute(&mut **tx)
        .await?;
        sqlx::query!(
            "INSERT INTO signer_policy_state (policy_id) VALUES ($1) ON CONFLICT DO NOTHING",
            document.id.to_string()
        )
        .execute(&mut **tx)
        .await?;
        Ok(inserted.rows_affected() == 1)
    }

    /// Registers `document` in its own transaction; see [`Store::register_policy_in_tx`].
    ///
    /// # Errors
    /// A database failure.
    pub async fn register_policy(&self, document: &PolicyDocument) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let inserted = Store::register_policy_in_tx(&mut tx, document).await?;
        tx.commit().await?;
        Ok(inserted)
    }

    /// Sets a registered policy's state, in `tx`.
    ///
    /// # Errors
    /// A database failure.
    pub async fn set_policy_state_in_tx(
        tx: &mut Tx,
        policy_id: &str,
        state: PolicyState,
    ) -> Result<bool, StoreError> {
        let updated = sqlx::query!(
            "UPDATE signer_policies SET state = $2 WHERE id = $1",
            policy_id,
            state.as_str()
        )
        .execute(&mut **tx)
        .await?;
        Ok(updated.rows_affected() == 1)
    }

    /// The registered policy with this id.
    ///
    /// # Errors
    /// A database failure, or a stored document that no longer parses.
    pub async fn policy(&self, policy_id: &str) -> Result<Option<RegisteredPolicy>, StoreError> {
        let row = sqlx::query!(
            "SELECT document, state FROM signer_policies WHERE id = $1",
            policy_id,
        )
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(RegisteredPolicy {
                document: Arc::new(parse_document(&row.document)?),
                state: PolicyState::parse(&row.state)?,
            })
        })
        .transpose()
    }

    /// Every registered policy, oldest first.
    ///
    /// # Errors
    /// A database failure, or a stored document that no longer parses.
    pub async fn policies(&self) -> Result<Vec<RegisteredPolicy>, StoreError> {
        let rows =
            sqlx::query!("SELECT document, state FROM signer_policies ORDER BY created_at, id")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|row| {
                Ok(RegisteredPolicy {
                    document: Arc::new(parse_document(&row.document)?),
                    state: PolicyState::parse(&row.state)?,
                })
            })
            .collect()
    }
}

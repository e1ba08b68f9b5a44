//! Governance settings and the officers' ceremony file, written at first start.

use chrono::{DateTime, Utc};
use sqlx::Row as _;
use sqlx::postgres::PgRow;

use super::super::approvals::add_officer_in_tx;
use super::super::{Store, StoreError, Tx};
use super::corrupt;
use crate::approvals::Officer;

/// The governance settings of this signer, fixed by the ceremony file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Governance {
    /// This signer instance's name: every approval names it.
    pub instance: String,
    /// Officers needed for a loosening change or a revocation.
    pub change_quorum: u32,
    /// Seconds a loosening change waits after its proposal (default a day).
    #[serde(default = "default_delay")]
    pub loosening_delay_secs: u64,
}

fn default_delay() -> u64 {
    24 * 60 * 60
}

/// The governance settings, in `tx`.
///
/// # Errors
/// A database failure.
pub async fn governance_in_tx(tx: &mut Tx) -> Result<Option<Governance>, StoreError> {
    let row =
        sqlx::query("SELECT instance, change_quorum, loosening_delay_secs FROM signer_governance")
            .fetch_optional(&mut **tx)
            .await?;
    row.map(|r| governance_row(&r)).transpose()
}

fn governance_row(r: &PgRow) -> Result<Governance, StoreError> {
    let quorum: i32 = r.try_get("change_quorum")?;
    let delay: i64 = r.try_get("loosening_delay_secs")?;
    Ok(Governance {
        instance: r.try_get("instance")?,
        change_quorum: u32::try_from(quorum).map_err(|_| corrupt("change_quorum", quorum))?,
        loosening_delay_secs: u64::try_from(delay)
            .map_err(|_| corrupt("loosening_delay_secs", delay))?,
    })
}

/// Writes the governance settings and the ceremony file's officers at first
/// start, in `tx`. Returns false (and changes nothing) when governance exists
/// already: later changes go through policy changes only.
///
/// # Errors
/// [`StoreError::Invalid`] for a zero quorum, a quorum larger than the officers,
/// or an officer listed twice; a database failure.
pub async fn bootstrap_in_tx(
    tx: &mut Tx,
    governance: &Governance,
    officers: &[Officer],
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let invalid = |detail: String| StoreError::Invalid {
        what: "ceremony governance",
        detail,
    };
    if governance.change_quorum == 0 || governance.change_quorum as usize > officers.len() {
        return Err(invalid(format!(
            "change_quorum must be 1 to the number of officers ({})",
            officers.len()
        )));
    }
    let quorum =
        i32::try_from(governance.change_quorum).map_err(|_| invalid("quorum too large".into()))?;
    let delay = i64::try_from(governance.loosening_delay_secs)
        .map_err(|_| invalid("delay too large".into()))?;
    let inserted = sqlx::query(
        "INSERT INTO signer_governance (instance, change_quorum, loosening_delay_secs, bootstrapped_at) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (only_row) DO NOTHING",
    )
    .bind(&governance.instance)
    .bind(quorum)
    .bind(delay)
    .bind(now)
    .execute(&mut **tx)
    .await?
    .rows_affected()
        == 1;
    if !inserted {
        return Ok(false);
    }
    for (i, officer) in officers.iter().enumerate() {
        if officers[..i].iter().any(|o| o.id == officer.id) {
            return Err(invalid(format!("officer {} is listed twice", officer.id)));
        }
        add_officer_in_tx(tx, officer, None, now).await?;
    }
    Ok(true)
}

impl Store {
    /// The governance settings (none before the ceremony file is loaded).
    ///
    /// # Errors
    /// A database failure.
    pub async fn governance(&self) -> Result<Option<Governance>, StoreError> {
        let row = sqlx::query(
            "SELECT instance, change_quorum, loosening_delay_secs FROM signer_governance",
        )
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| governance_row(&r)).transpose()
    }
}

/// The officers' part of the ceremony file, read at first start:
///
/// ```json
/// {"governance": {"instance": "signer-1", "change_quorum": 2, "loosening_delay_secs": 86400},
///  "officers": [{"id": "02…", "name": "alice"}, {"id": "03…", "name": "bob", "client": "ops"}]}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfficerCeremony {
    /// Instance name, change quorum, loosening delay.
    pub governance: Governance,
    /// The first officers.
    pub officers: Vec<CeremonyOfficer>,
}

/// One officer in the ceremony file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CeremonyOfficer {
    /// The officer's public key (`signer officer key create` prints it).
    pub id: crate::approvals::OfficerId,
    /// A name for listings.
    pub name: String,
    /// The API client this officer also acts as, if any.
    #[serde(default)]
    pub client: Option<String>,
}

impl OfficerCeremony {
    /// Reads the JSON file.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] when it cannot be read or parsed.
    pub fn load(path: &std::path::Path) -> Result<OfficerCeremony, StoreError> {
        let invalid = |detail: String| StoreError::Invalid {
            what: "officer ceremony file",
            detail,
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| invalid(format!("{}: {e}", path.display())))?;
        serde_json::from_str(&text).map_err(|e| invalid(format!("{}: {e}", path.display())))
    }

    /// Writes governance and officers at first start (see [`bootstrap_in_tx`]);
    /// false when they exist already (the file is then ignored).
    ///
    /// # Errors
    /// As [`bootstrap_in_tx`].
    pub async fn bootstrap(&self, store: &Store) -> Result<bool, StoreError> {
        let officers: Vec<Officer> = self
            .officers
            .iter()
            .map(|o| Officer {
                id: o.id,
                name: o.name.clone(),
                client: o.client.clone(),
                revoked: false,
            })
            .collect();
        let mut tx = store.begin().await?;
        let done = bootstrap_in_tx(&mut tx, &self.governance, &officers, Utc::now()).await?;
        if done {
            crate::audit::append_in_tx(
                &mut tx,
                crate::audit::Kind::Policy,
                &serde_json::json!({
                    "event": "officers_bootstrap",
                    "instance": self.governance.instance,
                    "change_quorum": self.governance.change_quorum,
                    "loosening_delay_secs": self.governance.loosening_delay_secs,
                    "officers": officers.iter().map(|o| o.id.to_string()).collect::<Vec<_>>(),
                }),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn ceremony_file_reads_with_defaults_and_refuses_unknown_fields() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("officers.json");
        let alice = "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798";
        std::fs::write(
            &path,
            format!(
                r#"{{"governance": {{"instance": "signer-1", "change_quorum": 1}},
                    "officers": [{{"id": "{alice}", "name": "alice", "client": "ops"}}]}}"#
            ),
        )
        .unwrap();
        let ceremony = OfficerCeremony::load(&path).unwrap();
        assert_eq!(ceremony.governance.loosening_delay_secs, 24 * 60 * 60);
        assert_eq!(ceremony.officers[0].client.as_deref(), Some("ops"));
        std::fs::write(
            &path,
            r#"{"governance": {"instance": "s", "change_quorum": 1, "quorum": 2}, "officers": []}"#,
        )
        .unwrap();
        assert!(OfficerCeremony::load(&path).is_err());
    }
}

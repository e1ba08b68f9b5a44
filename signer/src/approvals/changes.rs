//! Policy changes: what they change, which way, and when they may take effect.
//!
//! A change is a canonical JSON document; officers sign its SHA-256
//! ([`super::ChangeMessage`]). A tightening takes effect at once, except an
//! officer's revocation, which needs the officers' quorum (but no delay). A
//! loosening (a new policy, a policy whose rules allow more, a new officer)
//! needs the quorum and waits for the configured delay after its proposal.

use bitcoin::hashes::{Hash as _, sha256};
use policies::rules::{Comparison, compare_documents};
use policies::{PolicyDocument, PolicyId};
use serde::{Deserialize, Serialize};

use super::{ApprovalError, OfficerId};

/// What a policy change does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ChangeDocument {
    /// Registers a policy document; with `replaces`, the document in force
    /// for the same policy (its rules change) is retired when this one takes effect.
    Policy {
        /// The new document.
        document: Box<PolicyDocument>,
        /// The registered policy it replaces.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        replaces: Option<PolicyId>,
    },
    /// Registers a new officer.
    AddOfficer {
        /// The officer's public key.
        officer: OfficerId,
        /// A name for listings.
        name: String,
        /// The API client the officer also acts as, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client: Option<String>,
    },
    /// Revokes an officer for good.
    RevokeOfficer {
        /// The officer.
        officer: OfficerId,
    },
}

/// Which way a change goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Allows less: at once (a revocation after its quorum).
    Tightening,
    /// Allows more: after the delay and the quorum.
    Loosening,
}

impl Direction {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Tightening => "tightening",
            Direction::Loosening => "loosening",
        }
    }
}

/// How a change is classified, and what it takes to become effective.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Classification {
    /// Which way it goes.
    pub direction: Direction,
    /// Whether the officers' quorum must sign it.
    pub needs_quorum: bool,
    /// Whether it waits for the loosening delay.
    pub delayed: bool,
    /// Each difference in plain words.
    pub differences: Vec<String>,
}

impl ChangeDocument {
    /// The stored kind name.
    pub fn kind(&self) -> &'static str {
        match self {
            ChangeDocument::Policy { .. } => "policy",
            ChangeDocument::AddOfficer { .. } => "add_officer",
            ChangeDocument::RevokeOfficer { .. } => "revoke_officer",
        }
    }

    /// The canonical JSON: compact, fields in declaration order.
    ///
    /// # Errors
    /// [`ApprovalError::Malformed`] if it does not serialise (it always does).
    pub fn canonical_json(&self) -> Result<String, ApprovalError> {
        serde_json::to_string(self).map_err(|e| ApprovalError::Malformed(e.to_string()))
    }

    /// SHA-256 of [`ChangeDocument::canonical_json`]: what officers sign.
    ///
    /// # Errors
    /// As [`ChangeDocument::canonical_json`].
    pub fn hash(&self) -> Result<sha256::Hash, ApprovalError> {
        Ok(sha256::Hash::hash(self.canonical_json()?.as_bytes()))
    }

    /// Reads a stored canonical document and checks it is canonical.
    ///
    /// # Errors
    /// [`ApprovalError::Malformed`] when it does not parse or is not in canonical form.
    pub fn from_canonical(text: &str) -> Result<Self, ApprovalError> {
        let doc: ChangeDocument = serde_json::from_str(text)
            .map_err(|e| ApprovalError::Malformed(format!("change document: {e}")))?;
        if doc.canonical_json()? != text {
            return Err(ApprovalError::Malformed(
                "change document is not in canonical form".into(),
            ));
        }
        Ok(doc)
    }

    /// Classifies the change; `replaced` is the registered document named by
    /// `replaces` (the caller looks it up).
    pub fn classify(&self, replaced: Option<&PolicyDocument>) -> Classification {
        match self {
            ChangeDocument::Policy { document, .. } => {
                let comparison: Comparison = compare_documents(replaced, document);
                let loosening = comparison.is_loosening();
                Classification {
                    direction: if loosening {
                        Direction::Loosening
                    } else {
                        Direction::Tightening
                    },
                    needs_quorum: loosening,
                    delayed: loosening,
                    differences: comparison.changes.iter().map(ToString::to_string).collect(),
                }
            }
            ChangeDocument::AddOfficer { officer, name, .. } => Classification {
                direction: Direction::Loosening,
                needs_quorum: true,
                delayed: true,
                differences: vec![format!("loosening: new officer {name:?} ({officer})")],
            },
            ChangeDocument::RevokeOfficer { officer } => Classification {
                direction: Direction::Tightening,
                needs_quorum: true,
                delayed: false,
                differences: vec![format!("tightening: officer {officer} revoked")],
            },
        }
    }

    /// The officer this change is about, who may not approve it.
    pub fn subject_officer(&self) -> Option<&OfficerId> {
        match self {
            ChangeDocument::AddOfficer { officer, .. }
            | ChangeDocument::RevokeOfficer { officer } => Some(officer),
            ChangeDocument::Policy { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn officer() -> OfficerId {
        "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"
            .parse()
            .unwrap()
    }

    #[test]
    fn canonical_form_round_trips_and_refuses_others() {
        let doc = ChangeDocument::AddOfficer {
            officer: officer(),
            name: "carol".into(),
            client: None,
        };
        let text = doc.canonical_json().unwrap();
        assert_eq!(
            text,
            format!(
                r#"{{"kind":"add_officer","officer":"{}","name":"carol"}}"#,
                officer()
            )
        );
        assert_eq!(ChangeDocument::from_canonical(&text).unwrap(), doc);
        let spaced = text.replace(",", ", ");
        assert!(ChangeDocument::from_canonical(&spaced).is_err());
        let extra = text.replace("}", r#","extra":1}"#);
        assert!(ChangeDocument::from_canonical(&extra).is_err());
    }

    #[test]
    fn officers_added_loosen_and_revoked_tighten_with_quorum() {
        let add = ChangeDocument::AddOfficer {
            officer: officer(),
            name: "carol".into(),
            client: None,
        }
        .classify(None);
        assert_eq!(add.direction, Direction::Loosening);
        assert!(add.needs_quorum && add.delayed);
        let revoke = ChangeDocument::RevokeOfficer { officer: officer() }.classify(None);
        assert_eq!(revoke.direction, Direction::Tightening);
        assert!(revoke.needs_quorum && !revoke.delayed);
    }
}

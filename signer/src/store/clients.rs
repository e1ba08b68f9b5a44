//! API clients: a name, a bearer token stored as its SHA-256, and the policies
//! the client may submit to.

use bitcoin::hex::DisplayHex as _;
use secrecy::{ExposeSecret as _, SecretString};
use uuid::Uuid;

use super::{Store, StoreError, sha256};

/// A client's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub struct ClientId(pub Uuid);

/// A client as the service sees it after authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    /// Its id.
    pub id: ClientId,
    /// Its unique name.
    pub name: String,
    /// The policy ids it may submit to.
    pub policies: Vec<String>,
}

impl Client {
    /// Whether this client may submit to `policy_id`.
    pub fn may_use(&self, policy_id: &str) -> bool {
        self.policies.iter().any(|p| p == policy_id)
    }
}

/// A freshly made client token: shown once, never stored in clear.
#[derive(Debug)]
pub struct NewClientToken {
    /// The client.
    pub client: Client,
    /// The bearer token (`sgn_` and 64 hex digits).
    pub token: SecretString,
}

/// The prefix of every client token, so that a leaked one is recognisable.
pub const TOKEN_PREFIX: &str = "sgn_";

fn token_hash(token: &str) -> [u8; 32] {
    sha256(token.as_bytes())
}

impl Store {
    /// Adds a client allowed to submit to `policies` and returns its token (shown once).
    ///
    /// # Errors
    /// A name already taken or malformed, an unknown policy, or a database failure.
    pub async fn add_client(
        &self,
        name: &str,
        policies: &[String],
    ) -> Result<NewClientToken, StoreError> {
        if policies.is_empty() {
            return Err(StoreError::Invalid {
                what: "client policies",
                detail: "a client needs at least one policy".into(),
            });
        }
        let mut tx = self.begin().await?;
        for policy in policies {
            let known: Option<String> =
                sqlx::query_scalar!("SELECT id FROM signer_policies WHERE id = $1", policy)
                    .fetch_optional(&mut *tx)
                    .await?;
            if known.is_none() {
                return Err(StoreError::Invalid {
                    what: "client policies",
                    detail: format!("policy {policy} is not registered"),
                });
            }
        }
        let secret: [u8; 32] = bitcoin::secp256k1::rand::random();
        let token = format!("{TOKEN_PREFIX}{}", secret.to_lower_hex_string());
        let id = ClientId(Uuid::now_v7());
        let hash = token_hash(&token);
        let inserted = sqlx::query!(
            "INSERT INTO signer_clients (id, name, token_sha256, policies) VALUES ($1, $2, $3, $4)
             ON CONFLICT (name) DO NOTHING",
            id.0,
            name,
            hash.as_slice(),
            policies
        )
        .execute(&mut *tx)
        .await
        .map_err(|e| match e {
            sqlx::Error::Database(d) if d.is_check_violation() => StoreError::Invalid {
                what: "client name",
                detail: "use 1 to 64 of A-Z a-z 0-9 _ . -".into(),
            },
            e => e.into(),
        })?;
        if inserted.rows_affected() == 0 {
            return Err(StoreError::Invalid {
                what: "client name",
                detail: format!("a client named {name:?} exists"),
            });
        }
        tx.commit().await?;
        Ok(NewClientToken {
            client: Client {
                id,
                name: name.to_owned(),
                policies: policies.to_vec(),
            },
            token: SecretString::from(token),
        })
    }

    /// The client holding `token`, unless it is unknown or revoked.
    ///
    /// # Errors
    /// A database failure.
    pub async fn client_by_token(
        &self,
        token: &SecretString,
    ) -> Result<Option<Client>, StoreError> {
        let hash = token_hash(token.expose_secret());
        let row = sqlx::query!(
            "SELECT id, name, policies FROM signer_clients
             WHERE token_sha256 = $1 AND revoked_at IS NULL",
            hash.as_slice(),
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|row| Client {
            id: ClientId(row.id),
            name: row.name,
            policies: row.policies,
        }))
    }
}

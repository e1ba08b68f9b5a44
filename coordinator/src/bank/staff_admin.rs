//! Staff administration from the command line (`coordinator staff ...`). These work on the
//! database alone, without a ledger or a [`Bank`], so an operator can run them beside the
//! serving instances.

use super::*;

/// A staff member as `coordinator staff list` shows it (never the password hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StaffMember {
    /// The id.
    pub id: StaffId,
    /// The e-mail the member logs in with.
    pub email: String,
    /// The role.
    pub role: StaffRole,
    /// When the member was disabled, if so.
    pub disabled_at: Option<DateTime<Utc>>,
    /// When the member was created.
    pub created_at: DateTime<Utc>,
}

/// Creates a staff member with a password hashed at `cost`.
///
/// # Errors
/// [`BankError::IdentityTaken`] if the e-mail is taken; [`BankError::Database`].
pub async fn create_staff(
    pool: &PgPool,
    cost: PasswordCost,
    email: &Email,
    password: &NewPassword,
    role: StaffRole,
) -> Result<StaffId, BankError> {
    let secret = password.secret().clone();
    let hash = tokio::task::spawn_blocking(move || secrets::hash_password(&secret, cost))
        .await
        .map_err(|e| BankError::Corrupt(e.to_string()))??;
    insert_staff(pool, email, hash, role).await
}

/// Stores a new staff member with an already hashed password: the one INSERT behind both
/// the admin tool and [`Bank::create_staff`].
///
/// # Errors
/// [`BankError::IdentityTaken`] if the e-mail is taken; [`BankError::Database`].
pub(super) async fn insert_staff(
    pool: &PgPool,
    email: &Email,
    password_hash: String,
    role: StaffRole,
) -> Result<StaffId, BankError> {
    let id = StaffId::new();
    let n = sqlx::query(
        "INSERT INTO staff (id, email, password_hash, role) VALUES ($1, $2, $3, $4) \
         ON CONFLICT DO NOTHING",
    )
    .bind(id.as_uuid())
    .bind(email.as_str())
    .bind(password_hash)
    .bind(role.as_str())
    .execute(pool)
    .await?
    .rows_affected();
    if n == 0 {
        return Err(BankError::IdentityTaken);
    }
    Ok(id)
}

/// Disables a staff member and revokes their sessions in one transaction; every instance
/// forgets the sessions at once (the sessions trigger notifies `auth_revoked`). Returns
/// how many sessions were revoked. Disabling twice changes nothing more.
///
/// # Errors
/// [`BankError::NotFound`] for an unknown e-mail; [`BankError::Database`].
pub async fn disable_staff(pool: &PgPool, email: &Email) -> Result<u64, BankError> {
    let mut tx = pool.begin().await?;
    let id: Option<Uuid> = sqlx::query_scalar(
        "UPDATE staff SET disabled_at = coalesce(disabled_at, now()) WHERE email = $1 \
         RETURNING id",
    )
    .bind(email.as_str())
    .fetch_optional(&mut *tx)
    .await?;
    let Some(id) = id else {
        return Err(BankError::NotFound {
            what: "staff member",
        });
    };
    let revoked = sqlx::query(
        "UPDATE sessions SET revoked_at = now() WHERE staff_id = $1 AND revoked_at IS NULL",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    Ok(revoked)
}

/// Every staff member, oldest first.
///
/// # Errors
/// [`BankError::Database`]; [`BankError::Corrupt`] for a stored role this binary does not know.
pub async fn list_staff(pool: &PgPool) -> Result<Vec<StaffMember>, BankError> {
    let rows = sqlx::query(
        "SELECT id, email, role, disabled_at, created_at FROM staff ORDER BY created_at, email",
    )
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            let role: String = r.try_get(2)?;
            Ok(StaffMember {
                id: StaffId::from_uuid(r.try_get(0)?),
                email: r.try_get(1)?,
                role: role
                    .parse()
                    .map_err(|_| BankError::Corrupt(format!("staff role {role:?}")))?,
                disabled_at: r.try_get(3)?,
                created_at: r.try_get(4)?,
            })
        })
        .collect()
}

//! Blink's `User.language` and `userUpdateLanguage`.

use async_graphql::{Context, InputObject, Object, Result, SimpleObject};
use uuid::Uuid;

use super::accounts::User;
use super::{ErrorInterface, payload_error_at, principal};
use crate::api::AppState;
use crate::api::errors::ApiError;
use crate::api::gql::scalars::LanguageScalar;
use crate::api::gql::types::{app, gql};
use crate::bank::{BankError, Scope};
use crate::ids::UserId;

/// The language a user chose (`default` until they choose one).
pub(super) async fn of_user(app: &AppState, user: UserId) -> Result<String, BankError> {
    let lang: Option<String> = sqlx::query_scalar("SELECT language FROM users WHERE id = $1")
        .bind(user.as_uuid())
        .fetch_optional(app.bank.ledger().pool())
        .await?;
    lang.ok_or(BankError::NotFound { what: "user" })
}

/// `default`, or a BCP 47 tag: a 2-3 letter language and up to three subtags
/// (`en`, `pt-BR`, `zh-Hant-TW`), at most 35 characters.
fn parse_language(s: &str) -> Result<String, ApiError> {
    let s = s.trim();
    let ok = s == "default"
        || (s.len() <= 35 && {
            let mut parts = s.split('-');
            let lang = parts.next().unwrap_or_default();
            let rest: Vec<&str> = parts.collect();
            (2..=3).contains(&lang.len())
                && lang.chars().all(|c| c.is_ascii_lowercase())
                && rest.len() <= 3
                && rest.iter().all(|p| {
                    (2..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric())
                })
        });
    if ok {
        Ok(s.to_owned())
    } else {
        Err(ApiError::invalid(
            "invalid language: use `default` or a BCP 47 tag such as `en` or `pt-BR`",
        ))
    }
}

/// Input of `userUpdateLanguage`.
#[derive(InputObject, Debug)]
pub struct UserUpdateLanguageInput {
    /// The language.
    pub language: LanguageScalar,
}

/// The user after the change, or why it failed.
#[derive(SimpleObject, Debug)]
pub struct UserUpdateLanguagePayload {
    /// Why it failed.
    pub errors: Vec<ErrorInterface>,
    /// The user.
    pub user: Option<User>,
}

/// The language mutation.
#[derive(Debug, Default)]
pub struct LanguageMutation;

#[Object]
impl LanguageMutation {
    /// Sets the user's preferred language (needs the write scope). Idempotent.
    async fn user_update_language(
        &self,
        ctx: &Context<'_>,
        input: UserUpdateLanguageInput,
    ) -> Result<UserUpdateLanguagePayload> {
        let p = principal(ctx, Scope::Write)?;
        let language = match parse_language(&input.language.0) {
            Ok(l) => l,
            Err(e) => {
                return Ok(UserUpdateLanguagePayload {
                    errors: payload_error_at(e, &["input", "language"]),
                    user: None,
                });
            }
        };
        let bank = &app(ctx).bank;
        let account = bank.account(p.account_id).await.map_err(gql)?;
        sqlx::query("UPDATE users SET language = $2 WHERE id = $1")
            .bind(Uuid::from(account.user_id))
            .bind(&language)
            .execute(bank.ledger().pool())
            .await
            .map_err(|e| gql(BankError::Database(e)))?;
        Ok(UserUpdateLanguagePayload {
            errors: Vec::new(),
            user: Some(User {
                account,
                principal: p,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::parse_language;

    #[test]
    fn languages_parse_as_tags_or_default() {
        for ok in ["default", "en", "pt-BR", "zh-Hant-TW", "es-419"] {
            assert_eq!(parse_language(ok).as_deref(), Ok(ok), "{ok}");
        }
        for bad in [
            "",
            "EN",
            "e",
            "english",
            "en_US",
            "en-",
            "a-b",
            "x'; DROP",
            "en-US-x-y-z",
        ] {
            assert!(parse_language(bad).is_err(), "{bad:?}");
        }
    }
}

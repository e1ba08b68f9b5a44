//! Parsed request values: parse, don't validate. The service never sees raw strings.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use super::secrets::Secret;

/// A value that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what}: {why}")]
pub struct ParseError {
    /// What was being parsed.
    pub what: &'static str,
    /// Why it was refused.
    pub why: &'static str,
}

fn bad(what: &'static str, why: &'static str) -> ParseError {
    ParseError { what, why }
}

/// A lower-cased e-mail address.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Email(String);

impl FromStr for Email {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim().to_lowercase();
        if s.len() > 254 {
            return Err(bad("email", "longer than 254 characters"));
        }
        let Some((local, domain)) = s.split_once('@') else {
            return Err(bad("email", "no @"));
        };
        if local.is_empty() || domain.contains('@') {
            return Err(bad("email", "malformed"));
        }
        if !domain.contains('.') || domain.starts_with('.') || domain.ends_with('.') {
            return Err(bad("email", "malformed domain"));
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("email", "contains spaces"));
        }
        Ok(Email(s))
    }
}

impl Email {
    /// The address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A phone number in E.164 form (`+` and 8 to 15 digits).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Phone(String);

impl FromStr for Phone {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let compact: String = s.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
        let Some(digits) = compact.strip_prefix('+') else {
            return Err(bad("phone", "must start with +"));
        };
        if !(8..=15).contains(&digits.len()) || !digits.chars().all(|c| c.is_ascii_digit()) {
            return Err(bad("phone", "must be 8 to 15 digits"));
        }
        Ok(Phone(compact))
    }
}

impl Phone {
    /// The number.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How a user identifies: an e-mail address or a phone number.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Identity {
    /// E-mail.
    Email(Email),
    /// Phone.
    Phone(Phone),
}

impl FromStr for Identity {
    type Err = ParseError;
    /// A string starting with `+` is a phone number, anything else an e-mail address.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim_start().starts_with('+') {
            s.parse().map(Identity::Phone)
        } else {
            s.parse().map(Identity::Email)
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Email(e) => f.write_str(e.as_str()),
            Identity::Phone(p) => f.write_str(p.as_str()),
        }
    }
}

/// A payable username: 3 to 50 characters, a letter first, then letters, digits or `_`;
/// case-insensitive (stored lower-case).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Username(String);

impl FromStr for Username {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim().to_lowercase();
        if !(3..=50).contains(&s.len()) {
            return Err(bad("username", "must be 3 to 50 characters"));
        }
        let mut chars = s.chars();
        if !chars.next().is_some_and(|c| c.is_ascii_lowercase()) {
            return Err(bad("username", "must start with a letter"));
        }
        if !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
            return Err(bad("username", "only letters, digits and _"));
        }
        Ok(Username(s))
    }
}

impl Username {
    /// The username.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A new password: 10 to 128 characters.
#[derive(Clone, Debug)]
pub struct NewPassword(Secret);

impl NewPassword {
    /// Checks the length.
    ///
    /// # Errors
    /// [`ParseError`] when too short or too long.
    pub fn new(password: Secret) -> Result<NewPassword, ParseError> {
        let n = password.expose().chars().count();
        if n < 10 {
            return Err(bad("password", "must be at least 10 characters"));
        }
        if n > 128 {
            return Err(bad("password", "must be at most 128 characters"));
        }
        Ok(NewPassword(password))
    }

    /// The password.
    pub fn secret(&self) -> &Secret {
        &self.0
    }
}

/// Account status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AccountStatus {
    /// May send and receive.
    Active,
    /// May not send (may receive).
    Locked,
    /// May neither send nor receive; final.
    Closed,
}

impl AccountStatus {
    /// The stored spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Active => "ACTIVE",
            AccountStatus::Locked => "LOCKED",
            AccountStatus::Closed => "CLOSED",
        }
    }
}

impl FromStr for AccountStatus {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ACTIVE" => Ok(AccountStatus::Active),
            "LOCKED" => Ok(AccountStatus::Locked),
            "CLOSED" => Ok(AccountStatus::Closed),
            _ => Err(bad("account status", "unknown")),
        }
    }
}

/// KYC level, 0 to 3.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Level(u8);

impl Level {
    /// Every level, lowest first.
    pub const ALL: [Level; 4] = [Level(0), Level(1), Level(2), Level(3)];

    /// A level.
    ///
    /// # Errors
    /// [`ParseError`] above 3.
    pub fn new(level: u8) -> Result<Level, ParseError> {
        if level > 3 {
            return Err(bad("level", "must be 0 to 3"));
        }
        Ok(Level(level))
    }

    /// The number.
    pub const fn get(self) -> u8 {
        self.0
    }
}

/// What an API key may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Scope {
    /// Read balances, transactions, account data.
    Read,
    /// Create invoices and addresses (receive money).
    Receive,
    /// Send money and change settings.
    Write,
}

impl Scope {
    /// The stored spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Receive => "receive",
            Scope::Write => "write",
        }
    }

    /// Every scope.
    pub const ALL: [Scope; 3] = [Scope::Read, Scope::Receive, Scope::Write];
}

impl FromStr for Scope {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "read" => Ok(Scope::Read),
            "receive" => Ok(Scope::Receive),
            "write" => Ok(Scope::Write),
            _ => Err(bad("scope", "unknown")),
        }
    }
}

/// A staff member's role for the admin API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StaffRole {
    /// Looks up accounts and transactions, locks accounts on request.
    Support,
    /// KYC levels, locking and closing accounts.
    Compliance,
    /// The bank's own books.
    Treasury,
    /// Everything.
    Admin,
}

/// What a staff member asks to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StaffAction {
    /// Find and view accounts.
    ViewAccounts,
    /// View a wallet's transactions.
    ViewTransactions,
    /// Lock or unlock an account.
    LockAccount,
    /// Close an account.
    CloseAccount,
    /// Change an account's KYC level.
    ChangeLevel,
    /// View the bank's omnibus and system balances.
    ViewTreasury,
    /// Create staff members.
    ManageStaff,
}

impl StaffRole {
    /// The stored spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            StaffRole::Support => "support",
            StaffRole::Compliance => "compliance",
            StaffRole::Treasury => "treasury",
            StaffRole::Admin => "admin",
        }
    }

    /// Whether this role may do `action`.
    pub const fn may(self, action: StaffAction) -> bool {
        use StaffAction as A;
        match self {
            StaffRole::Admin => true,
            StaffRole::Support => matches!(
                action,
                A::ViewAccounts | A::ViewTransactions | A::LockAccount
            ),
            StaffRole::Compliance => matches!(
                action,
                A::ViewAccounts
                    | A::ViewTransactions
                    | A::LockAccount
                    | A::CloseAccount
                    | A::ChangeLevel
            ),
            StaffRole::Treasury => {
                matches!(
                    action,
                    A::ViewAccounts | A::ViewTransactions | A::ViewTreasury
                )
            }
        }
    }
}

impl FromStr for StaffRole {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "support" => Ok(StaffRole::Support),
            "compliance" => Ok(StaffRole::Compliance),
            "treasury" => Ok(StaffRole::Treasury),
            "admin" => Ok(StaffRole::Admin),
            _ => Err(bad("staff role", "unknown")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_parse() {
        assert_eq!(
            " Alice@Example.COM ".parse::<Identity>().unwrap(),
            Identity::Email("alice@example.com".parse().unwrap())
        );
        assert!(
            matches!("+41 79 123 45 67".parse::<Identity>().unwrap(), Identity::Phone(p) if p.as_str() == "+41791234567")
        );
        for bad in [
            "",
            "alice",
            "a@b",
            "@x.com",
            "a@@x.com",
            "a b@x.com",
            "+12",
            "+12345abc90",
        ] {
            assert!(bad.parse::<Identity>().is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn usernames_parse() {
        assert_eq!("Alice_1".parse::<Username>().unwrap().as_str(), "alice_1");
        for bad in ["ab", "1abc", "_abc", "al ice", "alice!", &"a".repeat(51)] {
            assert!(bad.parse::<Username>().is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn passwords_have_a_length() {
        assert!(NewPassword::new(Secret::new("short")).is_err());
        assert!(NewPassword::new(Secret::new("long enough pw")).is_ok());
        assert!(NewPassword::new(Secret::new("x".repeat(129))).is_err());
    }

    #[test]
    fn staff_roles_matrix() {
        use StaffAction::*;
        let all = [
            ViewAccounts,
            ViewTransactions,
            LockAccount,
            CloseAccount,
            ChangeLevel,
            ViewTreasury,
            ManageStaff,
        ];
        for a in all {
            assert!(StaffRole::Admin.may(a));
        }
        assert!(StaffRole::Support.may(LockAccount));
        assert!(!StaffRole::Support.may(CloseAccount));
        assert!(!StaffRole::Support.may(ChangeLevel));
        assert!(StaffRole::Compliance.may(ChangeLevel));
        assert!(!StaffRole::Compliance.may(ViewTreasury));
        assert!(StaffRole::Treasury.may(ViewTreasury));
        assert!(!StaffRole::Treasury.may(LockAccount));
        assert!(!StaffRole::Compliance.may(ManageStaff));
        assert!(Level::new(4).is_err());
    }
}

//! Scalars named as in Blink's schema. String scalars keep the raw text: the resolvers parse
//! it into domain types, so a bad value becomes a specific payload error (code
//! `INVALID_INPUT`) rather than a generic coercion failure. Amount scalars are integers in
//! satoshis and refuse anything else (floats, strings, negatives where unsigned): money is
//! never a float.

use async_graphql::{InputValueError, InputValueResult, Number, Scalar, ScalarType, Value};

macro_rules! string_scalar {
    ($(#[$meta:meta])* $rust:ident, $name:literal) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub struct $rust(pub String);

        #[Scalar(name = $name)]
        impl ScalarType for $rust {
            fn parse(value: Value) -> InputValueResult<Self> {
                match value {
                    Value::String(s) => Ok($rust(s)),
                    other => Err(InputValueError::expected_type(other)),
                }
            }

            fn to_value(&self) -> Value {
                Value::String(self.0.clone())
            }
        }
    };
}

string_scalar!(
    /// Unique identifier of a wallet (a UUID).
    WalletIdScalar,
    "WalletId"
);
string_scalar!(
    /// Unique identifier of a user: 3 to 50 letters, digits or `_`, a letter first.
    UsernameScalar,
    "Username"
);
string_scalar!(
    /// A memo attached to a payment (at most 1000 bytes).
    MemoScalar,
    "Memo"
);
string_scalar!(
    /// An e-mail address.
    EmailAddressScalar,
    "EmailAddress"
);
string_scalar!(
    /// A phone number in E.164 form.
    PhoneScalar,
    "Phone"
);
string_scalar!(
    /// A one-time code sent by e-mail or SMS.
    OneTimeAuthCodeScalar,
    "OneTimeAuthCode"
);
string_scalar!(
    /// An opaque bearer token.
    AuthTokenScalar,
    "AuthToken"
);
string_scalar!(
    /// Display currency of an account. This bank is BTC-only: always `BTC`.
    DisplayCurrencyScalar,
    "DisplayCurrency"
);
string_scalar!(
    /// An amount in the display currency's major unit, as a decimal string (no float).
    SignedDisplayMajorAmountScalar,
    "SignedDisplayMajorAmount"
);
string_scalar!(
    /// A Lightning payment preimage (hex). Internal transfers have none.
    LnPaymentPreImageScalar,
    "LnPaymentPreImage"
);
string_scalar!(
    /// A Lightning payment hash (hex). No Lightning payments exist here yet.
    PaymentHashScalar,
    "PaymentHash"
);
string_scalar!(
    /// A BOLT 11 payment request. No Lightning payments exist here yet.
    LnPaymentRequestScalar,
    "LnPaymentRequest"
);
string_scalar!(
    /// A Lightning payment secret (hex).
    LnPaymentSecretScalar,
    "LnPaymentSecret"
);
string_scalar!(
    /// A Bitcoin address (deposit addresses come from `onChainAddressCreate`).
    OnChainAddressScalar,
    "OnChainAddress"
);
string_scalar!(
    /// An external reference id that can be optionally added for transactions.
    TxExternalIdScalar,
    "TxExternalId"
);
string_scalar!(
    /// A language tag (BCP 47, e.g. `en` or `pt-BR`), or `default` for the device's.
    LanguageScalar,
    "Language"
);
string_scalar!(
    /// A Bitcoin transaction id (hex).
    OnChainTxHashScalar,
    "OnChainTxHash"
);
string_scalar!(
    /// An account id (a UUID).
    AccountIdScalar,
    "AccountId"
);
string_scalar!(
    /// 32 bytes in hex (a description hash).
    Hex32BytesScalar,
    "Hex32Bytes"
);

fn integer(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

/// A positive amount of satoshis (an integer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SatAmount(pub u64);

/// (Positive) satoshi amount, an integer.
#[Scalar(name = "SatAmount")]
impl ScalarType for SatAmount {
    fn parse(value: Value) -> InputValueResult<Self> {
        match integer(&value).and_then(|v| u64::try_from(v).ok()) {
            Some(v) => Ok(SatAmount(v)),
            None => Err(InputValueError::custom(
                "SatAmount must be a non-negative integer number of satoshis",
            )),
        }
    }

    fn to_value(&self) -> Value {
        Value::Number(Number::from(self.0))
    }
}

/// A signed amount of satoshis (negative for money out).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignedAmount(pub i64);

/// An amount (of a currency) that can be negative (e.g. in a transaction): integer sats.
#[Scalar(name = "SignedAmount")]
impl ScalarType for SignedAmount {
    fn parse(value: Value) -> InputValueResult<Self> {
        integer(&value)
            .map(SignedAmount)
            .ok_or_else(|| InputValueError::custom("SignedAmount must be an integer"))
    }

    fn to_value(&self) -> Value {
        Value::Number(Number::from(self.0))
    }
}

/// Unix time in seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timestamp(pub i64);

/// Timestamp field, serialized as Unix time (the number of seconds since the Unix epoch).
#[Scalar(name = "Timestamp")]
impl ScalarType for Timestamp {
    fn parse(value: Value) -> InputValueResult<Self> {
        integer(&value)
            .map(Timestamp)
            .ok_or_else(|| InputValueError::custom("Timestamp must be an integer"))
    }

    fn to_value(&self) -> Value {
        Value::Number(Number::from(self.0))
    }
}

impl From<chrono::DateTime<chrono::Utc>> for Timestamp {
    fn from(t: chrono::DateTime<chrono::Utc>) -> Timestamp {
        Timestamp(t.timestamp())
    }
}

/// A positive number of seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seconds(pub u64);

/// (Positive) amount of seconds.
#[Scalar(name = "Seconds")]
impl ScalarType for Seconds {
    fn parse(value: Value) -> InputValueResult<Self> {
        match integer(&value).and_then(|v| u64::try_from(v).ok()) {
            Some(v) => Ok(Seconds(v)),
            None => Err(InputValueError::custom(
                "Seconds must be a non-negative integer",
            )),
        }
    }

    fn to_value(&self) -> Value {
        Value::Number(Number::from(self.0))
    }
}

/// A positive number of minutes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Minutes(pub u32);

/// (Positive) amount of minutes
#[Scalar(name = "Minutes")]
impl ScalarType for Minutes {
    fn parse(value: Value) -> InputValueResult<Self> {
        match integer(&value).and_then(|v| u32::try_from(v).ok()) {
            Some(v) => Ok(Minutes(v)),
            None => Err(InputValueError::custom(
                "Minutes must be a non-negative integer",
            )),
        }
    }

    fn to_value(&self) -> Value {
        Value::Number(Number::from(self.0))
    }
}

/// A whole number between -(2^53) + 1 and 2^53 - 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SafeInt(pub i64);

/// Non-fractional signed whole numeric value between -(2^53) + 1 and 2^53 - 1.
#[Scalar(name = "SafeInt")]
impl ScalarType for SafeInt {
    fn parse(value: Value) -> InputValueResult<Self> {
        const MAX: i64 = (1 << 53) - 1;
        match integer(&value) {
            Some(v) if (-MAX..=MAX).contains(&v) => Ok(SafeInt(v)),
            _ => Err(InputValueError::custom(
                "SafeInt must be an integer within ±(2^53 - 1)",
            )),
        }
    }

    fn to_value(&self) -> Value {
        Value::Number(Number::from(self.0))
    }
}

/// Satoshis as a BTC decimal string with 8 places ("-0.00001000"), by integer arithmetic.
pub fn sats_as_btc_string(sats: i64) -> String {
    let sign = if sats < 0 { "-" } else { "" };
    let abs = sats.unsigned_abs();
    format!("{sign}{}.{:08}", abs / 100_000_000, abs % 100_000_000)
}

string_scalar!(
    /// Unique identifier of a callback endpoint (a UUID).
    EndpointIdScalar,
    "EndpointId"
);
string_scalar!(
    /// Url that will be fetched on events for the account
    EndpointUrlScalar,
    "EndpointUrl"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn btc_strings_are_exact() {
        assert_eq!(sats_as_btc_string(0), "0.00000000");
        assert_eq!(sats_as_btc_string(1), "0.00000001");
        assert_eq!(sats_as_btc_string(-1_000), "-0.00001000");
        assert_eq!(
            sats_as_btc_string(2_100_000_000_000_000),
            "21000000.00000000"
        );
    }

    #[test]
    fn sat_amounts_refuse_floats_and_negatives() {
        assert!(SatAmount::parse(Value::from(10)).is_ok());
        assert!(SatAmount::parse(Value::from(-1)).is_err());
        assert!(SatAmount::parse(Value::from(1.5)).is_err());
        assert!(SatAmount::parse(Value::from("10")).is_err());
    }
}

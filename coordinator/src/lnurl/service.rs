//! LNURL-pay with the bank: the payRequest and callback of its users' Lightning
//! addresses, and payments to any LNURL or address from a user's wallet.

use reqwest::Url;

use super::client::Client;
use super::codec::{PayTarget, check_callable, encode_lnurl};
use super::pay::{PayRequest, description_hash, invoice_from_json, metadata_for, verify_invoice};
use super::{LnurlConfig, LnurlError, PublicUrl};
use crate::amount::{Msats, Sats};
use crate::bank::lightning::{InvoiceCreate, LnPayRequest, LnPayResult};
use crate::bank::{Bank, BankError, Principal, Scope, Username};
use crate::ids::WalletId;

/// Longest memo a payment to an LNURL gets in the payer's history (the service's
/// description, cut).
const MAX_PAYER_MEMO_CHARS: usize = 200;

/// LNURL-pay for a bank.
#[derive(Clone, Debug)]
pub struct Lnurl {
    config: LnurlConfig,
    client: Client,
}

impl Lnurl {
    /// LNURL-pay as `config` says.
    ///
    /// # Errors
    /// [`LnurlError::Unreachable`] if the HTTP client cannot be built (no TLS roots).
    pub fn new(config: LnurlConfig) -> Result<Lnurl, LnurlError> {
        let client = Client::new(config.timeout, config.allow_loopback)?;
        Ok(Lnurl { config, client })
    }

    /// The configuration.
    pub fn config(&self) -> &LnurlConfig {
        &self.config
    }

    fn public_url(&self) -> Result<&PublicUrl, LnurlError> {
        self.config
            .public_url
            .as_ref()
            .ok_or(LnurlError::NotConfigured)
    }

    /// A user's Lightning address.
    ///
    /// # Errors
    /// [`LnurlError::NotConfigured`].
    pub fn address_of(&self, username: &Username) -> Result<String, LnurlError> {
        Ok(format!("{username}@{}", self.public_url()?.domain()))
    }

    /// Where a user's payRequest is (LUD-16).
    ///
    /// # Errors
    /// [`LnurlError::NotConfigured`].
    pub fn well_known_url(&self, username: &Username) -> Result<Url, LnurlError> {
        Ok(self
            .public_url()?
            .join(&[".well-known", "lnurlp", username.as_str()]))
    }

    /// A user's payRequest as a LUD-01 LNURL (for a QR code).
    ///
    /// # Errors
    /// [`LnurlError::NotConfigured`].
    pub fn lnurl_of(&self, username: &Username) -> Result<String, LnurlError> {
        Ok(encode_lnurl(&self.well_known_url(username)?))
    }

    fn metadata(&self, username: &Username) -> Result<String, LnurlError> {
        Ok(metadata_for(
            username.as_str(),
            &self.public_url()?.domain(),
        ))
    }

    /// The user an address or path names, if an open account has it.
    async fn recipient(&self, bank: &Bank, user: &str) -> Result<(Username, WalletId), LnurlError> {
        let username: Username = user.parse().map_err(|_| LnurlError::UnknownUser)?;
        match bank.wallet_of_username(&username).await {
            Ok(w) => Ok((username, w)),
            Err(BankError::NotFound { .. }) => Err(LnurlError::UnknownUser),
            Err(e) => Err(e.into()),
        }
    }

    /// The payRequest of a user's Lightning address (LUD-06 step 3).
    ///
    /// # Errors
    /// [`LnurlError::UnknownUser`] for a username no open account has.
    pub async fn pay_request(&self, bank: &Bank, user: &str) -> Result<PayRequest, LnurlError> {
        let public = self.public_url()?;
        let (username, _) = self.recipient(bank, user).await?;
        Ok(PayRequest {
            callback: public.join(&["lnurlp", username.as_str(), "callback"]),
            min_sendable: self.config.min_sendable.to_msats(),
            max_sendable: self.config.max_sendable.to_msats(),
            metadata: self.metadata(&username)?,
            comment_allowed: u64::from(self.config.comment_allowed),
        })
    }

    /// The JSON of a payRequest.
    pub fn pay_request_json(pay: &PayRequest) -> serde_json::Value {
        let mut v = serde_json::json!({
            "tag": "payRequest",
            "callback": pay.callback.as_str(),
            "minSendable": pay.min_sendable.to_msat(),
            "maxSendable": pay.max_sendable.to_msat(),
            "metadata": pay.metadata,
        });
        if pay.comment_allowed > 0 {
            v["commentAllowed"] = pay.comment_allowed.into();
        }
        v
    }

    /// The callback (LUD-06 step 5): an invoice of `amount_msat` for the user's default
    /// wallet, committing to the metadata; the comment (LUD-12) becomes its memo.
    ///
    /// # Errors
    /// [`LnurlError::UnknownUser`]; [`LnurlError::AmountOutOfRange`];
    /// [`LnurlError::FractionalAmount`]; [`LnurlError::InvalidRequest`] for a comment too
    /// long; [`LnurlError::Bank`] (a closed account, no Lightning node).
    pub async fn invoice(
        &self,
        bank: &Bank,
        user: &str,
        amount_msat: u64,
        comment: Option<&str>,
    ) -> Result<String, LnurlError> {
        self.public_url()?;
        let (username, wallet) = self.recipient(bank, user).await?;
        let (min, max) = (
            self.config.min_sendable.to_msats(),
            self.config.max_sendable.to_msats(),
        );
        let amount = Msats::new(amount_msat).map_err(|_| LnurlError::AmountOutOfRange {
            amount: Msats::MAX,
            min,
            max,
        })?;
        if amount < min || amount > max {
            return Err(LnurlError::AmountOutOfRange { amount, min, max });
        }
        let sats = amount
            .to_sats_exact()
            .map_err(|_| LnurlError::FractionalAmount)?;
        let comment = comment.map(str::trim).filter(|c| !c.is_empty());
        if comment.is_some_and(|c| c.chars().count() > usize::from(self.config.comment_allowed)) {
            return Err(LnurlError::InvalidRequest("comment too long"));
        }
        let metadata = self.metadata(&username)?;
        let memo = comment.map_or_else(|| format!("Payment to {username}"), str::to_owned);
        let invoice = bank
            .ln_invoice_create(
                None,
                &InvoiceCreate {
                    wallet_id: Some(wallet),
                    amount: Some(sats),
                    memo: Some(memo),
                    description_hash: Some(description_hash(&metadata)),
                    ..InvoiceCreate::default()
                },
            )
            .await?;
        Ok(invoice.payment_request)
    }

    /// Resolves `target` and asks its callback for an invoice of `amount`: the
    /// payRequest and the invoice, not yet verified ([`verify_invoice`] does that). The
    /// bank's own addresses are answered without HTTP.
    ///
    /// # Errors
    /// [`LnurlError`], before or instead of any call the policy refuses; the amount is
    /// checked against the payRequest before the callback is called.
    pub async fn fetch_invoice(
        &self,
        bank: &Bank,
        target: &PayTarget,
        amount: Msats,
    ) -> Result<(PayRequest, String), LnurlError> {
        let url = target.url()?;
        let own = self
            .config
            .public_url
            .as_ref()
            .is_some_and(|p| p.is_own(&url));
        if own {
            // The same answers the bank's endpoints give.
            let user = own_user(&url)?;
            let pay = self.pay_request(bank, &user).await?;
            pay.check_amount(amount)?;
            let invoice = self.invoice(bank, &user, amount.to_msat(), None).await?;
            return Ok((pay, invoice));
        }
        let pay = PayRequest::from_json(self.client.get_json(url).await?)?;
        check_callable(&pay.callback, self.config.allow_loopback)?;
        if let Some(address) = target.address() {
            pay.check_identifier(address)?;
        }
        pay.check_amount(amount)?;
        let answer = self.client.get_json(pay.callback_url(amount)).await?;
        let invoice = invoice_from_json(answer)?;
        Ok((pay, invoice))
    }

    /// Pays `amount` to an LNURL or Lightning address from one of the caller's wallets:
    /// resolve, check the amount against the payRequest, ask the callback for an invoice,
    /// verify it, then [`Bank::ln_send`]. Nothing is paid unless every check passes.
    ///
    /// # Errors
    /// [`LnurlError`]; [`LnurlError::Bank`] for what `ln_send` refuses.
    pub async fn pay(
        &self,
        bank: &Bank,
        principal: &Principal,
        wallet: WalletId,
        target: &PayTarget,
        amount: Sats,
    ) -> Result<LnPayResult, LnurlError> {
        // Before any call: only a sender who may pay makes the bank call a service.
        principal.require(Scope::Write)?;
        let network = bank
            .lightning()
            .ok_or(BankError::LightningUnavailable)?
            .config()
            .network;
        if amount == Sats::ZERO {
            return Err(BankError::InvalidAmount.into());
        }
        // Another account's wallet is refused before the service is called.
        bank.wallet(principal, wallet).await?;
        let msats = amount.to_msats();
        let (pay, invoice) = self.fetch_invoice(bank, target, msats).await?;
        let decoded = verify_invoice(&invoice, network, &pay, msats, chrono::Utc::now())?;
        tracing::info!(
            payment_hash = %decoded.payment_hash,
            amount_msat = msats.to_msat(),
            "paying an LNURL invoice"
        );
        let memo: String = pay
            .description()
            .chars()
            .take(MAX_PAYER_MEMO_CHARS)
            .collect();
        Ok(bank
            .ln_send(
                principal,
                &LnPayRequest {
                    wallet_id: wallet,
                    payment_request: decoded.payment_request,
                    amount: None,
                    memo: Some(memo),
                },
            )
            .await?)
    }
}

/// The username of a URL of the bank's own payRequests.
fn own_user(url: &Url) -> Result<String, LnurlError> {
    let segments: Vec<&str> = url
        .path_segments()
        .map(Iterator::collect)
        .unwrap_or_default();
    match segments.as_slice() {
        [".well-known", "lnurlp", user] => Ok((*user).to_owned()),
        _ => Err(LnurlError::InvalidTarget(
            "not a Lightning address or LNURL-pay link of this bank",
        )),
    }
}

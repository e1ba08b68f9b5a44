//! Where an LNURL-pay payment goes: LUD-01 bech32 LNURLs, LUD-16 Lightning addresses and
//! LUD-17 `lnurlp://` links, each turned into the URL of a payRequest, and the rule for
//! which URLs the bank will call at all.

use std::fmt;
use std::str::FromStr;

use bech32::primitives::decode::CheckedHrpstring;
use bech32::{Bech32, Hrp};
use reqwest::Url;

use super::LnurlError;

/// LUD-01's human-readable part.
const LNURL_HRP: &str = "lnurl";

/// Longest local part of an address we accept (LUD-16 sets none; e-mail's is 64).
const MAX_USER_LEN: usize = 64;

/// Longest LNURL or address accepted as input.
pub const MAX_TARGET_LEN: usize = 2_000;

fn bad(why: &'static str) -> LnurlError {
    LnurlError::InvalidTarget(why)
}

/// Decodes a LUD-01 LNURL (`lnurl1...`, either case, optionally `lightning:`-prefixed)
/// into the URL it encodes. The URL is not checked against the call policy here.
///
/// # Errors
/// [`LnurlError::InvalidTarget`].
pub fn decode_lnurl(s: &str) -> Result<Url, LnurlError> {
    let s = strip_lightning(s.trim());
    if s.len() > MAX_TARGET_LEN {
        return Err(bad("too long"));
    }
    let checked = CheckedHrpstring::new::<Bech32>(s).map_err(|_| bad("not a bech32 LNURL"))?;
    if checked.hrp().to_lowercase() != LNURL_HRP {
        return Err(bad("not an LNURL (prefix is not lnurl)"));
    }
    let bytes: Vec<u8> = checked.byte_iter().collect();
    let text = String::from_utf8(bytes).map_err(|_| bad("the LNURL does not encode text"))?;
    Url::parse(&text).map_err(|_| bad("the LNURL does not encode a URL"))
}

/// Encodes a URL as a LUD-01 LNURL, upper case (what QR codes should carry).
pub fn encode_lnurl(url: &Url) -> String {
    let hrp = Hrp::parse_unchecked(LNURL_HRP);
    // Bech32's code length (1023 characters) holds any URL this bank builds (its own
    // origin and a username); a longer one is a bug, not an input.
    bech32::encode_upper::<Bech32>(hrp, url.as_str().as_bytes())
        .unwrap_or_else(|e| format!("unencodable URL: {e}"))
}

fn strip_lightning(s: &str) -> &str {
    match s.get(..10) {
        Some(p) if p.eq_ignore_ascii_case("lightning:") => &s[10..],
        _ => s,
    }
}

/// A Lightning address (LUD-16): `user@domain`, lower case. The domain may carry a port
/// (a bank on a non-default port, or a test service on 127.0.0.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LnAddress {
    user: String,
    domain: String,
}

impl LnAddress {
    /// The local part.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The domain, with its port if it has one.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Where its payRequest is: `https://<domain>/.well-known/lnurlp/<user>`, or
    /// `http://` for a loopback host (tests and local demos; the call policy still decides
    /// whether such a URL may be called).
    pub fn well_known_url(&self) -> Result<Url, LnurlError> {
        let mut url = Url::parse(&format!("https://{}/", self.domain))
            .map_err(|_| bad("the address's domain is not a host name"))?;
        if is_loopback(&url) {
            url.set_scheme("http")
                .map_err(|()| bad("the address's domain is not a host name"))?;
        }
        url.path_segments_mut()
            .map_err(|()| bad("the address's domain is not a host name"))?
            .extend([".well-known", "lnurlp", self.user.as_str()]);
        Ok(url)
    }
}

impl FromStr for LnAddress {
    type Err = LnurlError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.len() > MAX_TARGET_LEN {
            return Err(bad("too long"));
        }
        let (user, domain) = s
            .split_once('@')
            .ok_or(bad("a Lightning address is user@domain"))?;
        let (user, domain) = (user.to_ascii_lowercase(), domain.to_ascii_lowercase());
        if user.is_empty() || user.len() > MAX_USER_LEN {
            return Err(bad("the address's user must be 1 to 64 characters"));
        }
        // LUD-16's character set for the user part, and '+' which some services use.
        if !user
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.+".contains(c))
        {
            return Err(bad(
                "the address's user has characters LUD-16 does not allow",
            ));
        }
        // The domain must be a bare host (and port): parsed as the authority of a URL it
        // must come back unchanged, with no path, user info or query smuggled in.
        let url = Url::parse(&format!("https://{domain}/"))
            .map_err(|_| bad("the address's domain is not a host name"))?;
        let host = url
            .host_str()
            .ok_or(bad("the address's domain is not a host name"))?;
        let authority = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_owned(),
        };
        if authority != domain || !url.username().is_empty() || url.password().is_some() {
            return Err(bad("the address's domain is not a host name"));
        }
        Ok(LnAddress { user, domain })
    }
}

impl fmt::Display for LnAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.user, self.domain)
    }
}

/// What a payer names: an LNURL or a Lightning address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PayTarget {
    /// A LUD-01 LNURL or LUD-17 `lnurlp://` link, decoded.
    Lnurl(Url),
    /// A LUD-16 address.
    Address(LnAddress),
}

impl PayTarget {
    /// Reads an `lnurl` input: a bech32 LNURL, a LUD-17 `lnurlp://` link, or (as many
    /// wallets accept there) a Lightning address.
    ///
    /// # Errors
    /// [`LnurlError::InvalidTarget`].
    pub fn parse_lnurl(s: &str) -> Result<PayTarget, LnurlError> {
        let t = strip_lightning(s.trim());
        if t.contains('@') && !t.contains('/') {
            return t.parse().map(PayTarget::Address);
        }
        match t.get(..9) {
            Some(p) if p.eq_ignore_ascii_case("lnurlp://") => {
                // LUD-17: HTTPS, or plain HTTP to a loopback host like addresses.
                let mut url = Url::parse(&format!("https://{}", &t[9..]))
                    .map_err(|_| bad("not a valid lnurlp:// link"))?;
                if is_loopback(&url) {
                    url.set_scheme("http")
                        .map_err(|()| bad("not a valid lnurlp:// link"))?;
                }
                Ok(PayTarget::Lnurl(url))
            }
            _ => decode_lnurl(t).map(PayTarget::Lnurl),
        }
    }

    /// The URL of the payRequest.
    ///
    /// # Errors
    /// [`LnurlError::InvalidTarget`].
    pub fn url(&self) -> Result<Url, LnurlError> {
        match self {
            PayTarget::Lnurl(u) => Ok(u.clone()),
            PayTarget::Address(a) => a.well_known_url(),
        }
    }

    /// The LUD-16 address, if the target is one (its payRequest's identifier must match).
    pub fn address(&self) -> Option<&LnAddress> {
        match self {
            PayTarget::Address(a) => Some(a),
            PayTarget::Lnurl(_) => None,
        }
    }
}

/// Whether the URL names this machine.
pub fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    // IPv6 hosts come bracketed.
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The call policy: HTTPS to another host; plain HTTP, and loopback hosts at all, only
/// when `allow_loopback` (tests and local demos: a production bank must not be made to
/// call services on its own machine). No user info in the URL.
///
/// # Errors
/// [`LnurlError::InsecureUrl`].
pub fn check_callable(url: &Url, allow_loopback: bool) -> Result<(), LnurlError> {
    if !url.username().is_empty() || url.password().is_some() || url.host().is_none() {
        return Err(LnurlError::InsecureUrl);
    }
    let loopback = is_loopback(url);
    if loopback && !allow_loopback {
        return Err(LnurlError::InsecureUrl);
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(LnurlError::InsecureUrl),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // LUD-01's example (github.com/lnurl/luds, 01.md).
    const LUD01_URL: &str = "https://service.com/api?q=3fc3645b439ce8e7f2553a69e5267081d96dcd340693afabe04be7b0ccd178df";
    const LUD01_LNURL: &str = "LNURL1DP68GURN8GHJ7UM9WFMXJCM99E3K7MF0V9CXJ0M385EKVCENXC6R2C35XVUKXEFCV5MKVV34X5EKZD3EV56NYD3HXQURZEPEXEJXXEPNXSCRVWFNV9NXZCN9XQ6XYEFHVGCXXCMYXYMNSERXFQ5FNS";

    #[test]
    fn lud01_vector_decodes_and_encodes_back() {
        let url = decode_lnurl(LUD01_LNURL).unwrap();
        assert_eq!(url.as_str(), LUD01_URL);
        assert_eq!(encode_lnurl(&url), LUD01_LNURL);
        // Lower case and a lightning: prefix are the same LNURL.
        let lower = format!("lightning:{}", LUD01_LNURL.to_lowercase());
        assert_eq!(decode_lnurl(&lower).unwrap(), url);
    }

    #[test]
    fn broken_lnurls_are_refused() {
        let mut flipped = LUD01_LNURL.to_owned();
        flipped.replace_range(20..21, "Q");
        assert!(decode_lnurl(&flipped).is_err(), "checksum");
        let mixed = format!("lnurl{}", &LUD01_LNURL[5..]);
        assert!(decode_lnurl(&mixed).is_err(), "mixed case");
        let other_hrp =
            bech32::encode::<Bech32>(Hrp::parse_unchecked("lnbc"), b"https://a.b/").unwrap();
        assert!(decode_lnurl(&other_hrp).is_err(), "hrp");
        let not_text = encode_bytes(&[0xff, 0xfe]);
        assert!(decode_lnurl(&not_text).is_err(), "utf-8");
    }

    fn encode_bytes(b: &[u8]) -> String {
        bech32::encode::<Bech32>(Hrp::parse_unchecked(LNURL_HRP), b).unwrap()
    }

    #[test]
    fn addresses_parse_to_their_well_known_url() {
        let a: LnAddress = " Alice@Bank.Example ".parse().unwrap();
        assert_eq!(a.to_string(), "alice@bank.example");
        assert_eq!(
            a.well_known_url().unwrap().as_str(),
            "https://bank.example/.well-known/lnurlp/alice"
        );
        let local: LnAddress = "bob@127.0.0.1:8080".parse().unwrap();
        assert_eq!(
            local.well_known_url().unwrap().as_str(),
            "http://127.0.0.1:8080/.well-known/lnurlp/bob"
        );
        for bad in [
            "alice",
            "@bank.example",
            "alice@",
            "al/ice@bank.example",
            "alice@bank.example/path",
            "alice@evil.example@bank.example",
            "alice@bank.example?x=1",
            "alice@bank.example#x",
            "ali ce@bank.example",
        ] {
            assert!(bad.parse::<LnAddress>().is_err(), "{bad}");
        }
    }

    #[test]
    fn targets_read_lnurls_links_and_addresses() {
        assert_eq!(
            PayTarget::parse_lnurl(LUD01_LNURL)
                .unwrap()
                .url()
                .unwrap()
                .as_str(),
            LUD01_URL
        );
        assert_eq!(
            PayTarget::parse_lnurl("lnurlp://shop.example/pay/1")
                .unwrap()
                .url()
                .unwrap()
                .as_str(),
            "https://shop.example/pay/1"
        );
        assert!(matches!(
            PayTarget::parse_lnurl("carol@shop.example").unwrap(),
            PayTarget::Address(_)
        ));
        assert!(PayTarget::parse_lnurl("https://shop.example/pay").is_err());
    }

    #[test]
    fn only_https_or_allowed_loopback_is_called() {
        let u = |s: &str| Url::parse(s).unwrap();
        assert!(check_callable(&u("https://shop.example/x"), false).is_ok());
        assert!(check_callable(&u("http://shop.example/x"), true).is_err());
        assert!(check_callable(&u("http://127.0.0.1:9/x"), false).is_err());
        assert!(check_callable(&u("https://localhost/x"), false).is_err());
        assert!(check_callable(&u("http://127.0.0.1:9/x"), true).is_ok());
        assert!(check_callable(&u("http://[::1]:9/x"), true).is_ok());
        assert!(check_callable(&u("https://user:pw@shop.example/x"), false).is_err());
        assert!(check_callable(&u("ftp://shop.example/x"), false).is_err());
    }
}

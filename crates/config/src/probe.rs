//! The filtering checks' identity: a short-lived token, signed with a key
//! only Haven's own user can read, that the DNS filter (as a DoH path,
//! `/dns-query/probe.…`) and the proxy (as `Proxy-Authorization: Basic`
//! with the reserved user [`PROBE_USER`]) accept as "filter this as school
//! S, group G". A check run from the server (or a technician's laptop on
//! the staff network) is then decided exactly as a pupil in that group
//! would be, whatever address it comes from.
//!
//! It is not a way round the filter: nobody without the key can make one;
//! one lives minutes at most (a token claiming more is refused, so even a
//! copied one is soon useless); the filters decide a probe like anyone
//! else in the group and the proxy never forwards a probe's request to the
//! origin, so a token cannot be used to browse. Verifying is pure: the
//! time is a parameter.

use std::fmt;

use base64::Engine as _;
use jiff::{SignedDuration, Timestamp};

/// The proxy sign-in name reserved for probes (its password is a token).
pub const PROBE_USER: &str = "haven-probe";
/// Every token starts with this, so a DoH path can be told from a device's token.
pub const TOKEN_PREFIX: &str = "probe.";
/// The longest a token may live: long enough for one run of every probe.
pub const MAX_LIFETIME: SignedDuration = SignedDuration::from_mins(15);
/// The key file's name in the data folder (owner-only).
pub const KEY_FILE: &str = "probe.key";
/// Bytes of key.
pub const KEY_LEN: usize = 32;

/// The key that signs and checks probe tokens.
#[derive(Clone, PartialEq, Eq)]
pub struct ProbeKey([u8; KEY_LEN]);

impl fmt::Debug for ProbeKey {
    // The key never appears in a log line or a panic message.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ProbeKey(…)")
    }
}

/// Who a valid token says the probe is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeClaim {
    /// The school's id.
    pub school: String,
    /// The group's id.
    pub group: String,
    /// When the token stops working.
    pub expires: Timestamp,
}

/// Why a token was refused (said to the person running checks, never to a browser).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    /// Not a probe token at all, or damaged.
    #[error("not a probe token")]
    Malformed,
    /// Signed with another key (another Haven's, or a guess).
    #[error("the probe token's signature does not match this Haven's key")]
    Signature,
    /// Its time is up.
    #[error("the probe token has expired")]
    Expired,
    /// It claims to live longer than a probe may.
    #[error("the probe token claims to live longer than {} minutes", MAX_LIFETIME.as_mins())]
    TooLong,
    /// A key file that is not a key.
    #[error("the probe key must be {KEY_LEN} bytes; delete it and restart `haven serve` to make a new one")]
    BadKey,
}

impl ProbeKey {
    /// A key from its file's bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ProbeError> {
        <[u8; KEY_LEN]>::try_from(bytes).map(Self).map_err(|_| ProbeError::BadKey)
    }

    /// The key's bytes, to write its file.
    pub fn to_bytes(&self) -> [u8; KEY_LEN] {
        self.0
    }

    /// A token for `school` and `group`, working from `now` for `lifetime`
    /// (at most [`MAX_LIFETIME`]).
    pub fn mint(&self, school: &str, group: &str, now: Timestamp, lifetime: SignedDuration) -> String {
        let expires = now.as_second().saturating_add(lifetime.min(MAX_LIFETIME).as_secs());
        let payload = format!("v1\n{school}\n{group}\n{expires}");
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!("{TOKEN_PREFIX}{}.{}", b64.encode(&payload), b64.encode(self.tag(payload.as_bytes()).as_ref()))
    }

    /// Checks a token at `now`: signed with this key, not expired, not
    /// claiming more than [`MAX_LIFETIME`].
    pub fn verify(&self, token: &str, now: Timestamp) -> Result<ProbeClaim, ProbeError> {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let rest = token.strip_prefix(TOKEN_PREFIX).ok_or(ProbeError::Malformed)?;
        // Bounded before decoding: a token is a few hundred bytes.
        if rest.len() > 1024 {
            return Err(ProbeError::Malformed);
        }
        let (payload, tag) = rest.split_once('.').ok_or(ProbeError::Malformed)?;
        let payload = b64.decode(payload).map_err(|_| ProbeError::Malformed)?;
        let tag = b64.decode(tag).map_err(|_| ProbeError::Malformed)?;
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &self.0);
        // Constant-time comparison, before anything in the payload is believed.
        aws_lc_rs::hmac::verify(&key, &payload, &tag).map_err(|_| ProbeError::Signature)?;
        let text = String::from_utf8(payload).map_err(|_| ProbeError::Malformed)?;
        let mut parts = text.split('\n');
        let (Some("v1"), Some(school), Some(group), Some(expires), None) = (parts.next(), parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(ProbeError::Malformed);
        };
        let expires: i64 = expires.parse().map_err(|_| ProbeError::Malformed)?;
        let now_s = now.as_second();
        if expires <= now_s {
            return Err(ProbeError::Expired);
        }
        if expires - now_s > MAX_LIFETIME.as_secs() {
            return Err(ProbeError::TooLong);
        }
        let expires = Timestamp::from_second(expires).map_err(|_| ProbeError::Malformed)?;
        Ok(ProbeClaim { school: school.to_string(), group: group.to_string(), expires })
    }

    fn tag(&self, payload: &[u8]) -> aws_lc_rs::hmac::Tag {
        aws_lc_rs::hmac::sign(&aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &self.0), payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> ProbeKey {
        ProbeKey::from_bytes(&[b; KEY_LEN]).unwrap()
    }

    #[test]
    fn a_minted_token_says_who_until_it_expires() {
        let now: Timestamp = "2026-11-20T10:00:00Z".parse().unwrap();
        let t = key(7).mint("riverside-academy", "secondary", now, SignedDuration::from_mins(5));
        assert!(t.starts_with(TOKEN_PREFIX) && !t.contains('/') && !t.contains(':'), "fits a DoH path and a Basic password: {t}");
        let claim = key(7).verify(&t, now).unwrap();
        assert_eq!((claim.school.as_str(), claim.group.as_str()), ("riverside-academy", "secondary"));
        assert_eq!(key(7).verify(&t, now + SignedDuration::from_mins(5)), Err(ProbeError::Expired));
    }

    #[test]
    fn another_key_a_changed_claim_or_a_long_life_is_refused() {
        let now: Timestamp = "2026-11-20T10:00:00Z".parse().unwrap();
        let t = key(7).mint("s", "staff", now, SignedDuration::from_mins(5));
        assert_eq!(key(8).verify(&t, now), Err(ProbeError::Signature));
        // A pupil rewriting the group in a copied token.
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let (_, tag) = t.rsplit_once('.').unwrap();
        let forged = format!("{TOKEN_PREFIX}{}.{tag}", b64.encode("v1\ns\nsecondary\n9999999999"));
        assert_eq!(key(7).verify(&forged, now), Err(ProbeError::Signature));
        // Minting caps the lifetime; a token claiming more (another tool's) is refused.
        let capped = key(7).mint("s", "g", now, SignedDuration::from_hours(24));
        assert!(key(7).verify(&capped, now + SignedDuration::from_mins(16)).is_err());
        for junk in ["", "probe.", "probe.x.y", "probe.!!!.???", "device-token", &"probe.".repeat(500)] {
            assert!(key(7).verify(junk, now).is_err(), "{junk:?}");
        }
        assert_eq!(ProbeKey::from_bytes(b"short"), Err(ProbeError::BadKey));
        assert_eq!(format!("{:?}", key(7)), "ProbeKey(…)");
    }
}

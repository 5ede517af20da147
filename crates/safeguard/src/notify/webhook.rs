//! Webhooks, in the shapes the services schools use expect. A call-out
//! entry's webhook is a URL, optionally with a preset before it and the
//! preset's settings after `#`, which is never sent:
//!
//! | webhook | what is sent |
//! |---|---|
//! | `https://…` | Haven's JSON: `alert`, `callout`, `to`, `subject`, `url`, `notice` |
//! | `slack+https://hooks.slack.com/…` | a Slack incoming-webhook message (`text`) |
//! | `teams+https://…` | a Microsoft Teams incoming-webhook card |
//! | `twilio-sms+https://SID:TOKEN@api.twilio.com/2010-04-01/Accounts/SID/Messages.json#to=+447…&from=+447…` | a Twilio text message |
//! | `twilio-voice+https://SID:TOKEN@api.twilio.com/2010-04-01/Accounts/SID/Calls.json#to=…&from=…` | a Twilio phone call that reads the message out three times |
//! | `textlocal+https://api.txtlocal.com/send/#apikey=…&numbers=447…&sender=Haven` | a Textlocal text message |
//! | `clicksend+https://USER:KEY@rest.clicksend.com/v3/sms/send#to=+447…` | a ClickSend text message |
//!
//! Every request carries `Idempotency-Key` (the same on every retry) and,
//! when `[notify] webhook_secret` is set, `X-Haven-Signature:
//! t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`. No pupil names
//! or text are ever sent.

use std::time::Duration;

use base64::Engine as _;
use haven_store::alerts::Outgoing;
use jiff::Timestamp;

/// The presets, as written before `+`.
pub const PRESETS: [&str; 6] = ["slack", "teams", "twilio-sms", "twilio-voice", "textlocal", "clicksend"];

/// One webhook request, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Where (without credentials or settings).
    pub url: String,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Every header besides the content type.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: String,
}

/// A webhook written as `preset+URL#settings`, taken apart.
struct Target<'a> {
    preset: Option<&'a str>,
    url: String,
    basic: Option<(String, String)>,
    settings: Vec<(String, String)>,
}

fn parse(target: &str) -> Result<Target<'_>, String> {
    let (preset, rest) = match target.split_once('+') {
        Some((p, r)) if PRESETS.contains(&p) => (Some(p), r),
        Some((p, _)) if !p.contains(':') && !p.contains('/') => {
            return Err(format!("webhook preset {p:?} is not one of {} (or write the URL alone for Haven's own JSON)", PRESETS.join(", ")));
        }
        _ => (None, target),
    };
    let (url, fragment) = rest.split_once('#').unwrap_or((rest, ""));
    let (scheme, after) = url.split_once("://").ok_or_else(|| format!("webhook {:?} is not an http:// or https:// URL", redact(url)))?;
    if scheme != "http" && scheme != "https" {
        return Err(format!("webhook {:?} is not an http:// or https:// URL", redact(url)));
    }
    let (authority, path) = after.split_once('/').map_or((after, ""), |(a, p)| (a, p));
    let (basic, host) = match authority.rsplit_once('@') {
        Some((user, host)) => {
            let (u, p) = user.split_once(':').unwrap_or((user, ""));
            (Some((decode(u), decode(p))), host)
        }
        None => (None, authority),
    };
    let settings = fragment
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| kv.split_once('=').map_or((decode(kv), String::new()), |(k, v)| (decode(k), decode(v))))
        .collect();
    Ok(Target { preset, url: format!("{scheme}://{host}/{path}"), basic, settings })
}

/// A URL with any credentials hidden, for messages.
fn redact(url: &str) -> String {
    match (url.split_once("://"), url.find('@')) {
        (Some((scheme, after)), Some(_)) => format!("{scheme}://…@{}", after.rsplit_once('@').map_or(after, |(_, h)| h)),
        _ => url.to_string(),
    }
}

/// Percent-decoding for settings (`%2B` for `+`).
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match (b[i], b.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok()).and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Form encoding (`application/x-www-form-urlencoded`).
fn form(pairs: &[(&str, &str)]) -> String {
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => (b as char).to_string(),
                b' ' => "+".into(),
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    pairs.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect::<Vec<_>>().join("&")
}

impl Request {
    /// The request for notice `n` to `target`, signed with `secret` at `now`.
    pub fn build(target: &str, n: &Outgoing, subject: &str, body: &str, base_url: &str, secret: Option<&str>, now: Timestamp) -> Result<Self, String> {
        let t = parse(target)?;
        let setting = |k: &str| t.settings.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
        let need = |k: &str| setting(k).ok_or_else(|| format!("webhook preset {} needs #{k}=… after its URL", t.preset.unwrap_or("")));
        let link = format!("{base_url}/alerts/{}", n.alert);
        let text = format!("{subject}. {link}");
        let (content_type, body) = match t.preset {
            None => (
                "application/json",
                serde_json::json!({
                    "alert": n.alert,
                    "callout": n.callout,
                    "to": n.name,
                    "subject": subject,
                    "text": body,
                    "url": link,
                    "notice": n.notice_id,
                })
                .to_string(),
            ),
            Some("slack") => ("application/json", serde_json::json!({ "text": format!("*{subject}*\n{link}") }).to_string()),
            Some("teams") => (
                "application/json",
                serde_json::json!({
                    "@type": "MessageCard",
                    "@context": "https://schema.org/extensions",
                    "summary": subject,
                    "themeColor": if n.callout { "D70000" } else { "0078D7" },
                    "title": subject,
                    "text": body.replace('\n', "<br>"),
                    "potentialAction": [{ "@type": "OpenUri", "name": "Open in Haven", "targets": [{ "os": "default", "uri": link }] }],
                })
                .to_string(),
            ),
            Some("twilio-sms") => ("application/x-www-form-urlencoded", form(&[("To", &need("to")?), ("From", &need("from")?), ("Body", &text)])),
            Some("twilio-voice") => {
                let say = if n.callout {
                    format!("This is Haven. A level 5 safeguarding alert, number {}, needs you now. Please open Haven and acknowledge it.", n.alert)
                } else {
                    format!("This is Haven. Safeguarding alert number {} is waiting for you.", n.alert)
                };
                let twiml = format!("<Response><Say loop=\"3\">{say}</Say></Response>");
                ("application/x-www-form-urlencoded", form(&[("To", &need("to")?), ("From", &need("from")?), ("Twiml", &twiml)]))
            }
            Some("textlocal") => (
                "application/x-www-form-urlencoded",
                form(&[
                    ("apikey", &need("apikey")?),
                    ("numbers", &need("numbers")?),
                    ("sender", &setting("sender").unwrap_or_else(|| "Haven".into())),
                    ("message", &text),
                ]),
            ),
            Some("clicksend") => (
                "application/json",
                serde_json::json!({ "messages": [{ "source": "haven", "from": setting("from"), "to": need("to")?, "body": text }] }).to_string(),
            ),
            Some(other) => return Err(format!("webhook preset {other:?} is not known")),
        };
        let mut headers = vec![("Idempotency-Key".to_string(), n.notice_id.clone()), ("X-Haven-Notice".to_string(), n.notice_id.clone())];
        if let Some((user, pass)) = &t.basic {
            headers.push(("Authorization".into(), format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}")))));
        }
        if let Some(secret) = secret {
            headers.push(("X-Haven-Signature".into(), sign(secret, now.as_second(), &body)));
        }
        Ok(Self { url: t.url, content_type, headers, body })
    }

    /// Sends it (blocking), within `deadline`; a 2xx answer is success.
    pub fn send(self, deadline: Duration) -> Result<(), String> {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let agent: ureq::Agent = ureq::Agent::config_builder().timeout_global(Some(deadline)).http_status_as_error(false).build().into();
        let mut req = agent.post(&self.url).header("content-type", self.content_type);
        for (k, v) in &self.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let answer = req.send(self.body.as_str()).map_err(|e| format!("webhook {}: {e}", redact(&self.url)))?;
        if answer.status().is_success() { Ok(()) } else { Err(format!("webhook {} answered {}", redact(&self.url), answer.status())) }
    }
}

/// `t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`: a receiver checks
/// the time is recent and the digest matches, so a replayed or forged call-out
/// is refused.
pub fn sign(secret: &str, unix: i64, body: &str) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = aws_lc_rs::hmac::sign(&key, format!("{unix}.{body}").as_bytes());
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("t={unix},v1={hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice() -> Outgoing {
        Outgoing {
            id: 7,
            alert: 42,
            name: "Head".into(),
            channel: "webhook".into(),
            target: String::new(),
            due_at: Timestamp::UNIX_EPOCH,
            attempts: 0,
            callout: true,
            notice_id: "n-1".into(),
            failure: false,
        }
    }

    #[test]
    fn presets_shape_their_bodies_and_keep_secrets_out_of_the_url() {
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let r = Request::build(
            "twilio-sms+https://AC1:tok%2Fen@api.twilio.com/2010-04-01/Accounts/AC1/Messages.json#to=%2B447700900123&from=%2B447700900000",
            &notice(),
            "URGENT",
            "b",
            "https://haven.example",
            Some("s3cret"),
            now,
        )
        .unwrap();
        assert_eq!(r.url, "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages.json");
        assert_eq!(r.body, "To=%2B447700900123&From=%2B447700900000&Body=URGENT.+https%3A%2F%2Fhaven.example%2Falerts%2F42");
        let auth = r.headers.iter().find(|(k, _)| k == "Authorization").unwrap();
        assert_eq!(auth.1, format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("AC1:tok/en")));
        let sig = &r.headers.iter().find(|(k, _)| k == "X-Haven-Signature").unwrap().1;
        assert_eq!(*sig, sign("s3cret", 1_800_000_000, &r.body));
        assert!(sig.starts_with("t=1800000000,v1=") && sig.len() == "t=1800000000,v1=".len() + 64);
        let e = Request::build("twilio-sms+https://api.twilio.com/x", &notice(), "s", "b", "", None, now).unwrap_err();
        assert!(e.contains("#to="), "{e}");
        let e = Request::build("pager+https://x.example/", &notice(), "s", "b", "", None, now).unwrap_err();
        assert!(e.contains("slack, teams"), "{e}");
        let plain = Request::build("http://127.0.0.1:9/hook", &notice(), "s", "b", "", None, now).unwrap();
        assert!(plain.headers.iter().any(|(k, v)| k == "Idempotency-Key" && v == "n-1"));
        assert!(plain.headers.iter().all(|(k, _)| k != "X-Haven-Signature"), "unsigned without a secret");
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_time_and_body() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let s = sign("Jefe", 0, "");
        assert_eq!(s.len(), "t=0,v1=".len() + 64);
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, b"Jefe");
        let tag = aws_lc_rs::hmac::sign(&key, b"what do ya want for nothing?");
        let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }
}

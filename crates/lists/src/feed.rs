//! Credentials for member feeds (the IWF's and CTIRU's lists are downloaded
//! with a key or a password): kept in a secrets file of their own, apart from
//! the config, readable by Haven's user only, and never shown.
//!
//! The file is TOML, one table per entry that a `[[list]]`'s `credentials`
//! names:
//!
//! ```toml
//! [iwf]
//! header = "Authorization: Bearer 0123abcd"
//!
//! [ctiru]
//! username = "school-123"
//! password = "…"
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::Deserialize;

use crate::ListError;

/// How one feed proves who is downloading.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// One request header (`Authorization: Bearer …`, `X-Api-Key: …`).
    Header {
        /// The header's name.
        name: String,
        /// Its value (the secret).
        value: String,
    },
    /// HTTP Basic authentication.
    Basic {
        /// The user name.
        username: String,
        /// The password (the secret).
        password: String,
    },
}

// Written by hand so that no log line, panic or `{:?}` ever shows a secret.
impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Header { name, .. } => write!(f, "Header({name}: …)"),
            Self::Basic { username, .. } => write!(f, "Basic({username}:…)"),
        }
    }
}

impl Credentials {
    /// The header to send: its name and value.
    pub fn header(&self) -> (String, String) {
        use base64::Engine as _;
        match self {
            Self::Header { name, value } => (name.clone(), value.clone()),
            Self::Basic { username, password } => {
                ("Authorization".into(), format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))))
            }
        }
    }
}

/// The entries of a secrets file, by name.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    entries: BTreeMap<String, Credentials>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    header: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

impl Secrets {
    /// Reads `path`: it must be readable by its owner only, and each entry
    /// either a `header` or a `username` and `password`. Errors name the file
    /// and the entry, never a value.
    pub fn load(path: &Path) -> Result<Self, ListError> {
        let bad = |why: String| ListError::Secrets { path: path.to_path_buf(), why };
        let meta = std::fs::metadata(path).map_err(|e| bad(format!("cannot be read ({e}); write it, owner-only (chmod 600), or fix `[lists] secrets`")))?;
        owner_only(path, &meta).map_err(bad)?;
        let text = std::fs::read_to_string(path).map_err(|e| bad(format!("cannot be read ({e})")))?;
        Self::parse(&text).map_err(bad)
    }

    /// Parses the file's text. An error says where, but never quotes the
    /// file (it holds secrets).
    pub fn parse(text: &str) -> Result<Self, String> {
        let raw: BTreeMap<String, RawEntry> = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            format!(
                "line {}: {} (each entry is a table, [name], with either header = \"Name: value\" or username and password)",
                line.unwrap_or(0),
                e.message()
            )
        })?;
        let mut entries = BTreeMap::new();
        for (name, e) in raw {
            let c = match (e.header, e.username, e.password) {
                (Some(h), None, None) => {
                    let (n, v) = h.split_once(':').ok_or_else(|| format!("[{name}] header must be \"Name: value\", e.g. \"Authorization: Bearer …\""))?;
                    let (n, v) = (n.trim(), v.trim());
                    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)) {
                        return Err(format!("[{name}] header: {n:?} is not a header name"));
                    }
                    if v.is_empty() || v.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
                        return Err(format!("[{name}] header: the value is empty or has control characters"));
                    }
                    Credentials::Header { name: n.to_string(), value: v.to_string() }
                }
                (None, Some(u), Some(p)) if !u.is_empty() && !u.contains(':') => Credentials::Basic { username: u, password: p },
                (None, Some(_), Some(_)) => return Err(format!("[{name}] username must not be empty or hold a colon")),
                _ => return Err(format!("[{name}] needs either header = \"Name: value\" or both username and password")),
            };
            entries.insert(name, c);
        }
        Ok(Self { entries })
    }

    /// The entry called `name`.
    pub fn get(&self, name: &str) -> Option<&Credentials> {
        self.entries.get(name)
    }

    /// The entries' names (never their values), for hints.
    pub fn names(&self) -> Vec<&str> {
        self.entries.keys().map(String::as_str).collect()
    }
}

/// Refuses a secrets file that anyone but its owner can read or change.
#[cfg(unix)]
fn owner_only(path: &Path, meta: &std::fs::Metadata) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "other users can read or change it (mode {mode:03o}); it holds the feeds' passwords: make it owner-only with `chmod 600 {}`",
            path.display()
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
fn owner_only(_: &Path, _: &std::fs::Metadata) -> Result<(), String> {
    Ok(())
}

/// Whether credentials may go to `url`: over HTTPS, or to this machine
/// (a test, or a local mirror); never in clear text across a network.
pub fn safe_for_credentials(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("https://") {
        return true;
    }
    let Some(rest) = lower.strip_prefix("http://") else { return false };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if host.starts_with('[') { host.split(']').next().map(|h| &h[1..]).unwrap_or("") } else { host.split(':').next().unwrap_or("") };
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_a_header_or_a_user_and_password_and_never_shown() {
        let s = Secrets::parse("[iwf]\nheader = \"Authorization: Bearer s3cret\"\n[ctiru]\nusername = \"school\"\npassword = \"pa55\"\n").unwrap();
        assert_eq!(s.names(), ["ctiru", "iwf"]);
        assert_eq!(s.get("iwf").unwrap().header(), ("Authorization".into(), "Bearer s3cret".into()));
        // RFC 7617: base64 of "school:pa55".
        assert_eq!(s.get("ctiru").unwrap().header(), ("Authorization".into(), "Basic c2Nob29sOnBhNTU=".into()));
        let shown = format!("{s:?}");
        assert!(!shown.contains("s3cret") && !shown.contains("pa55"), "{shown}");
        let e = Secrets::parse("[x]\nheader = \"Bearer s3cret\"\n").unwrap_err();
        assert!(e.contains("Name: value") && !e.contains("s3cret"), "{e}");
        let e = Secrets::parse("[x]\nusername = \"u\"\n").unwrap_err();
        assert!(e.contains("both username and password"), "{e}");
        let e = Secrets::parse("[x]\npassword = \"s3cret\" oops\n").unwrap_err();
        assert!(e.starts_with("line 2") && !e.contains("s3cret"), "{e}");
    }

    #[test]
    fn a_secrets_file_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("list-secrets.toml");
        std::fs::write(&p, "[iwf]\nheader = \"X-Key: k\"\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = Secrets::load(&p).unwrap_err().to_string();
        assert!(e.contains("chmod 600") && e.contains("640"), "{e}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(Secrets::load(&p).unwrap().get("iwf").is_some());
    }

    #[test]
    fn credentials_go_over_https_or_to_this_machine_only() {
        assert!(safe_for_credentials("https://feeds.iwf.example/list"));
        assert!(safe_for_credentials("http://127.0.0.1:8000/list") && safe_for_credentials("http://[::1]:80/x") && safe_for_credentials("http://localhost/x"));
        assert!(!safe_for_credentials("http://feeds.example/list"));
        assert!(!safe_for_credentials("http://127.0.0.1.evil.example/x"));
        assert!(!safe_for_credentials("ftp://127.0.0.1/x"));
    }
}

//! Encryption at rest for what must not be readable from a copy of the data
//! folder or a database dump: second-factor (TOTP) secrets and evidence files.
//!
//! The key is one file, `haven.key`, in a folder of its own (by default beside
//! the data folder: `haven-data` → `haven-data-keys`), so a backup of the data
//! folder, a database dump, or a PostgreSQL server run by someone else holds
//! nothing that opens them. XChaCha20-Poly1305 with a random 24-byte nonce per
//! item; each kind of item has its own associated data, so one cannot be passed
//! off as another. Items written before encryption existed (plain TOTP secrets,
//! plain evidence files) are still read, and sealed when the record is opened
//! with its key ([`Store::seal_plain_secrets`](crate::Store::seal_plain_secrets)).

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

/// The key file's name inside the key folder.
pub const KEY_FILE: &str = "haven.key";
/// What the key file starts with (the rest of the line is the key, base64).
const KEY_HEADER: &str = "haven-key-v1 ";
/// Sealed text in a database column starts with this.
const TEXT_PREFIX: &str = "enc1:";
/// A sealed file starts with this.
pub const FILE_MAGIC: &[u8] = b"HAVEN-SEALED-1\n";

/// Why an item could not be sealed or opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// The key file could not be read or made.
    #[error("the record's key {path}: {reason}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// What went wrong and the fix.
        reason: String,
    },
    /// Sealed with another key, or damaged.
    #[error("{0} was sealed with another key or is damaged: check that Haven is using the same haven.key it was written with ([data] key_dir in haven.toml)")]
    WrongKey(&'static str),
    /// No key folder is known (a PostgreSQL record opened without one).
    #[error("the record's key folder is not set; pass it with [data] key_dir in haven.toml")]
    NoKeyDir,
}

/// The default key folder for a data folder: a sibling named after it
/// (`/var/lib/haven` → `/var/lib/haven-keys`).
pub fn default_key_dir(data_dir: &Path) -> PathBuf {
    match (data_dir.parent(), data_dir.file_name()) {
        (Some(parent), Some(name)) => parent.join(format!("{}-keys", name.to_string_lossy())),
        _ => data_dir.join("keys"),
    }
}

/// Seals and opens items with the record's key.
pub struct Sealer {
    cipher: XChaCha20Poly1305,
    /// Where the key came from (`None`: made in memory, for tests).
    pub path: Option<PathBuf>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer").field("path", &self.path).finish_non_exhaustive()
    }
}

fn random<const N: usize>() -> [u8; N] {
    let mut raw = [0u8; N];
    getrandom::fill(&mut raw).expect("the operating system's random source");
    raw
}

impl Sealer {
    fn from_key(key: [u8; 32], path: Option<PathBuf>) -> Self {
        Self { cipher: XChaCha20Poly1305::new(&key.into()), path }
    }

    /// A key that lives only in memory (tests).
    pub fn random() -> Self {
        Self::from_key(random(), None)
    }

    /// Reads `dir/haven.key`, making the folder (0700) and the key (0600) the first time.
    pub fn load_or_create(dir: &Path) -> Result<Self, SealError> {
        let path = dir.join(KEY_FILE);
        let err = |reason: String| SealError::Key { path: path.clone(), reason };
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let b64 = text.trim().strip_prefix(KEY_HEADER.trim_end()).map(str::trim).ok_or_else(|| err("is not a Haven key file".into()))?;
                let raw = base64::engine::general_purpose::STANDARD.decode(b64).map_err(|_| err("is damaged (not base64)".into()))?;
                let key: [u8; 32] = raw.try_into().map_err(|_| err("is damaged (not 32 bytes)".into()))?;
                owner_only(dir, 0o700);
                owner_only(&path, 0o600);
                Ok(Self::from_key(key, Some(path)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dir).map_err(|e| err(format!("cannot create its folder: {e}")))?;
                owner_only(dir, 0o700);
                let key: [u8; 32] = random();
                let mut opts = std::fs::OpenOptions::new();
                opts.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
                let line = format!("{KEY_HEADER}{}\n", base64::engine::general_purpose::STANDARD.encode(key));
                match opts.open(&path) {
                    Ok(mut f) => {
                        f.write_all(line.as_bytes()).and_then(|()| f.sync_all()).map_err(|e| err(format!("cannot be written: {e}")))?;
                        tracing::info!(path = %path.display(), "made the record's key; back it up apart from the data folder");
                        Ok(Self::from_key(key, Some(path)))
                    }
                    // Another process made it first: use theirs.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Self::load_or_create(dir),
                    Err(e) => Err(err(format!("cannot be created: {e}"))),
                }
            }
            Err(e) => Err(err(format!("cannot be read: {e} (Haven must run as the user that owns it)"))),
        }
    }

    fn seal(&self, plain: &[u8], what: &[u8]) -> Vec<u8> {
        let nonce: [u8; 24] = random();
        let nonce = XNonce::from(nonce);
        let sealed = self.cipher.encrypt(&nonce, Payload { msg: plain, aad: what }).expect("sealing into memory does not fail");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        out
    }

    fn open(&self, sealed: &[u8], what: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < 24 {
            return None;
        }
        let (nonce, body) = sealed.split_at(24);
        let nonce = XNonce::try_from(nonce).ok()?;
        self.cipher.decrypt(&nonce, Payload { msg: body, aad: what }).ok()
    }

    /// Text for a database column (`enc1:` and base64).
    pub fn seal_text(&self, plain: &str, what: &'static str) -> String {
        format!("{TEXT_PREFIX}{}", base64::engine::general_purpose::STANDARD.encode(self.seal(plain.as_bytes(), what.as_bytes())))
    }

    /// Whether stored text is sealed (else it is from before encryption).
    pub fn is_sealed_text(stored: &str) -> bool {
        stored.starts_with(TEXT_PREFIX)
    }

    /// The plain text of a column: opened if sealed, as stored if from before encryption.
    pub fn open_text(&self, stored: &str, what: &'static str) -> Result<String, SealError> {
        let Some(b64) = stored.strip_prefix(TEXT_PREFIX) else { return Ok(stored.to_string()) };
        let raw = base64::engine::general_purpose::STANDARD.decode(b64).map_err(|_| SealError::WrongKey(what))?;
        let plain = self.open(&raw, what.as_bytes()).ok_or(SealError::WrongKey(what))?;
        String::from_utf8(plain).map_err(|_| SealError::WrongKey(what))
    }

    /// A file's bytes as kept on disk.
    pub fn seal_file(&self, plain: &[u8]) -> Vec<u8> {
        let mut out = FILE_MAGIC.to_vec();
        out.extend_from_slice(&self.seal(plain, b"haven evidence file"));
        out
    }

    /// Whether a file's bytes are sealed (else it is from before encryption).
    pub fn is_sealed_file(bytes: &[u8]) -> bool {
        bytes.starts_with(FILE_MAGIC)
    }

    /// A file's plain bytes: opened if sealed, as kept if from before encryption.
    pub fn open_file(&self, kept: &[u8]) -> Result<Vec<u8>, SealError> {
        match kept.strip_prefix(FILE_MAGIC) {
            Some(sealed) => self.open(sealed, b"haven evidence file").ok_or(SealError::WrongKey("an evidence file")),
            None => Ok(kept.to_vec()),
        }
    }
}

/// Sets `path` to `mode` (owner-only) where the system has modes; a failure is
/// logged, not fatal: the file is still usable, and the log says what to fix.
pub fn owner_only(path: &Path, mode: u32) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o7777 != mode
            && let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        {
            tracing::warn!(path = %path.display(), error = %e, "cannot make this owner-only; run Haven as the user that owns it");
        }
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
}

/// Writes `bytes` to `path` whole or not at all, owner-only (0600).
pub fn write_owner_only(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    // A name of its own, so two writers of one file never share a half-written one.
    let unique = u64::from_le_bytes(random());
    let tmp = dir.join(format!(".{}.tmp-{unique:016x}", path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(&tmp)?;
    let written = f.write_all(bytes).and_then(|()| f.sync_all());
    drop(f);
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_files_round_trip_and_plain_ones_still_read() {
        let s = Sealer::random();
        let sealed = s.seal_text("JBSWY3DPEHPK3PXP", "a TOTP secret");
        assert!(Sealer::is_sealed_text(&sealed) && !sealed.contains("JBSWY3DPEHPK3PXP"));
        assert_eq!(s.open_text(&sealed, "a TOTP secret").unwrap(), "JBSWY3DPEHPK3PXP");
        assert_ne!(sealed, s.seal_text("JBSWY3DPEHPK3PXP", "a TOTP secret"), "a fresh nonce each time");
        assert_eq!(s.open_text("JBSWY3DPEHPK3PXP", "a TOTP secret").unwrap(), "JBSWY3DPEHPK3PXP", "from before encryption");
        assert!(Sealer::random().open_text(&sealed, "a TOTP secret").is_err(), "another key");
        assert!(s.open_text(&sealed, "something else").is_err(), "another kind of item");
        let file = s.seal_file(b"the chat log");
        assert!(Sealer::is_sealed_file(&file) && !file.windows(8).any(|w| w == b"chat log"));
        assert_eq!(s.open_file(&file).unwrap(), b"the chat log");
        assert_eq!(s.open_file(b"plain").unwrap(), b"plain");
    }

    #[test]
    fn the_key_file_is_made_once_owner_only_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("data-keys");
        let a = Sealer::load_or_create(&keys).unwrap();
        let b = Sealer::load_or_create(&keys).unwrap();
        assert_eq!(b.open_text(&a.seal_text("x", "t"), "t").unwrap(), "x", "the same key next time");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&keys).unwrap().permissions().mode() & 0o777, 0o700);
            assert_eq!(std::fs::metadata(keys.join(KEY_FILE)).unwrap().permissions().mode() & 0o777, 0o600);
        }
        std::fs::write(keys.join(KEY_FILE), "nonsense").unwrap();
        assert!(Sealer::load_or_create(&keys).unwrap_err().to_string().contains("not a Haven key file"));
        assert_eq!(default_key_dir(Path::new("/var/lib/haven-data")), Path::new("/var/lib/haven-data-keys"));
    }
}

//! Tokens, keys, passwords and TOTP secrets. Tokens and keys are random and
//! long, so a SHA-256 of each is what is stored; passwords are argon2.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use base64::Engine as _;
use sha2::{Digest, Sha256};

/// A new random token: 32 bytes, URL-safe base64, with a prefix saying what it is.
pub fn token(prefix: &str) -> String {
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).expect("the operating system's random source");
    format!("{prefix}_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw))
}

/// What is stored for a token.
pub fn token_hash(token: &str) -> String {
    let d = Sha256::digest(token.as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// An argon2id hash of a password.
pub fn hash_password(password: &str) -> Result<String, String> {
    Argon2::default().hash_password(password.as_bytes()).map(|h| h.to_string()).map_err(|e| e.to_string())
}

/// Whether `password` matches a stored hash.
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// How many argon2 hashes run at once. Each takes 19 MiB and most of a core
/// for a moment; a burst of sign-ins waits its turn instead of taking
/// gigabytes.
pub fn argon2_slots() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(2, 4)
}

fn argon2_gate() -> &'static tokio::sync::Semaphore {
    static GATE: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    GATE.get_or_init(|| tokio::sync::Semaphore::new(argon2_slots()))
}

/// Runs `work` (argon2) on a blocking thread once one of the
/// [`argon2_slots`] is free; waiting costs no thread.
pub(crate) async fn argon2_bounded<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    let _slot = argon2_gate().acquire().await.expect("the argon2 gate is never closed");
    match tokio::task::spawn_blocking(work).await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// [`hash_password`] within the argon2 bound.
pub async fn hash_password_bounded(password: &str) -> Result<String, String> {
    let password = password.to_string();
    argon2_bounded(move || hash_password(&password)).await
}

/// [`verify_password`] within the argon2 bound.
pub async fn verify_password_bounded(password: &str, hash: &str) -> bool {
    let (password, hash) = (password.to_string(), hash.to_string());
    argon2_bounded(move || verify_password(&password, &hash)).await
}

/// A hash of no password anyone has, checked when an e-mail has no account
/// so the answer takes the same work.
pub(crate) fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password(&token("dummy")).unwrap_or_default())
}

/// A new TOTP secret (160 bits, base32 as authenticator apps expect).
pub fn totp_secret() -> String {
    const B32: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut raw = [0u8; 20];
    getrandom::fill(&mut raw).expect("the operating system's random source");
    let mut out = String::new();
    let (mut buf, mut bits) = (0u32, 0);
    for b in raw {
        buf = (buf << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(B32[((buf >> bits) & 31) as usize] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_burst_of_sign_ins_runs_a_few_hashes_at_a_time() {
        static NOW: AtomicUsize = AtomicUsize::new(0);
        static MOST: AtomicUsize = AtomicUsize::new(0);
        let burst: Vec<_> = (0..128)
            .map(|_| {
                tokio::spawn(argon2_bounded(|| {
                    let n = NOW.fetch_add(1, Ordering::SeqCst) + 1;
                    MOST.fetch_max(n, Ordering::SeqCst);
                    std::thread::sleep(std::time::Duration::from_millis(2));
                    NOW.fetch_sub(1, Ordering::SeqCst);
                }))
            })
            .collect();
        for b in burst {
            b.await.unwrap();
        }
        let most = MOST.load(Ordering::SeqCst);
        assert!(most <= argon2_slots() && argon2_slots() <= 4, "at most {} at once, saw {most}", argon2_slots());
        assert!(verify_password_bounded("correct horse", &hash_password_bounded("correct horse").await.unwrap()).await);
    }

    #[test]
    fn tokens_passwords_and_secrets() {
        let t = token("hvd");
        assert!(t.starts_with("hvd_") && t.len() > 40);
        assert_ne!(t, token("hvd"));
        assert_eq!(token_hash(&t).len(), 64);
        let h = hash_password("correct horse battery").unwrap();
        assert!(verify_password("correct horse battery", &h) && !verify_password("wrong", &h));
        let s = totp_secret();
        assert_eq!(s.len(), 32);
        assert!(s.bytes().all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b)));
    }
}

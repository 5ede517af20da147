//! TLS inspection: the school's certificate authority (`haven ca init`),
//! leaf certificates made on demand for each inspected host and kept for a
//! while, and the TLS settings used towards origins (which are always
//! verified: inspection never weakens what the pupil's browser would check).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The CA could not be made or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    /// Reading or writing its files failed.
    #[error("school CA in {dir}: {source}")]
    Io {
        /// The CA folder.
        dir: String,
        /// Why.
        source: std::io::Error,
    },
    /// There is no CA yet.
    #[error("no school CA in {0}: run `haven ca init` first (or set [proxy] inspect = false)")]
    Missing(String),
    /// A CA already exists and would be replaced.
    #[error("a school CA already exists in {0}; devices trust it. Pass --force to replace it (then reinstall it on every device)")]
    Exists(String),
    /// Certificate work failed.
    #[error("certificate: {0}")]
    Cert(String),
}

fn cert_err(e: impl std::fmt::Display) -> CaError {
    CaError::Cert(e.to_string())
}

/// The files of a CA folder.
pub fn ca_paths(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join("school-ca.pem"), dir.join("school-ca.key"))
}

/// Creates the school CA (ten years, ECDSA P-256) in `dir`, with the key
/// readable by the owner only, and an installation guide beside it.
pub fn init_ca(dir: &Path, name: &str, today: (i32, u8, u8), force: bool) -> Result<PathBuf, CaError> {
    let io = |source| CaError::Io { dir: dir.display().to_string(), source };
    let (cert_path, key_path) = ca_paths(dir);
    if cert_path.exists() && !force {
        return Err(CaError::Exists(dir.display().to_string()));
    }
    std::fs::create_dir_all(dir).map_err(io)?;
    let key = KeyPair::generate().map_err(cert_err)?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(cert_err)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("{name} web filter CA (Haven)"));
    dn.push(DnType::OrganizationName, name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let (y, m, d) = today;
    params.not_before = rcgen::date_time_ymd(y, m, d);
    params.not_after = rcgen::date_time_ymd(y + 10, m, d.min(28));
    let cert = params.self_signed(&key).map_err(cert_err)?;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    use std::io::Write;
    opts.open(&key_path).and_then(|mut f| f.write_all(key.serialize_pem().as_bytes())).map_err(io)?;
    std::fs::write(&cert_path, cert.pem()).map_err(io)?;
    std::fs::write(dir.join("INSTALL.html"), install_guide(name)).map_err(io)?;
    Ok(cert_path)
}

/// What every server certificate the school CA signs says: `name`, not a
/// CA, for server authentication (validity is the caller's).
fn server_params(name: &str) -> Result<CertificateParams, CaError> {
    let mut params = CertificateParams::new(vec![name.to_string()]).map_err(cert_err)?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::ExplicitNoCa;
    params.use_authority_key_identifier_extension = true;
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    Ok(params)
}

/// A server certificate for `name` signed by the school CA in `dir`, valid
/// for 397 days from `today` (browsers refuse longer): the chain (leaf,
/// then the CA) and the key, both PEM. For Haven's own DNS-over-HTTPS on
/// devices that trust the school CA.
pub fn issue_server_cert(dir: &Path, name: &str, today: (i32, u8, u8)) -> Result<(String, String), CaError> {
    let (cert_path, key_path) = ca_paths(dir);
    if !cert_path.exists() {
        return Err(CaError::Missing(dir.display().to_string()));
    }
    let io = |source| CaError::Io { dir: dir.display().to_string(), source };
    let ca_pem = std::fs::read_to_string(&cert_path).map_err(io)?;
    let ca_key = KeyPair::from_pem(&std::fs::read_to_string(&key_path).map_err(io)?).map_err(cert_err)?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key).map_err(cert_err)?;
    let key = KeyPair::generate().map_err(cert_err)?;
    let mut params = server_params(name)?;
    let (y, m, d) = today;
    let start = jiff::civil::date(i16::try_from(y).unwrap_or(2026), i8::try_from(m).unwrap_or(1), i8::try_from(d).unwrap_or(1));
    let end = start.checked_add(jiff::Span::new().days(397)).unwrap_or(start);
    params.not_before = rcgen::date_time_ymd(y, m, d);
    params.not_after = rcgen::date_time_ymd(i32::from(end.year()), end.month() as u8, end.day() as u8);
    let cert = params.signed_by(&key, &issuer).map_err(cert_err)?;
    Ok((format!("{}{}", cert.pem(), ca_pem), key.serialize_pem()))
}

/// Makes and caches leaf certificates signed by the school CA.
pub struct Inspector {
    issuer: Issuer<'static, KeyPair>,
    ca_der: CertificateDer<'static>,
    today: (i32, u8, u8),
    cache: Mutex<HashMap<String, Arc<ServerConfig>>>,
}

/// Most leaf configurations kept at once.
const CACHE: usize = 10_000;

impl Inspector {
    /// Loads the CA from `dir`.
    pub fn load(dir: &Path, today: (i32, u8, u8)) -> Result<Self, CaError> {
        let (cert_path, key_path) = ca_paths(dir);
        if !cert_path.exists() {
            return Err(CaError::Missing(dir.display().to_string()));
        }
        let io = |source| CaError::Io { dir: dir.display().to_string(), source };
        let cert_pem = std::fs::read_to_string(&cert_path).map_err(io)?;
        let key_pem = std::fs::read_to_string(&key_path).map_err(io)?;
        let key = KeyPair::from_pem(&key_pem).map_err(cert_err)?;
        let ca_der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(cert_err)?;
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key).map_err(cert_err)?;
        Ok(Self { issuer, ca_der, today, cache: Mutex::new(HashMap::new()) })
    }

    /// The TLS settings to present to a client asking for `host`.
    pub fn config_for(&self, host: &str) -> Result<Arc<ServerConfig>, CaError> {
        if let Some(c) = self.cache.lock().ok().and_then(|c| c.get(host).cloned()) {
            return Ok(c);
        }
        let key = KeyPair::generate().map_err(cert_err)?;
        let mut params = server_params(host)?;
        let (y, m, d) = self.today;
        // Browsers refuse leaves valid for more than 398 days; a week either side is plenty.
        let (py, pm) = if m == 1 { (y - 1, 12) } else { (y, m - 1) };
        params.not_before = rcgen::date_time_ymd(py, pm, d.min(28));
        params.not_after = rcgen::date_time_ymd(if m == 12 { y + 1 } else { y }, if m == 12 { 1 } else { m + 1 }, d.min(28));
        let cert = params.signed_by(&key, &self.issuer).map_err(cert_err)?;
        let chain = vec![cert.der().clone(), self.ca_der.clone()];
        let key_der = PrivateKeyDer::try_from(key.serialize_der()).map_err(cert_err)?;
        let mut config = ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(cert_err)?
            .with_no_client_auth()
            .with_single_cert(chain, key_der)
            .map_err(cert_err)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let config = Arc::new(config);
        if let Ok(mut c) = self.cache.lock() {
            if c.len() >= CACHE {
                c.clear();
            }
            c.insert(host.to_string(), config.clone());
        }
        Ok(config)
    }
}

/// TLS settings towards origins: the public roots, plus any the config adds.
pub fn origin_config(extra_roots: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, CaError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(p) = extra_roots {
        let pem = std::fs::read(p).map_err(|source| CaError::Io { dir: p.display().to_string(), source })?;
        for c in CertificateDer::pem_slice_iter(&pem) {
            roots.add(c.map_err(cert_err)?).map_err(cert_err)?;
        }
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(cert_err)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Whether `host` is on the exemption list (itself or a parent domain).
pub fn exempt(host: &str, list: &[String]) -> bool {
    list.iter().any(|e| host == e || host.strip_suffix(e.as_str()).is_some_and(|p| p.ends_with('.')))
}

/// The page that tells IT how to install the CA on the school's devices.
pub fn install_guide(name: &str) -> String {
    let name = crate::page::esc(name);
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Installing the {name} web filter certificate</title>\
<style>body{{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;line-height:1.5}}code{{background:#eee;padding:0 .2rem}}</style></head><body>\
<h1>Installing the {name} web filter certificate</h1>\
<p>Haven inspects HTTPS for school devices so it can filter whole addresses and show the block page. Devices must trust the \
school's own certificate authority, <code>school-ca.pem</code> (in this folder, and at <code>http://block.haven.invalid/ca.pem</code> \
through the proxy). Install it on <strong>school-owned devices only</strong>; never ask pupils or parents to install it on their own.</p>\
<h2>Windows (Group Policy)</h2><p>Group Policy Management → Computer Configuration → Policies → Windows Settings → Security Settings → \
Public Key Policies → <em>Trusted Root Certification Authorities</em> → Import <code>school-ca.pem</code>. Run <code>gpupdate /force</code> to test on one machine.</p>\
<h2>Chromebooks (Google Admin console)</h2><p>Devices → Networks → Certificates → Add certificate, tick <em>Chromebook</em> under \
“Certificate authority”, for the organisational units of pupils' devices.</p>\
<h2>iPad and Mac (MDM)</h2><p>Add a Certificate payload with <code>school-ca.pem</code> to the devices' profile. On iPad, managed profiles are trusted \
for TLS automatically; a manually installed profile also needs Settings → General → About → Certificate Trust Settings.</p>\
<h2>Firefox</h2><p>Firefox keeps its own store: set the enterprise policy <code>Certificates → ImportEnterpriseRoots</code> (Windows, macOS) \
or <code>Certificates → Install</code> with the file's path.</p>\
<h2>Linux</h2><p>Copy to <code>/usr/local/share/ca-certificates/school-ca.crt</code> and run <code>update-ca-certificates</code>.</p>\
<h2>What is never inspected</h2><p>Banking, health, government and certificate-pinned apps are exempt (the <code>[proxy] inspect_exempt</code> list): \
they pass through untouched and are filtered by name only.</p>\
<h2>Keep the key safe</h2><p><code>school-ca.key</code> lets anyone who holds it impersonate any website to your devices. It stays on the Haven \
server, readable only by Haven; never copy it elsewhere. If it leaks, run <code>haven ca init --force</code> and reinstall the new certificate.</p>\
</body></html>"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_init_load_and_leaves() {
        let dir = tempfile::tempdir().unwrap();
        init_ca(dir.path(), "Oak Trust", (2026, 11, 23), false).unwrap();
        assert!(init_ca(dir.path(), "Oak Trust", (2026, 11, 23), false).unwrap_err().to_string().contains("--force"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(ca_paths(dir.path()).1).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "the CA key is owner-only");
        }
        let i = Inspector::load(dir.path(), (2026, 11, 23)).unwrap();
        let a = i.config_for("www.example.com").unwrap();
        let b = i.config_for("www.example.com").unwrap();
        assert!(Arc::ptr_eq(&a, &b), "cached");
        assert!(std::fs::read_to_string(dir.path().join("INSTALL.html")).unwrap().contains("Group Policy"));
        let empty = tempfile::tempdir().unwrap();
        assert!(Inspector::load(empty.path(), (2026, 11, 23)).err().unwrap().to_string().contains("haven ca init"));
    }

    #[test]
    fn exemptions_cover_subdomains_only() {
        let list = vec!["nhs.uk".to_string()];
        assert!(exempt("nhs.uk", &list));
        assert!(exempt("www.nhs.uk", &list));
        assert!(!exempt("fakenhs.uk", &list));
    }
}

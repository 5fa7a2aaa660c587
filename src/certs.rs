//! Per-namespace certificate authorities.
//!
//! Each namespace has its own CA (an ECDSA P-256 key and a self-signed
//! certificate), created with `rcgen` on first use under
//! `$MESHSOLVE_HOME/<namespace>/` (default `~/.config/meshsolve/<namespace>/`).
//! Workers and clients make a fresh leaf certificate signed by that CA each time
//! they start; both ends of every connection verify the other's leaf against
//! the namespace CA, so a process without the CA's key cannot join.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Server name every worker certificate carries and every client checks.
pub const WORKER_NAME: &str = "meshsolve-worker";
/// Name in client certificates.
pub const CLIENT_NAME: &str = "meshsolve-client";

const CA_CERT: &str = "ca.pem";
const CA_KEY: &str = "ca.key";

/// Errors about namespaces and their certificates.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// The namespace name is not usable.
    #[error("invalid namespace `{0}`: use 1-63 letters, digits, `-`, `_` or `.`")]
    BadNamespace(String),
    /// Reading or writing the credential files failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A credential file exists but cannot be used.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong and what to do.
        message: String,
    },
    /// Certificate generation failed.
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
}

/// Checks a namespace name.
///
/// # Errors
/// [`CertError::BadNamespace`] for an empty name, one over 63 characters, or one with characters
/// other than letters, digits, `-`, `_` and `.`.
pub fn validate_namespace(ns: &str) -> Result<(), CertError> {
    let ok = !ns.is_empty()
        && ns.len() <= 63
        && ns.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !ns.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(CertError::BadNamespace(ns.to_string()))
    }
}

/// The default namespace: `MESHSOLVE_NAMESPACE`, else the login name.
pub fn default_namespace() -> String {
    if let Ok(ns) = std::env::var("MESHSOLVE_NAMESPACE") {
        if !ns.is_empty() {
            return ns;
        }
    }
    for var in ["USER", "LOGNAME"] {
        if let Ok(u) = std::env::var(var) {
            if !u.is_empty() {
                return u;
            }
        }
    }
    // No USER in the environment (cron, systemd): ask the password database
    // (getpwuid_r underneath, so other threads' look-ups cannot interfere).
    let uid = nix::unistd::getuid();
    match nix::unistd::User::from_uid(uid) {
        Ok(Some(u)) if !u.name.is_empty() => u.name,
        _ => format!("uid{uid}"),
    }
}

/// Where namespaces live: `MESHSOLVE_HOME`, else `$XDG_CONFIG_HOME/meshsolve`, else `~/.config/meshsolve`.
pub fn default_home() -> PathBuf {
    if let Some(h) = std::env::var_os("MESHSOLVE_HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(h);
    }
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(x).join("meshsolve");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".config").join("meshsolve")
}

/// A namespace's CA, loaded with its private key.
pub struct NamespaceCa {
    /// Namespace name.
    pub namespace: String,
    /// Directory holding `ca.pem` and `ca.key`.
    pub dir: PathBuf,
    /// The CA certificate.
    pub cert: CertificateDer<'static>,
    key: KeyPair,
}

/// A leaf identity: certificate chain and key for one process.
pub struct Identity {
    /// Leaf then CA.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key.
    pub key: PrivateKeyDer<'static>,
    /// The namespace CA, the only trust root.
    pub ca: CertificateDer<'static>,
}

fn ca_params(ns: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "meshsolve");
    dn.push(DnType::CommonName, format!("meshsolve namespace {ns}"));
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    p
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CertError + '_ {
    move |source| CertError::Io { path: path.to_path_buf(), source }
}

/// Writes `data` to `path` with mode `mode`, failing if it already exists.
fn write_new(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

impl NamespaceCa {
    /// Whether namespace `ns` has a CA in `home` (without creating one).
    pub fn exists(home: &Path, ns: &str) -> bool {
        home.join(ns).join(CA_KEY).exists()
    }

    /// Loads the namespace's CA from `home`, creating it on first use.
    ///
    /// # Errors
    /// [`CertError`] when the home directory cannot be created or the CA files are unreadable,
    /// malformed or have unsafe permissions.
    pub fn load_or_create(home: &Path, ns: &str) -> Result<Self, CertError> {
        validate_namespace(ns)?;
        let dir = home.join(ns);
        if !dir.join(CA_KEY).exists() {
            Self::create(&dir, ns)?;
        }
        Self::load(&dir, ns)
    }

    fn create(dir: &Path, ns: &str) -> Result<(), CertError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io_err(dir))?;
        let key = KeyPair::generate()?;
        let cert = ca_params(ns).self_signed(&key)?;
        // Write both under temporary names, then link the key into place last:
        // two processes creating the namespace at once end up sharing one CA.
        let tag = format!("{}.{}", std::process::id(), rand_suffix());
        let tmp_cert = dir.join(format!(".{CA_CERT}.{tag}"));
        let tmp_key = dir.join(format!(".{CA_KEY}.{tag}"));
        write_new(&tmp_cert, cert.pem().as_bytes(), 0o644).map_err(io_err(&tmp_cert))?;
        write_new(&tmp_key, key.serialize_pem().as_bytes(), 0o600).map_err(io_err(&tmp_key))?;
        let final_cert = dir.join(CA_CERT);
        let final_key = dir.join(CA_KEY);
        let won = fs::hard_link(&tmp_key, &final_key).is_ok();
        if won {
            fs::rename(&tmp_cert, &final_cert).map_err(io_err(&final_cert))?;
        } else {
            let _ = fs::remove_file(&tmp_cert);
            // The winner renames its certificate right after linking its key.
            for _ in 0..50 {
                if final_cert.exists() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        let _ = fs::remove_file(&tmp_key);
        Ok(())
    }

    fn load(dir: &Path, ns: &str) -> Result<Self, CertError> {
        let cert_path = dir.join(CA_CERT);
        let key_path = dir.join(CA_KEY);
        let meta = fs::metadata(&key_path).map_err(io_err(&key_path))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(CertError::Invalid {
                path: key_path,
                message: "private key is readable by other users; run `chmod 600` on it".into(),
            });
        }
        let key_pem = fs::read_to_string(&key_path).map_err(io_err(&key_path))?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| CertError::Invalid {
            path: key_path.clone(),
            message: format!("not a usable private key ({e}); restore it or delete the directory to start a new namespace CA"),
        })?;
        let cert = CertificateDer::from_pem_file(&cert_path).map_err(|e| CertError::Invalid {
            path: cert_path.clone(),
            message: format!("not a PEM certificate ({e})"),
        })?;
        Ok(NamespaceCa { namespace: ns.to_string(), dir: dir.to_path_buf(), cert, key })
    }

    /// SHA-256 fingerprint of the CA certificate (hex, first 16 bytes), as advertised over mDNS.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.cert)
    }

    /// Makes a fresh leaf identity signed by this CA.
    ///
    /// # Errors
    /// [`CertError`] when the certificate cannot be generated or signed.
    pub fn issue(&self, name: &str) -> Result<Identity, CertError> {
        let key = KeyPair::generate()?;
        let mut p = CertificateParams::new(vec![name.to_string()])?;
        p.distinguished_name.push(DnType::CommonName, name);
        p.distinguished_name.push(DnType::OrganizationalUnitName, self.namespace.clone());
        p.extended_key_usages =
            vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let issuer = Issuer::new(ca_params(&self.namespace), &self.key);
        let cert = p.signed_by(&key, &issuer)?;
        Ok(Identity {
            chain: vec![cert.der().clone(), self.cert.clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            ca: self.cert.clone(),
        })
    }

    /// The CA as one PEM bundle (certificate, then key) for `meshsolve certs export`.
    pub fn export_pem(&self) -> String {
        let cert_pem = pem_of(&self.cert);
        format!("# meshsolve namespace {}\n{}{}", self.namespace, cert_pem, self.key.serialize_pem())
    }

    /// Installs a CA bundle from [`export_pem`](Self::export_pem) as namespace `ns` under `home`.
    /// Refuses to overwrite a different existing CA unless `force`.
    ///
    /// # Errors
    /// [`CertError`] when the bundle is malformed, or a different CA already exists for `ns` and
    /// `force` is not set, or the files cannot be written.
    pub fn import_pem(home: &Path, ns: &str, bundle: &str, force: bool) -> Result<Self, CertError> {
        validate_namespace(ns)?;
        let bad = |m: &str| CertError::Invalid { path: PathBuf::from("<bundle>"), message: m.to_string() };
        let cert = CertificateDer::from_pem_slice(bundle.as_bytes())
            .map_err(|_| bad("no CERTIFICATE block; expected a file made by `meshsolve certs export`"))?;
        let key_block = bundle.find("-----BEGIN PRIVATE KEY-----").map(|i| &bundle[i..]).unwrap_or("");
        let key = KeyPair::from_pem(key_block)
            .map_err(|_| bad("no PRIVATE KEY block; expected a file made by `meshsolve certs export`"))?;
        let dir = home.join(ns);
        if dir.join(CA_KEY).exists() {
            let existing = Self::load(&dir, ns)?;
            if existing.cert == cert {
                return Ok(existing);
            }
            if !force {
                return Err(CertError::Invalid {
                    path: dir,
                    message: "this namespace already has a different CA; pass --force to replace it (workers and clients using the old one will no longer connect)".into(),
                });
            }
            let _ = fs::remove_file(dir.join(CA_KEY));
            let _ = fs::remove_file(dir.join(CA_CERT));
        }
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).map_err(io_err(&dir))?;
        let cert_path = dir.join(CA_CERT);
        let key_path = dir.join(CA_KEY);
        write_new(&cert_path, pem_of(&cert).as_bytes(), 0o644).map_err(io_err(&cert_path))?;
        write_new(&key_path, key.serialize_pem().as_bytes(), 0o600).map_err(io_err(&key_path))?;
        Self::load(&dir, ns)
    }
}

/// Fingerprint of any certificate (hex SHA-256, first 16 bytes).
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, cert.as_ref());
    d.as_ref()[..16].iter().map(|b| format!("{b:02x}")).collect()
}

fn pem_of(cert: &CertificateDer<'_>) -> String {
    pem::encode_config(
        &pem::Pem::new("CERTIFICATE", cert.as_ref().to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

fn rand_suffix() -> u64 {
    let mut b = [0u8; 8];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    u64::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_load_issue_export_import() {
        let home = tempfile::tempdir().unwrap();
        let ca = NamespaceCa::load_or_create(home.path(), "alice").unwrap();
        let again = NamespaceCa::load_or_create(home.path(), "alice").unwrap();
        assert_eq!(ca.cert, again.cert);
        let mode = fs::metadata(home.path().join("alice/ca.key")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let id = ca.issue(WORKER_NAME).unwrap();
        assert_eq!(id.chain.len(), 2);
        let other = tempfile::tempdir().unwrap();
        let imported = NamespaceCa::import_pem(other.path(), "alice", &ca.export_pem(), false).unwrap();
        assert_eq!(imported.fingerprint(), ca.fingerprint());
        assert!(validate_namespace("bad/name").is_err());
    }
}

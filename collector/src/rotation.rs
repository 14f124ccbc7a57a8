//! CA rotation with an overlap. The data folder's `ca.pem` is the trusted
//! bundle: the signing CA first (its key is `ca-key.pem`), then, while a
//! rotation overlaps, the previous CA.
//!
//! 1. `ca rotate` makes a new CA. New agent and operator certificates are
//!    signed by it; both CAs are trusted; agents receive the two-CA bundle
//!    with every enrollment and renewal. The server keeps its certificate
//!    from the previous CA, which every agent still trusts.
//! 2. Agents renew at two thirds of their certificate's life, so within
//!    that time every live agent holds a new-CA certificate and the bundle
//!    (`ca status` counts those that do not yet).
//! 3. `ca finish` gives the server a certificate from the new CA and drops
//!    the previous CA from the bundle.
//!
//! After each step the collector is sent SIGHUP. Files are replaced by
//! rename, the key before the bundle: an interruption leaves a key that
//! does not match the bundle, which `serve` reports instead of signing
//! with the wrong CA.

use crate::config::DataDir;
use crate::pki::{Authority, fingerprint, pem_certificates};
use anyhow::{Context, Result};
use std::io::Write;
use std::path::Path;

/// One CA of the bundle, for `ca status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CaInfo {
    /// The certificate's subject common name.
    pub name: String,
    /// [`fingerprint`].
    pub fingerprint: String,
    /// Expiry, Unix seconds.
    pub not_after: i64,
    /// The first of the bundle: the CA that signs.
    pub signing: bool,
}

/// Reads the CA (bundle and key) from the data folder.
pub fn load_authority(dir: &DataDir) -> Result<Authority> {
    Authority::load(
        &std::fs::read_to_string(dir.ca_cert())
            .with_context(|| format!("cannot read {}", dir.ca_cert().display()))?,
        &std::fs::read_to_string(dir.ca_key())
            .with_context(|| format!("cannot read {}", dir.ca_key().display()))?,
    )
}

/// The CAs of the bundle, the signing one first.
pub fn bundle(dir: &DataDir) -> Result<Vec<CaInfo>> {
    use x509_parser::prelude::*;
    let text = std::fs::read_to_string(dir.ca_cert())
        .with_context(|| format!("cannot read {}", dir.ca_cert().display()))?;
    let mut out = Vec::new();
    for (i, (_, der)) in pem_certificates(&text)?.iter().enumerate() {
        let (_, cert) = X509Certificate::from_der(der).context("cannot parse a CA certificate")?;
        let name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|n| n.as_str().ok())
            .unwrap_or_default()
            .to_string();
        out.push(CaInfo {
            name,
            fingerprint: fingerprint(der),
            not_after: cert.validity().not_after.timestamp(),
            signing: i == 0,
        });
    }
    Ok(out)
}

/// Replaces `path` with `contents` by rename, synced.
fn replace(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("pem.new");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    f.write_all(contents)
        .and_then(|_| f.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))?;
    if let Some(parent) = path.parent() {
        std::fs::File::open(parent).and_then(|d| d.sync_all()).ok();
    }
    Ok(())
}

/// The common name of the server certificate: the name it was made for.
fn server_name(dir: &DataDir) -> Result<String> {
    use x509_parser::prelude::*;
    let text = std::fs::read_to_string(dir.server_cert())
        .with_context(|| format!("cannot read {}", dir.server_cert().display()))?;
    let certs = pem_certificates(&text)?;
    let (_, cert) =
        X509Certificate::from_der(&certs[0].1).context("cannot parse the server certificate")?;
    cert.subject()
        .iter_common_name()
        .next()
        .and_then(|n| n.as_str().ok())
        .map(str::to_string)
        .context("the server certificate has no common name")
}

/// Writes the first operator's identity from `ca`, trusting `bundle`.
fn renew_operator(dir: &DataDir, ca: &Authority, bundle: &str) -> Result<()> {
    let op = ca.operator_cert("admin", 365)?;
    let opdir = dir.operator_dir();
    replace(&opdir.join("key.pem"), op.key_pem.as_bytes(), 0o600)?;
    replace(&opdir.join("cert.pem"), op.cert_pem.as_bytes(), 0o644)?;
    replace(&opdir.join("ca.pem"), bundle.as_bytes(), 0o644)
}

/// Step 1: a new signing CA, both trusted. The new CA's fingerprint.
pub fn rotate(dir: &DataDir) -> Result<String> {
    let current = load_authority(dir)?;
    let certs = pem_certificates(&current.cert_pem)?;
    anyhow::ensure!(
        certs.len() == 1,
        "a rotation is already in progress ({} trusts {} CAs); run `muster-collector ca finish` first",
        dir.ca_cert().display(),
        certs.len()
    );
    let (new, key) = Authority::generate(&server_name(dir)?)?;
    let bundle = format!("{}{}", new.cert_pem, certs[0].0);
    replace(&dir.ca_key(), key.as_bytes(), 0o600)?;
    replace(&dir.ca_cert(), bundle.as_bytes(), 0o644)?;
    let new = load_authority(dir)?;
    renew_operator(dir, &new, &bundle)?;
    Ok(new.fingerprint)
}

/// Step 3: the server certificate from the new CA, and the previous CA no
/// longer trusted.
pub fn finish(dir: &DataDir) -> Result<()> {
    let ca = load_authority(dir)?;
    let certs = pem_certificates(&ca.cert_pem)?;
    anyhow::ensure!(
        certs.len() > 1,
        "no rotation is in progress ({} trusts one CA); start one with `muster-collector ca rotate`",
        dir.ca_cert().display()
    );
    let only = certs[0].0.clone();
    let server = ca.server_cert(&server_name(dir)?)?;
    replace(&dir.server_key(), server.key_pem.as_bytes(), 0o600)?;
    replace(
        &dir.server_cert(),
        format!("{}{}", server.cert_pem, only).as_bytes(),
        0o644,
    )?;
    replace(&dir.ca_cert(), only.as_bytes(), 0o644)?;
    let opdir = dir.operator_dir();
    replace(&opdir.join("ca.pem"), only.as_bytes(), 0o644)
}

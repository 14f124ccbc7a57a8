//! Talking to the collector: enrollment and check-in.

use crate::state::{AgentConfig, Progress, Report, StateDir, write_atomic};
use anyhow::{Context, Result, bail};
use muster_catalog::HostFacts;
use muster_proto::channel::connect;
use muster_proto::v1::{self, agent_client::AgentClient, enrollment_client::EnrollmentClient};
use muster_proto::{detection_to_wire, facts_to_wire, section_to_wire};
use tonic::transport::Channel;

/// Enrolls this host: key generated here, CSR and token sent, certificate
/// stored. Nothing is written unless the collector accepted.
pub async fn enroll(
    dir: &StateDir,
    url: &str,
    token: &str,
    ca_pem: &str,
    facts: HostFacts,
) -> Result<String> {
    if dir.cert().exists() {
        bail!(
            "{} already holds an enrolled agent ({} exists); use another --state-dir or remove it first",
            dir.0.display(),
            dir.cert().display()
        );
    }
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let csr = rcgen::CertificateParams::new(Vec::<String>::new())?
        .serialize_request(&key)?
        .pem()?;
    let channel = connect(url, ca_pem, None).await?;
    let resp = EnrollmentClient::new(channel)
        .enroll(v1::EnrollRequest {
            token: token.trim().to_string(),
            csr_pem: csr,
            facts: Some(facts_to_wire(&facts)),
        })
        .await
        .map_err(|s| {
            anyhow::anyhow!(
                "the collector at {url} refused the enrollment: {}",
                s.message()
            )
        })?
        .into_inner();
    {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        // Elsewhere (Windows) the folder inherits the ACL the installer set
        // on its parent: SYSTEM and Administrators only.
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(&dir.0)
            .with_context(|| format!("cannot create {}", dir.0.display()))?;
    }
    write_atomic(&dir.key(), key.serialize_pem().as_bytes(), 0o600)?;
    write_atomic(&dir.cert(), resp.certificate_pem.as_bytes(), 0o644)?;
    // The collector's bundle came over a channel checked against `ca_pem`;
    // during a CA rotation it holds both CAs.
    let bundle = if resp.ca_pem.trim().is_empty() {
        ca_pem
    } else {
        &resp.ca_pem
    };
    write_atomic(&dir.ca(), bundle.as_bytes(), 0o644)?;
    let cfg = AgentConfig {
        collector: url.to_string(),
        agent_id: resp.agent_id.clone(),
        fallback: Vec::new(),
    };
    write_atomic(&dir.config(), toml::to_string(&cfg)?.as_bytes(), 0o644)?;
    Ok(resp.agent_id)
}

/// Connects with this agent's identity.
pub async fn connect_agent(dir: &StateDir, url: &str) -> Result<AgentClient<Channel>> {
    dir.recover_identity()?;
    let read = |p: std::path::PathBuf| {
        std::fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))
    };
    let channel = connect(
        url,
        &read(dir.ca())?,
        Some((read(dir.cert())?, read(dir.key())?)),
    )
    .await?;
    Ok(AgentClient::new(channel).max_encoding_message_size(64 * 1024 * 1024))
}

/// The check-in for `r`, sending in full every section whose digest
/// differs from the last acknowledged one (or every section when `full`).
fn request(r: &Report, acked: &Progress, full: bool) -> v1::CheckInRequest {
    let mut req = v1::CheckInRequest {
        sequence: r.sequence,
        facts: Some(facts_to_wire(&r.facts)),
        catalog_version: r.catalog_version.clone(),
        scanned_at: r.scanned_at,
        detections: r.detections.iter().map(detection_to_wire).collect(),
        ..Default::default()
    };
    for (name, section) in &r.inventory.sections {
        let digest = section.digest();
        if full || acked.acked_digests.get(name) != Some(&digest) {
            req.sections.push(section_to_wire(name, section));
        }
        req.digests.push(v1::SectionDigest {
            name: name.clone(),
            digest,
        });
    }
    req
}

/// The collector refused this host because an operator revoked it: the
/// collector's message. Retrying soon will not help.
#[derive(Debug, thiserror::Error)]
#[error("this host was revoked: {0}")]
pub struct Revoked(pub String);

impl Revoked {
    /// The refusal in `s`, if it is one.
    fn from_status(s: &tonic::Status) -> Option<Revoked> {
        (s.code() == tonic::Code::PermissionDenied && s.message().contains("revoked"))
            .then(|| Revoked(s.message().to_string()))
    }
}

/// The collector is over its check-in rate and asked this agent to come
/// back in `seconds`; the report stays in the spool.
#[derive(Debug, thiserror::Error)]
#[error("the collector at {url} is busy and asked to try again in {seconds} s")]
pub struct Busy {
    /// The collector's address.
    pub url: String,
    /// The wait it asked for.
    pub seconds: u32,
}

/// Sends one report; when the collector lacks a base, sends it again in
/// full. Returns the number of sections sent and the next interval.
pub async fn send(
    client: &mut AgentClient<Channel>,
    url: &str,
    r: &Report,
    progress: &mut Progress,
) -> Result<usize> {
    let mut full = false;
    for _ in 0..2 {
        let req = request(r, progress, full);
        let sent = req.sections.len();
        let resp = client
            .check_in(req)
            .await
            .map_err(|s| {
                if let Some(r) = Revoked::from_status(&s) {
                    anyhow::Error::new(r)
                } else if let Some(seconds) = muster_proto::busy::retry_after(&s) {
                    anyhow::Error::new(Busy {
                        url: url.to_string(),
                        seconds,
                    })
                } else {
                    anyhow::anyhow!("check-in to {url} failed: {} ({:?})", s.message(), s.code())
                }
            })?
            .into_inner();
        if resp.acknowledged_sequence == r.sequence {
            progress.acked_sequence = r.sequence;
            progress.acked_digests = r.inventory.digests();
            if resp.next_interval_seconds > 0 {
                progress.interval_seconds = u64::from(resp.next_interval_seconds);
            }
            return Ok(sent);
        }
        if resp.missing_sections.is_empty() {
            bail!(
                "the collector at {url} did not acknowledge report {}",
                r.sequence
            );
        }
        tracing::info!(missing = ?resp.missing_sections, "collector lacks a base; sending the full inventory");
        full = true;
    }
    bail!(
        "the collector at {url} kept asking for sections of report {}",
        r.sequence
    )
}

/// Checks the agent's identity as stored: the certificate parses, is valid
/// now, was issued by the CA's subject, and belongs to the key. Its expiry
/// (RFC 3339 and days left) when it does; else what is wrong.
pub fn check_identity(
    cert_pem: &[u8],
    key_pem: &[u8],
    ca_pem: &[u8],
    now: i64,
) -> Result<String, String> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let der = |pem: &[u8], what: &str| -> Result<Vec<u8>, String> {
        rustls_pemfile::certs(&mut &pem[..])
            .next()
            .ok_or_else(|| format!("{what} holds no PEM certificate"))?
            .map(|c| c.to_vec())
            .map_err(|e| format!("{what} is not PEM: {e}"))
    };
    let cert_der = der(cert_pem, "the agent's certificate")?;
    // The bundle holds one CA, or two while the collector's CA is rotated.
    let cas: Vec<Vec<u8>> = rustls_pemfile::certs(&mut &ca_pem[..])
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("the collector's CA is not PEM: {e}"))?;
    if cas.is_empty() {
        return Err("the collector's CA holds no PEM certificate".into());
    }
    let (_, cert) = X509Certificate::from_der(&cert_der)
        .map_err(|e| format!("the agent's certificate does not parse: {e}"))?;
    let mut subjects = Vec::new();
    for ca_der in &cas {
        let (_, ca) = X509Certificate::from_der(ca_der)
            .map_err(|e| format!("the collector's CA does not parse: {e}"))?;
        subjects.push(ca.subject().to_string());
    }
    let key = std::str::from_utf8(key_pem)
        .ok()
        .and_then(|k| rcgen::KeyPair::from_pem(k).ok())
        .ok_or("the agent's key is not a PEM private key")?;
    if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
        return Err("the agent's key does not belong to its certificate".into());
    }
    if !subjects.contains(&cert.issuer().to_string()) {
        return Err(format!(
            "the agent's certificate was issued by {}, not by the collector's CA {}",
            cert.issuer(),
            subjects.join(" or ")
        ));
    }
    let (from, until) = (
        cert.validity().not_before.timestamp(),
        cert.validity().not_after.timestamp(),
    );
    let date = rfc3339;
    if now < from {
        return Err(format!(
            "the agent's certificate is not valid before {} (is the clock right?)",
            date(from)
        ));
    }
    if now > until {
        return Err(format!(
            "the agent's certificate expired on {}; enroll this host again",
            date(until)
        ));
    }
    Ok(format!("{} ({} days)", date(until), (until - now) / 86400))
}

/// When a certificate valid from `not_before` to `not_after` is renewed:
/// once two thirds of its life have passed.
pub fn renewal_due(not_before: i64, not_after: i64) -> i64 {
    not_before + (not_after - not_before) * 2 / 3
}

/// The validity window (Unix seconds) of the agent's certificate.
pub fn validity(dir: &StateDir) -> Result<(i64, i64)> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let pem = std::fs::read(dir.cert())
        .with_context(|| format!("cannot read {}", dir.cert().display()))?;
    let der = rustls_pemfile::certs(&mut &pem[..])
        .next()
        .context("the agent's certificate holds no PEM certificate")??;
    let (_, cert) = X509Certificate::from_der(&der)
        .map_err(|e| anyhow::anyhow!("the agent's certificate does not parse: {e}"))?;
    let v = cert.validity();
    Ok((v.not_before.timestamp(), v.not_after.timestamp()))
}

/// Renews the agent's certificate with a new key made here: the collector
/// signs it over the current (still valid) identity, and the new pair
/// replaces the old one only once both are on disk. The new expiry.
pub async fn renew(dir: &StateDir, cfg: &AgentConfig) -> Result<i64> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let csr = rcgen::CertificateParams::new(Vec::<String>::new())?
        .serialize_request(&key)?
        .pem()?;
    let mut client = connect_agent(dir, &cfg.collector).await?;
    let resp = client
        .renew_certificate(v1::RenewCertificateRequest { csr_pem: csr })
        .await
        .map_err(|s| match Revoked::from_status(&s) {
            Some(r) => anyhow::Error::new(r),
            None => anyhow::anyhow!(
                "the collector at {} did not renew the certificate: {}",
                cfg.collector,
                s.message()
            ),
        })?
        .into_inner();
    // The collector's CA bundle comes with the certificate: during a CA
    // rotation it adds the new CA, which is how this agent learns to trust
    // the server certificate the collector will switch to.
    let ca = if resp.ca_pem.trim().is_empty() {
        std::fs::read(dir.ca())?
    } else {
        resp.ca_pem.clone().into_bytes()
    };
    check_identity(
        resp.certificate_pem.as_bytes(),
        key.serialize_pem().as_bytes(),
        &ca,
        time::OffsetDateTime::now_utc().unix_timestamp(),
    )
    .map_err(|e| anyhow::anyhow!("the renewed certificate is not usable: {e}"))?;
    // The bundle first: it trusts what the current certificate needs too.
    write_atomic(&dir.ca(), &ca, 0o644)?;
    dir.install_identity(&key.serialize_pem(), &resp.certificate_pem)?;
    Ok(validity(dir)?.1)
}

/// Unix seconds as RFC 3339 (UTC), or the number when out of range.
pub fn rfc3339(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| t.to_string())
}

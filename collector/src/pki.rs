//! The collector's certificate authority: the CA itself, the server and
//! operator certificates, agent certificates signed from CSRs, and reading
//! the identity (role and id) back out of a peer's certificate.

use anyhow::{Context, Result, bail};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use std::fmt;
use std::net::IpAddr;
use time::{Duration, OffsetDateTime};

/// Who a certificate speaks for; carried as a URI SAN `urn:muster:<role>:<id>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// An endpoint agent; its id is the host id.
    Agent,
    /// A person or tool with read access to the fleet.
    Operator,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::Operator => "operator",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The identity a verified client certificate names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Agent or operator.
    pub role: Role,
    /// The agent id, or the operator's name.
    pub id: String,
    /// Hex serial of the certificate.
    pub serial: String,
}

/// The URI SAN that names an identity.
pub fn identity_uri(role: Role, id: &str) -> String {
    format!("urn:muster:{}:{id}", role.as_str())
}

/// What a client certificate names, with its validity window: read once
/// per connection ([`certified`]), checked at every call ([`Certified::at`]).
#[derive(Debug, Clone)]
pub struct Certified {
    peer: Peer,
    not_before: x509_parser::time::ASN1Time,
    not_after: x509_parser::time::ASN1Time,
}

impl Certified {
    /// The identity, when the certificate is valid at `now`.
    pub fn at(&self, now: OffsetDateTime) -> Result<Peer> {
        // The handshake checked the window, but a resumed TLS session (or
        // a connection kept open) carries the certificate of its first
        // handshake and may outlive it.
        if now > self.not_after.to_datetime() {
            bail!(
                "the client certificate expired at {}; renew it or enroll again",
                self.not_after
            );
        }
        if now < self.not_before.to_datetime() {
            bail!(
                "the client certificate is not valid before {}; check this host's clock",
                self.not_before
            );
        }
        Ok(self.peer.clone())
    }
}

/// Parses a client certificate (DER), which the TLS layer has already
/// verified against the CA, for the Muster identity in its URI SAN, its
/// serial and its validity window.
pub fn certified(der: &[u8]) -> Result<Certified> {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(der).context("unparsable client certificate")?;
    let validity = cert.validity();
    let serial = cert.tbs_certificate.raw_serial_as_string().replace(':', "");
    let san = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .context("client certificate has no subject alternative name")?;
    for name in &san.value.general_names {
        if let GeneralName::URI(uri) = name
            && let Some(rest) = uri.strip_prefix("urn:muster:")
            && let Some((role, id)) = rest.split_once(':')
        {
            let role = match role {
                "agent" => Role::Agent,
                "operator" => Role::Operator,
                _ => continue,
            };
            if id.is_empty() {
                continue;
            }
            return Ok(Certified {
                peer: Peer {
                    role,
                    id: id.to_string(),
                    serial,
                },
                not_before: validity.not_before,
                not_after: validity.not_after,
            });
        }
    }
    bail!("client certificate names no Muster identity")
}

/// The CA, loaded from its PEM files, ready to sign.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    /// The trusted CA bundle, PEM: the signing CA first, then, while a
    /// rotation overlaps, the previous one. Handed to agents.
    pub cert_pem: String,
    /// The signing CA's fingerprint ([`fingerprint`]).
    pub fingerprint: String,
}

/// A CA certificate's fingerprint: the first 16 bytes of the SHA-256 of
/// its DER, in hex. Recorded with each host's certificate, so that a CA
/// rotation knows which hosts still hold one of the previous CA.
pub fn fingerprint(der: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(der)[..16])
}

/// The PEM blocks of a certificate bundle, in order, each with its DER.
pub fn pem_certificates(pem: &str) -> Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut rest = pem;
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    while let Some(start) = rest.find(BEGIN) {
        let end = rest[start..]
            .find(END)
            .map(|e| start + e + END.len())
            .context("a certificate in the bundle has no END line")?;
        let block = format!("{}\n", &rest[start..end]);
        let der = rustls_pemfile::certs(&mut block.as_bytes())
            .next()
            .context("empty certificate block")?
            .context("a certificate in the bundle is not valid PEM")?;
        out.push((block, der.to_vec()));
        rest = &rest[end..];
    }
    anyhow::ensure!(!out.is_empty(), "the bundle holds no certificate");
    Ok(out)
}

/// A certificate and its private key, both PEM.
pub struct Issued {
    /// Certificate, PEM.
    pub cert_pem: String,
    /// Private key, PEM (empty when the key stays with the requester).
    pub key_pem: String,
    /// Hex serial.
    pub serial: String,
    /// The fingerprint of the CA that signed it.
    pub ca: String,
}

fn random_serial() -> (SerialNumber, String) {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f; // positive
    bytes[0] |= 0x01; // no leading zero byte to strip
    (SerialNumber::from_slice(&bytes), hex::encode(bytes))
}

fn leaf_params(cn: &str, days: i64) -> (CertificateParams, String) {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Muster");
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::minutes(5);
    params.not_after = now + Duration::days(days);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    let (serial, hex) = random_serial();
    params.serial_number = Some(serial);
    (params, hex)
}

impl Authority {
    /// Makes a new ECDSA P-256 CA; returns it and its private key PEM.
    pub fn generate(name: &str) -> Result<(Authority, String)> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "Muster");
        dn.push(DnType::CommonName, format!("Muster CA {name}"));
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::minutes(5);
        params.not_after = now + Duration::days(3650);
        params.serial_number = Some(random_serial().0);
        let cert = params.self_signed(&key)?;
        let key_pem = key.serialize_pem();
        let issuer = Issuer::new(params, key);
        Ok((
            Authority {
                issuer,
                fingerprint: fingerprint(cert.der()),
                cert_pem: cert.pem(),
            },
            key_pem,
        ))
    }

    /// Loads the CA from its bundle and key PEM: the first certificate of
    /// the bundle signs, and must be the key's.
    pub fn load(cert_pem: &str, key_pem: &str) -> Result<Authority> {
        use x509_parser::prelude::*;
        let key = KeyPair::from_pem(key_pem).context("cannot read the CA key")?;
        let certs = pem_certificates(cert_pem).context("cannot read the CA bundle")?;
        let (first_pem, first_der) = &certs[0];
        let (_, parsed) =
            X509Certificate::from_der(first_der).context("cannot parse the CA certificate")?;
        anyhow::ensure!(
            *parsed.tbs_certificate.subject_pki.subject_public_key.data == *key.public_key_raw(),
            "the CA key does not belong to the first certificate of the CA bundle \
             (an interrupted `muster-collector ca rotate`?)"
        );
        let issuer =
            Issuer::from_ca_cert_pem(first_pem, key).context("cannot read the CA certificate")?;
        Ok(Authority {
            issuer,
            fingerprint: fingerprint(first_der),
            cert_pem: cert_pem.to_string(),
        })
    }

    /// The collector's TLS server certificate for `name`, plus localhost and 127.0.0.1.
    pub fn server_cert(&self, name: &str) -> Result<Issued> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let (mut params, serial) = leaf_params(name, 397);
        let mut sans = Vec::new();
        for n in [name, "localhost", "127.0.0.1"] {
            let san = match n.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(n.try_into().with_context(|| {
                    format!("{n:?} is not a valid DNS name for the server certificate")
                })?),
            };
            if !sans.contains(&san) {
                sans.push(san);
            }
        }
        params.subject_alt_names = sans;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            serial,
            ca: self.fingerprint.clone(),
        })
    }

    /// An operator client certificate with a key generated here.
    pub fn operator_cert(&self, name: &str, days: i64) -> Result<Issued> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let (params, serial) = client_params(Role::Operator, name, days)?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            serial,
            ca: self.fingerprint.clone(),
        })
    }

    /// Signs an agent's CSR. Only the CSR's public key is used: subject,
    /// names, usages, serial and validity are set here, whatever it asked for.
    pub fn sign_agent_csr(&self, csr_pem: &str, agent_id: &str, days: i64) -> Result<Issued> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem).map_err(|e| {
            anyhow::anyhow!("the certificate request is not a valid PKCS#10 CSR: {e}")
        })?;
        let (params, serial) = client_params(Role::Agent, agent_id, days)?;
        let cert = params.signed_by(&csr.public_key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: String::new(),
            serial,
            ca: self.fingerprint.clone(),
        })
    }

    /// Client certificate parameters for any validity window; tests use this
    /// to make expired certificates.
    pub fn client_cert_between(
        &self,
        role: Role,
        id: &str,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<Issued> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let (mut params, serial) = client_params(role, id, 1)?;
        params.not_before = not_before;
        params.not_after = not_after;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            serial,
            ca: self.fingerprint.clone(),
        })
    }
}

fn client_params(role: Role, id: &str, days: i64) -> Result<(CertificateParams, String)> {
    let (mut params, serial) = leaf_params(&format!("{role} {id}"), days);
    params.subject_alt_names = vec![SanType::URI(identity_uri(role, id).try_into()?)];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    Ok((params, serial))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The identity a certificate names now.
    fn peer_from_der(der: &[u8]) -> Result<Peer> {
        certified(der)?.at(OffsetDateTime::now_utc())
    }

    #[test]
    fn agent_identity_comes_from_the_collector_not_the_csr() {
        let (ca, _) = Authority::generate("test").unwrap();
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        // The CSR asks to be an operator; the signed certificate must not be.
        let mut asked = CertificateParams::new(vec![]).unwrap();
        asked.subject_alt_names = vec![SanType::URI(
            identity_uri(Role::Operator, "root").try_into().unwrap(),
        )];
        let csr = asked.serialize_request(&key).unwrap().pem().unwrap();
        let issued = ca.sign_agent_csr(&csr, "host-1", 30).unwrap();
        let der = rustls_pemfile::certs(&mut issued.cert_pem.as_bytes())
            .next()
            .unwrap()
            .unwrap();
        let peer = peer_from_der(&der).unwrap();
        assert_eq!(peer.role, Role::Agent);
        assert_eq!(peer.id, "host-1");
        assert_eq!(peer.serial, issued.serial);
    }

    #[test]
    fn a_bundle_signs_with_its_first_ca_and_a_foreign_key_is_refused() {
        let (old, old_key) = Authority::generate("old").unwrap();
        let (new, new_key) = Authority::generate("new").unwrap();
        let bundle = format!("{}{}", new.cert_pem, old.cert_pem);
        let ca = Authority::load(&bundle, &new_key).unwrap();
        assert_eq!(ca.fingerprint, new.fingerprint);
        assert_eq!(pem_certificates(&ca.cert_pem).unwrap().len(), 2);
        let e = Authority::load(&bundle, &old_key).err().unwrap();
        assert!(e.to_string().contains("does not belong"), "{e}");
        assert!(pem_certificates("no pem here").is_err());
    }

    #[test]
    fn a_certificate_outside_its_validity_window_names_no_peer() {
        let (ca, _) = Authority::generate("test").unwrap();
        let now = OffsetDateTime::now_utc();
        let der = |issued: Issued| {
            rustls_pemfile::certs(&mut issued.cert_pem.as_bytes())
                .next()
                .unwrap()
                .unwrap()
        };
        let expired = ca
            .client_cert_between(
                Role::Agent,
                "h",
                now - Duration::days(30),
                now - Duration::days(1),
            )
            .unwrap();
        let e = peer_from_der(&der(expired)).unwrap_err();
        assert!(e.to_string().contains("expired"), "{e}");
        let future = ca
            .client_cert_between(
                Role::Agent,
                "h",
                now + Duration::days(1),
                now + Duration::days(30),
            )
            .unwrap();
        let e = peer_from_der(&der(future)).unwrap_err();
        assert!(e.to_string().contains("not valid before"), "{e}");
        // Read once for a connection, checked at each call: valid now, not
        // once the connection has outlived the certificate.
        let day = ca
            .client_cert_between(
                Role::Agent,
                "h",
                now - Duration::days(1),
                now + Duration::days(1),
            )
            .unwrap();
        let read = certified(&der(day)).unwrap();
        assert_eq!(read.at(now).unwrap().id, "h");
        let e = read.at(now + Duration::days(2)).unwrap_err();
        assert!(e.to_string().contains("expired"), "{e}");
    }

    #[test]
    fn garbage_csr_is_refused_with_a_clear_error() {
        let (ca, _) = Authority::generate("test").unwrap();
        let e = ca.sign_agent_csr("not a csr", "h", 1).err().unwrap();
        assert!(e.to_string().contains("CSR"), "{e}");
    }
}

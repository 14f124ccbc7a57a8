//! TLS 1.3 session tickets that outlive the collector process.
//!
//! An agent's check-in resumes its TLS session when it can: no certificate
//! chains on the wire and no signatures to make or check. The session is
//! kept by the agent, sealed in a ticket only the collector can open
//! (AES-256-GCM under a key in the data folder), so the collector holds no
//! state per agent, and a restarted collector opens the tickets of the
//! fleet that reconnects to it: a whole fleet returning after a restart or
//! an upgrade resumes instead of doing 100 000 full handshakes.
//!
//! The key file (`ticket-keys`, mode 0600) holds the current key and the
//! one before it. A new key is made every [`ROTATE_AFTER`]; tickets are
//! made with the current key and opened with either, and none is accepted
//! once older than [`LIFETIME`]. A missing or unreadable file is replaced
//! by new keys: the tickets out there stop working and their agents do a
//! full handshake, nothing else is lost.

use anyhow::{Context, Result};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use std::path::{Path, PathBuf};
use std::sync::RwLock;

/// How long a key makes tickets before the next one takes over.
pub const ROTATE_AFTER: u64 = 12 * 3600;
/// How long a ticket opens a session (what clients are told, and what the
/// collector enforces): a key's making period and its time as the
/// previous key.
pub const LIFETIME: u64 = 2 * ROTATE_AFTER;

/// The ticket's layout version, its first byte.
const VERSION: u8 = 1;
/// version, key id (8), issued at (8, big-endian Unix seconds), nonce.
const HEADER: usize = 1 + 8 + 8 + NONCE_LEN;

struct Key {
    id: [u8; 8],
    created: u64,
    secret: [u8; 32],
    aead: LessSafeKey,
}

impl Key {
    fn new(secret: [u8; 32], created: u64) -> Key {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(secret);
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest[..8]);
        let aead = LessSafeKey::new(
            UnboundKey::new(&AES_256_GCM, &secret).expect("32 bytes is an AES-256 key"),
        );
        Key {
            id,
            created,
            secret,
            aead,
        }
    }

    fn generate(rng: &SystemRandom, created: u64) -> Result<Key> {
        let mut secret = [0u8; 32];
        rng.fill(&mut secret)
            .map_err(|_| anyhow::anyhow!("the system's random source failed"))?;
        Ok(Key::new(secret, created))
    }
}

struct Keys {
    current: Key,
    previous: Option<Key>,
}

/// Makes and opens the collector's session tickets; one per process,
/// shared by every TLS configuration it builds (a SIGHUP reload keeps it).
pub struct TicketKeys {
    path: PathBuf,
    rng: SystemRandom,
    keys: RwLock<Keys>,
}

impl std::fmt::Debug for TicketKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TicketKeys")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Reads a key file: one key per line, `CREATED HEX-SECRET`, newest first.
fn parse(text: &str) -> Result<Vec<Key>, String> {
    let mut keys = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |what: &str| format!("line {}: {what}", n + 1);
        let (created, secret) = line
            .split_once(' ')
            .ok_or_else(|| bad("expected `CREATED SECRET`"))?;
        let created: u64 = created
            .parse()
            .map_err(|_| bad("the creation time is not a number"))?;
        let bytes = hex::decode(secret.trim()).map_err(|_| bad("the secret is not hex"))?;
        let secret: [u8; 32] = bytes
            .try_into()
            .map_err(|_| bad("the secret is not 32 bytes"))?;
        keys.push(Key::new(secret, created));
    }
    if keys.is_empty() {
        return Err("no key in it".into());
    }
    Ok(keys)
}

fn render(keys: &Keys) -> String {
    let mut s = String::from(
        "# Muster collector: TLS session ticket keys, newest first (CREATED HEX-SECRET).\n\
         # Secret. Deleting this file only makes agents do a full handshake once.\n",
    );
    for k in std::iter::once(&keys.current).chain(keys.previous.as_ref()) {
        s.push_str(&format!("{} {}\n", k.created, hex::encode(k.secret)));
    }
    s
}

/// Writes the key file whole or not at all: a new file beside it, synced,
/// then renamed over it.
fn save(path: &Path, keys: &Keys) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("new");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    f.write_all(render(keys).as_bytes())
        .and_then(|_| f.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))
}

impl TicketKeys {
    /// The keys in `path`, made (and written) when the file is missing,
    /// unreadable or too old; rotated as time passes.
    pub fn load_or_create(path: &Path) -> Result<TicketKeys> {
        Self::load_at(path, now())
    }

    fn load_at(path: &Path, t: u64) -> Result<TicketKeys> {
        let rng = SystemRandom::new();
        let loaded = match std::fs::read_to_string(path) {
            Ok(text) => match parse(&text) {
                Ok(keys) => Some(keys),
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "TLS ticket keys unreadable; making new ones (agents do one full handshake)");
                    None
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "cannot read the TLS ticket keys; making new ones (agents do one full handshake)");
                None
            }
        };
        // Only new keys need writing (a rotation writes its own).
        let made = loaded.is_none();
        let keys = match loaded {
            Some(mut keys) => {
                let current = keys.remove(0);
                let previous = (!keys.is_empty()).then(|| keys.remove(0));
                Keys { current, previous }
            }
            None => Keys {
                current: Key::generate(&rng, t)?,
                previous: None,
            },
        };
        let this = TicketKeys {
            path: path.to_path_buf(),
            rng,
            keys: RwLock::new(keys),
        };
        if !this.rotate_if_due(t)? && made {
            save(path, &this.keys.read().unwrap_or_else(|e| e.into_inner()))?;
        }
        Ok(this)
    }

    /// Makes a new current key when the current one is [`ROTATE_AFTER`]
    /// old (or from the future: a clock set back), and saves the file.
    /// Returns whether it did.
    pub fn rotate_if_due(&self, t: u64) -> Result<bool> {
        {
            let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
            let age = t.checked_sub(keys.current.created);
            if age.is_some_and(|a| a < ROTATE_AFTER) {
                return Ok(false);
            }
        }
        let mut keys = self.keys.write().unwrap_or_else(|e| e.into_inner());
        let age = t.checked_sub(keys.current.created);
        if age.is_some_and(|a| a < ROTATE_AFTER) {
            return Ok(false);
        }
        let fresh = Key::generate(&self.rng, t)?;
        let old = std::mem::replace(&mut keys.current, fresh);
        // A previous key is kept only while its tickets can still be
        // within their lifetime.
        keys.previous = age.is_some_and(|a| a < LIFETIME).then_some(old);
        save(&self.path, &keys)?;
        Ok(true)
    }

    /// Rotates the keys every minute, for as long as the process runs.
    pub fn spawn_rotation(self: &std::sync::Arc<Self>) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
            loop {
                tick.tick().await;
                match this.rotate_if_due(now()) {
                    Ok(true) => {
                        tracing::info!(file = %this.path.display(), "TLS ticket key rotated")
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "cannot rotate the TLS ticket key; the current one stays")
                    }
                }
            }
        });
    }

    fn seal(&self, plain: &[u8], t: u64) -> Option<Vec<u8>> {
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        let key = &keys.current;
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).ok()?;
        let mut out = Vec::with_capacity(HEADER + plain.len() + AES_256_GCM.tag_len());
        out.push(VERSION);
        out.extend_from_slice(&key.id);
        out.extend_from_slice(&t.to_be_bytes());
        out.extend_from_slice(&nonce);
        let mut body = plain.to_vec();
        key.aead
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&out[..1 + 8 + 8]),
                &mut body,
            )
            .ok()?;
        out.extend_from_slice(&body);
        Some(out)
    }

    fn open(&self, ticket: &[u8], t: u64) -> Option<Vec<u8>> {
        if ticket.len() < HEADER + AES_256_GCM.tag_len() || ticket[0] != VERSION {
            return None;
        }
        let (header, body) = ticket.split_at(HEADER);
        let issued = u64::from_be_bytes(header[9..17].try_into().ok()?);
        // Too old, or issued in the future (more than a minute of skew).
        if t.saturating_sub(issued) >= LIFETIME || issued > t + 60 {
            return None;
        }
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        let key = std::iter::once(&keys.current)
            .chain(keys.previous.as_ref())
            .find(|k| k.id == header[1..9])?;
        let nonce = Nonce::try_assume_unique_for_key(&header[17..]).ok()?;
        let mut body = body.to_vec();
        let plain = key
            .aead
            .open_in_place(nonce, Aad::from(&header[..17]), &mut body)
            .ok()?;
        let n = plain.len();
        body.truncate(n);
        Some(body)
    }
}

impl rustls::server::ProducesTickets for TicketKeys {
    fn enabled(&self) -> bool {
        true
    }
    fn lifetime(&self) -> u32 {
        LIFETIME as u32
    }
    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.seal(plain, now())
    }
    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        self.open(cipher, now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn keys_in(dir: &Path) -> TicketKeys {
        TicketKeys::load_or_create(&dir.join("ticket-keys")).unwrap()
    }

    #[test]
    fn a_ticket_opens_after_a_restart_and_not_with_other_keys() {
        let dir = tempfile::tempdir().unwrap();
        let t = now();
        let first = keys_in(dir.path());
        let ticket = first.seal(b"session", t).unwrap();
        assert_ne!(&ticket[HEADER..HEADER + 7], b"session", "sealed, not plain");
        assert_eq!(first.open(&ticket, t).unwrap(), b"session");
        // Another process on the same folder: the same keys.
        let again = keys_in(dir.path());
        assert_eq!(again.open(&ticket, t + 60).unwrap(), b"session");
        // Another folder: other keys, the ticket does not open.
        let other = tempfile::tempdir().unwrap();
        assert!(keys_in(other.path()).open(&ticket, t).is_none());
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.path().join("ticket-keys"))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn rotation_keeps_the_previous_key_until_its_tickets_expire() {
        let dir = tempfile::tempdir().unwrap();
        let keys = keys_in(dir.path());
        let t = now();
        let old = keys.seal(b"old", t).unwrap();
        assert!(!keys.rotate_if_due(t + ROTATE_AFTER - 1).unwrap());
        assert!(keys.rotate_if_due(t + ROTATE_AFTER).unwrap());
        let new = keys.seal(b"new", t + ROTATE_AFTER).unwrap();
        assert_eq!(keys.open(&old, t + ROTATE_AFTER).unwrap(), b"old");
        assert_eq!(keys.open(&new, t + ROTATE_AFTER).unwrap(), b"new");
        // The rotation was saved: a restart opens both.
        let restarted =
            TicketKeys::load_at(&dir.path().join("ticket-keys"), t + ROTATE_AFTER).unwrap();
        assert_eq!(restarted.open(&old, t + ROTATE_AFTER).unwrap(), b"old");
        // Past its lifetime a ticket is refused, whatever its key.
        assert!(keys.open(&old, t + LIFETIME).is_none());
        // The next rotation drops the first key.
        assert!(keys.rotate_if_due(t + 2 * ROTATE_AFTER).unwrap());
        assert!(keys.open(&old, t + 2 * ROTATE_AFTER - 1).is_none());
        assert_eq!(
            keys.open(&new, t + 2 * ROTATE_AFTER).unwrap(),
            b"new",
            "the key before stays"
        );
    }

    #[test]
    fn a_tampered_ticket_or_a_bad_key_file_never_opens_a_session() {
        let dir = tempfile::tempdir().unwrap();
        let keys = keys_in(dir.path());
        let t = now();
        let ticket = keys.seal(b"session", t).unwrap();
        for i in 0..ticket.len() {
            let mut bad = ticket.clone();
            bad[i] ^= 0x01;
            assert!(keys.open(&bad, t).is_none(), "byte {i} flipped still opens");
        }
        assert!(keys.open(&ticket[..ticket.len() - 1], t).is_none());
        // A damaged key file: new keys, the old ticket no longer opens,
        // and the file is whole again.
        let path = dir.path().join("ticket-keys");
        std::fs::write(&path, "12 not-hex\n").unwrap();
        let remade = keys_in(dir.path());
        assert!(remade.open(&ticket, t).is_none());
        assert!(parse(&std::fs::read_to_string(&path).unwrap()).is_ok());
        for bad in ["", "# only a comment\n", "x 00\n", "1 0011\n"] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    proptest! {
        #[test]
        fn any_bytes_as_a_ticket_or_key_file_are_refused_cleanly(
            bytes in proptest::collection::vec(any::<u8>(), 0..200),
            text in ".{0,200}",
        ) {
            let dir = tempfile::tempdir().unwrap();
            let keys = keys_in(dir.path());
            prop_assert!(keys.open(&bytes, now()).is_none());
            let _ = parse(&text);
        }
    }
}

//! Asset inventory import (a CMDB export as CSV) and agent coverage.
//!
//! `muster assets import FILE.csv` reads the operator's inventory so the
//! tool can show which machines run no agent. This module is pure: it takes
//! the file's bytes and the column choices, and returns either every asset or
//! every error found; [`coverage`] then compares assets with enrolled agents.
//!
//! # The file
//!
//! * CSV as in RFC 4180: fields separated by `,`, fields may be quoted with
//!   `"`, a quote inside a quoted field is written `""`, and quoted fields may
//!   hold the delimiter and line breaks. A `"` inside an unquoted field is kept
//!   as an ordinary character (as Excel does); text after the closing quote of
//!   a quoted field (`"abc"x`) is an error.
//! * **Semicolons:** when the first line contains `;` and no `,`, the
//!   delimiter is `;` (the format Excel writes in locales whose decimal
//!   separator is a comma). The choice is made once, from the first line,
//!   for the whole file.
//! * Lines end with LF or CRLF (a lone CR is also taken as a line end). A
//!   UTF-8 byte order mark at the start is stripped. The text must be UTF-8.
//! * The first line is the header. Empty lines, and records whose fields are
//!   all empty or blank (Excel's `,,,` rows), are skipped wherever they are,
//!   so a trailing empty line is fine.
//! * Field values are trimmed of surrounding white space.
//!
//! # Columns
//!
//! Header names are matched ignoring case and surrounding spaces. The host
//! name column is the one named by [`Columns::hostname`], or `hostname`; it
//! must exist. The IP, owner and business unit columns are the ones named in
//! [`Columns`] (which then must exist), or else the header columns named
//! `ip`, `owner` and `business_unit` when there are such; otherwise those
//! values are empty. A name that matches two header columns is an error.
//!
//! # Values
//!
//! * Host name: not empty, at most 253 characters, only ASCII letters,
//!   digits, `-`, `_` and `.`, no empty label (leading, trailing or doubled
//!   `.`), labels at most 63 characters. Two records with the same host name
//!   (ignoring ASCII case) are an error that names both lines.
//! * IP: empty, or an IPv4 or IPv6 address (as `std::net::IpAddr` parses it).
//!
//! # Errors
//!
//! The import is all or nothing: any error gives `Err` with every error
//! found, sorted by line, at most [`MAX_ERRORS`] of them followed by one
//! `"and N more errors"` entry whose `line` is 0 (its `Display` is the bare
//! message). Each error names the 1-based physical line where its record
//! starts (an unterminated quote names the line where the field starts) and,
//! when it concerns one field of a data record, the column as the header
//! spells it.

use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

/// At most this many errors are returned, then one "and N more" entry.
pub const MAX_ERRORS: usize = 100;
/// Longest host name accepted, in characters.
pub const MAX_HOSTNAME_LEN: usize = 253;
/// Longest label (dot-separated part) of a host name accepted.
pub const MAX_LABEL_LEN: usize = 63;
/// How many header names an error message lists before eliding the rest.
const MAX_LISTED_COLUMNS: usize = 40;
/// How many characters of a value an error message quotes.
const MAX_QUOTED_CHARS: usize = 80;

/// One row of the inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Asset {
    pub hostname: String,
    /// Empty when the file has no IP column or the cell is empty.
    pub ip: String,
    pub owner: String,
    pub business_unit: String,
    /// 1-based physical line where the record starts.
    pub line: usize,
}

/// Header names of the columns to use (from the command line flags);
/// `None` means the default (see the module documentation).
#[derive(Debug, Clone, Default)]
pub struct Columns {
    pub hostname: Option<String>,
    pub ip: Option<String>,
    pub owner: Option<String>,
    pub business_unit: Option<String>,
}

/// One problem in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetError {
    /// 1-based physical line; 0 only for the final "and N more errors" entry.
    pub line: usize,
    /// The column, as the header spells it (trimmed), when the error is
    /// about one field of a data record.
    pub column: Option<String>,
    pub message: String,
}

impl AssetError {
    fn new(line: usize, column: Option<String>, message: impl Into<String>) -> Self {
        AssetError {
            line,
            column,
            message: message.into(),
        }
    }
}

impl fmt::Display for AssetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, &self.column) {
            (0, _) => f.write_str(&self.message),
            (line, Some(col)) => write!(f, "line {line}, column {col:?}: {}", self.message),
            (line, None) => write!(f, "line {line}: {}", self.message),
        }
    }
}

impl std::error::Error for AssetError {}

// ---------------------------------------------------------------------------
// CSV reader
// ---------------------------------------------------------------------------

struct RawRecord<'a> {
    line: usize,
    fields: Vec<Cow<'a, [u8]>>,
    /// A quoting error was reported for this record; its fields are not
    /// trustworthy and it gets no further checks.
    broken: bool,
}

struct RawError {
    line: usize,
    record: usize,
    field: usize,
    message: String,
}

/// Line breaks in `s` (LF, CRLF and lone CR each count once), for text that
/// is not followed by an LF right after its end.
fn line_breaks(s: &[u8]) -> usize {
    let mut n = 0;
    for (k, &c) in s.iter().enumerate() {
        if c == b'\n' || (c == b'\r' && s.get(k + 1) != Some(&b'\n')) {
            n += 1;
        }
    }
    n
}

fn detect_delimiter(text: &[u8]) -> u8 {
    let end = text
        .iter()
        .position(|&c| c == b'\n' || c == b'\r')
        .unwrap_or(text.len());
    let first = &text[..end];
    if first.contains(&b';') && !first.contains(&b',') {
        b';'
    } else {
        b','
    }
}

/// Splits `b` into records. Never fails: problems are returned alongside.
fn tokenize(b: &[u8], delim: u8) -> (Vec<RawRecord<'_>>, Vec<RawError>) {
    let n = b.len();
    let is_end = |c: u8| c == delim || c == b'\n' || c == b'\r';
    let mut records = Vec::new();
    let mut errors = Vec::new();
    let mut i = 0;
    let mut line = 1;
    while i < n {
        let rec_line = line;
        let mut fields: Vec<Cow<'_, [u8]>> = Vec::new();
        let mut broken = false;
        loop {
            let field_line = line;
            let field_idx = fields.len();
            if i < n && b[i] == b'"' {
                i += 1;
                let content_start = i;
                let mut chunk_start = i;
                let mut owned: Option<Vec<u8>> = None;
                let content_end;
                loop {
                    match b[i..].iter().position(|&c| c == b'"') {
                        None => {
                            errors.push(RawError {
                                line: field_line,
                                record: records.len(),
                                field: field_idx,
                                message: "unterminated quoted field: the closing '\"' is missing, so the \
                                          rest of the file was read into this field"
                                    .into(),
                            });
                            broken = true;
                            content_end = n;
                            i = n;
                            break;
                        }
                        Some(off) => {
                            let j = i + off;
                            if b.get(j + 1) == Some(&b'"') {
                                owned
                                    .get_or_insert_with(Vec::new)
                                    .extend_from_slice(&b[chunk_start..=j]);
                                i = j + 2;
                                chunk_start = i;
                            } else {
                                content_end = j;
                                i = j + 1;
                                break;
                            }
                        }
                    }
                }
                line += line_breaks(&b[content_start..content_end]);
                let tail = &b[chunk_start.min(content_end)..content_end];
                fields.push(match owned {
                    Some(mut v) => {
                        v.extend_from_slice(tail);
                        Cow::Owned(v)
                    }
                    None => Cow::Borrowed(tail),
                });
                if i < n && !is_end(b[i]) {
                    errors.push(RawError {
                        line: rec_line,
                        record: records.len(),
                        field: field_idx,
                        message: format!(
                            "unexpected {:?} after the closing quote of a quoted field \
                             (a quote inside a quoted field is written \"\")",
                            b[i] as char
                        ),
                    });
                    broken = true;
                    while i < n && !is_end(b[i]) {
                        i += 1;
                    }
                }
            } else {
                let start = i;
                while i < n && !is_end(b[i]) {
                    i += 1;
                }
                fields.push(Cow::Borrowed(&b[start..i]));
            }
            if i >= n {
                break;
            }
            match b[i] {
                b'\r' => {
                    i += 1;
                    if b.get(i) == Some(&b'\n') {
                        i += 1;
                    }
                    line += 1;
                    break;
                }
                b'\n' => {
                    i += 1;
                    line += 1;
                    break;
                }
                _ => i += 1, // the delimiter: another field follows
            }
        }
        records.push(RawRecord {
            line: rec_line,
            fields,
            broken,
        });
    }
    (records, errors)
}

// ---------------------------------------------------------------------------
// Import
// ---------------------------------------------------------------------------

/// Shortens a value for quoting in a message.
fn shown(s: &str) -> String {
    if s.chars().count() <= MAX_QUOTED_CHARS {
        format!("{s:?}")
    } else {
        let head: String = s.chars().take(MAX_QUOTED_CHARS).collect();
        format!("{head:?}…")
    }
}

fn header_list(names: &[String]) -> String {
    let mut parts: Vec<&str> = names
        .iter()
        .take(MAX_LISTED_COLUMNS)
        .map(|s| if s.is_empty() { "(empty)" } else { s.as_str() })
        .collect();
    if names.len() > MAX_LISTED_COLUMNS {
        parts.push("…");
    }
    parts.join(", ")
}

/// Checks a trimmed host name; the error text is the message.
fn check_hostname(h: &str) -> Result<(), String> {
    if h.is_empty() {
        return Err("empty hostname".into());
    }
    if let Some((pos, c)) = h
        .chars()
        .enumerate()
        .find(|&(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "invalid character {c:?} at position {} in hostname {} \
             (allowed: letters, digits, '-', '_', '.')",
            pos + 1,
            shown(h)
        ));
    }
    // Only ASCII is left, so bytes are characters.
    if h.len() > MAX_HOSTNAME_LEN {
        return Err(format!(
            "hostname is {} characters long (at most {MAX_HOSTNAME_LEN})",
            h.len()
        ));
    }
    if h.starts_with('.') || h.ends_with('.') || h.contains("..") {
        return Err(format!(
            "hostname {} has an empty label (a leading, trailing or doubled '.')",
            shown(h)
        ));
    }
    if let Some(label) = h.split('.').find(|l| l.len() > MAX_LABEL_LEN) {
        return Err(format!(
            "label {} of the hostname is {} characters long (at most {MAX_LABEL_LEN})",
            shown(label),
            label.len()
        ));
    }
    Ok(())
}

/// Which header column to use for each value.
struct Resolved {
    hostname: usize,
    ip: Option<usize>,
    owner: Option<usize>,
    business_unit: Option<usize>,
}

/// Finds the column for one value. `flag` is the operator's choice (a
/// missing flagged column is always an error), `default` the header name
/// used without one; `required_default` says whether a missing default is an
/// error; `hint` is appended to the "no column" message.
fn resolve(
    names: &[String],
    lower: &[String],
    flag: Option<&str>,
    default: &str,
    required_default: bool,
    hint: &str,
) -> Result<Option<usize>, String> {
    let wanted = flag.unwrap_or(default).trim();
    let key = wanted.to_lowercase();
    let hits: Vec<usize> = (0..lower.len()).filter(|&k| lower[k] == key).collect();
    match hits.len() {
        1 => Ok(Some(hits[0])),
        0 if flag.is_none() && !required_default => Ok(None),
        0 => Err(format!(
            "no column named {wanted:?} (the header has: {}){hint}",
            header_list(names)
        )),
        _ => {
            let positions: Vec<String> = hits.iter().map(|k| (k + 1).to_string()).collect();
            Err(format!(
                "{} header columns are named {wanted:?} (columns {}); rename all but one",
                hits.len(),
                positions.join(", ")
            ))
        }
    }
}

fn is_blank(rec: &RawRecord<'_>) -> bool {
    rec.fields
        .iter()
        .all(|f| f.iter().all(|c| c.is_ascii_whitespace()))
}

fn finish(mut errors: Vec<AssetError>) -> Vec<AssetError> {
    errors.sort_by_key(|e| e.line);
    if errors.len() > MAX_ERRORS {
        let more = errors.len() - MAX_ERRORS;
        errors.truncate(MAX_ERRORS);
        errors.push(AssetError::new(
            0,
            None,
            format!("and {more} more error{}", if more == 1 { "" } else { "s" }),
        ));
    }
    errors
}

/// Parses a CSV inventory. All or nothing: `Ok` with every asset in file
/// order, or `Err` with every error found (see the module documentation).
pub fn parse(text: &[u8], cols: &Columns) -> Result<Vec<Asset>, Vec<AssetError>> {
    let text = text.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(text);
    if text.is_empty() {
        return Err(vec![AssetError::new(1, None, "empty file")]);
    }
    let delim = detect_delimiter(text);
    let (records, raw_errors) = tokenize(text, delim);
    let mut errors = Vec::new();

    let header = &records[0]; // non-empty text always yields a record
    let names: Vec<String> = header
        .fields
        .iter()
        .map(|f| String::from_utf8_lossy(f).trim().to_string())
        .collect();
    for raw in raw_errors {
        let column = if raw.record == 0 {
            None
        } else {
            names.get(raw.field).cloned()
        };
        errors.push(AssetError::new(raw.line, column, raw.message));
    }
    if header.broken {
        return Err(finish(errors));
    }
    if is_blank(header) {
        errors.push(AssetError::new(
            1,
            None,
            "no header: line 1 is empty, but it must name the columns",
        ));
        return Err(finish(errors));
    }
    for (k, f) in header.fields.iter().enumerate() {
        if let Err(e) = std::str::from_utf8(f) {
            errors.push(AssetError::new(
                1,
                None,
                format!(
                    "the name of column {} is not valid UTF-8 ({}); save the file as UTF-8",
                    k + 1,
                    utf8_detail(f, &e)
                ),
            ));
        }
    }

    let lower: Vec<String> = names.iter().map(|s| s.to_lowercase()).collect();
    let host_hint = if cols.hostname.is_none() {
        "; name the hostname column with --hostname-column"
    } else {
        ""
    };
    let picks = [
        resolve(
            &names,
            &lower,
            cols.hostname.as_deref(),
            "hostname",
            true,
            host_hint,
        ),
        resolve(&names, &lower, cols.ip.as_deref(), "ip", false, ""),
        resolve(&names, &lower, cols.owner.as_deref(), "owner", false, ""),
        resolve(
            &names,
            &lower,
            cols.business_unit.as_deref(),
            "business_unit",
            false,
            "",
        ),
    ];
    let mut picked = [None; 4];
    let mut unresolved = false;
    for (slot, pick) in picked.iter_mut().zip(picks) {
        match pick {
            Ok(p) => *slot = p,
            Err(message) => {
                errors.push(AssetError::new(1, None, message));
                unresolved = true;
            }
        }
    }
    // With a column missing, only the structure of the records is checked.
    let resolved = match picked[0] {
        Some(hostname) if !unresolved => Some(Resolved {
            hostname,
            ip: picked[1],
            owner: picked[2],
            business_unit: picked[3],
        }),
        _ => None,
    };

    let ncols = header.fields.len();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut assets = Vec::new();
    for rec in &records[1..] {
        if rec.broken || is_blank(rec) {
            continue;
        }
        if rec.fields.len() != ncols {
            errors.push(AssetError::new(
                rec.line,
                None,
                format!(
                    "this record has {} field{} but the header has {} column{}",
                    rec.fields.len(),
                    if rec.fields.len() == 1 { "" } else { "s" },
                    ncols,
                    if ncols == 1 { "" } else { "s" }
                ),
            ));
            continue;
        }
        let mut values: Vec<&str> = Vec::with_capacity(ncols);
        let mut bad = false;
        for (k, f) in rec.fields.iter().enumerate() {
            match std::str::from_utf8(f) {
                Ok(s) => values.push(s.trim()),
                Err(e) => {
                    errors.push(AssetError::new(
                        rec.line,
                        Some(names[k].clone()),
                        format!(
                            "not valid UTF-8 ({}); save the file as UTF-8",
                            utf8_detail(f, &e)
                        ),
                    ));
                    values.push("");
                    bad = true;
                }
            }
        }
        let Some(r) = &resolved else { continue };
        if bad {
            continue;
        }
        let hostname = values[r.hostname];
        let col = |k: usize| Some(names[k].clone());
        if let Err(message) = check_hostname(hostname) {
            errors.push(AssetError::new(rec.line, col(r.hostname), message));
            bad = true;
        } else {
            let key = hostname.to_ascii_lowercase();
            if let Some(&first) = seen.get(&key) {
                errors.push(AssetError::new(
                    rec.line,
                    col(r.hostname),
                    format!(
                        "duplicate hostname {} (lines {first} and {})",
                        shown(hostname),
                        rec.line
                    ),
                ));
                bad = true;
            } else {
                seen.insert(key, rec.line);
            }
        }
        let ip = r.ip.map_or("", |k| values[k]);
        if !ip.is_empty() && ip.parse::<IpAddr>().is_err() {
            errors.push(AssetError::new(
                rec.line,
                col(r.ip.unwrap_or_default()),
                format!("{} is not an IPv4 or IPv6 address", shown(ip)),
            ));
            bad = true;
        }
        if !bad && errors.is_empty() {
            assets.push(Asset {
                hostname: hostname.to_string(),
                ip: ip.to_string(),
                owner: r.owner.map_or("", |k| values[k]).to_string(),
                business_unit: r.business_unit.map_or("", |k| values[k]).to_string(),
                line: rec.line,
            });
        }
    }
    if errors.is_empty() {
        Ok(assets)
    } else {
        Err(finish(errors))
    }
}

fn utf8_detail(bytes: &[u8], e: &std::str::Utf8Error) -> String {
    let at = e.valid_up_to();
    match (e.error_len(), bytes.get(at)) {
        (Some(_), Some(b)) => format!("byte 0x{b:02X} at byte {} of the field", at + 1),
        _ => "a character is cut off at the end of the field".into(),
    }
}

// ---------------------------------------------------------------------------
// Coverage
// ---------------------------------------------------------------------------

/// An enrolled agent, as the server knows it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AgentHost {
    pub id: String,
    pub hostname: String,
    pub ips: Vec<String>,
    /// Unix seconds of the last check-in.
    pub last_checkin: Option<i64>,
    pub stale: bool,
}

/// How much of the inventory runs an agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Coverage {
    /// Number of assets given.
    pub assets: usize,
    /// Number of agents given.
    pub agents: usize,
    /// Assets matched to an agent (= agents matched to an asset).
    pub covered: usize,
    pub assets_without_agent: Vec<Asset>,
    pub agents_not_in_assets: Vec<AgentRef>,
    /// Every stale agent, matched or not.
    pub stale: Vec<AgentRef>,
    /// `covered / assets * 100`; 0 when there are no assets.
    pub percent_covered: f64,
}

/// An agent in a [`Coverage`] list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRef {
    pub id: String,
    pub hostname: String,
    pub last_checkin: Option<i64>,
}

impl From<&AgentHost> for AgentRef {
    fn from(a: &AgentHost) -> Self {
        AgentRef {
            id: a.id.clone(),
            hostname: a.hostname.clone(),
            last_checkin: a.last_checkin,
        }
    }
}

/// Host name as compared: trimmed, ASCII lower case, no trailing root dot.
fn host_key(h: &str) -> Cow<'_, str> {
    let h = h.trim().trim_end_matches('.');
    if h.bytes().any(|c| c.is_ascii_uppercase()) {
        Cow::Owned(h.to_ascii_lowercase())
    } else {
        Cow::Borrowed(h)
    }
}

/// An IP as compared; `None` for text that is not an address and for
/// addresses that many machines share (loopback, unspecified, link-local,
/// multicast), which say nothing about which machine it is.
fn ip_key(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    let s = s.split('/').next().unwrap_or(s); // "10.0.0.5/24"
    let s = s.split('%').next().unwrap_or(s); // "fe80::1%eth0"
    let s = s.trim_start_matches('[').trim_end_matches(']');
    let ip = s.parse::<IpAddr>().ok()?.to_canonical();
    let shared = ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || match ip {
            IpAddr::V4(v4) => v4.is_link_local() || v4.is_broadcast(),
            IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80,
        };
    (!shared).then_some(ip)
}

const NIL: usize = usize::MAX;

/// Candidate agents per key, each list in order of preference, kept as
/// linked lists in one arena (no allocation per key: this is what keeps
/// 100 000 x 100 000 fast). Taking skips agents already matched and drops
/// them from the list, so every node is skipped at most once.
struct Candidates<K> {
    /// Key -> (first node not yet skipped, last node).
    lists: HashMap<K, (usize, usize)>,
    /// (agent, next node).
    nodes: Vec<(usize, usize)>,
}

impl<K: std::hash::Hash + Eq> Candidates<K> {
    fn with_capacity(n: usize) -> Self {
        Candidates {
            lists: HashMap::with_capacity(n),
            nodes: Vec::with_capacity(n),
        }
    }

    /// Appends `agent` to the list of `key` (call in order of preference).
    fn add(&mut self, key: K, agent: usize) {
        let node = self.nodes.len();
        self.nodes.push((agent, NIL));
        match self.lists.entry(key) {
            std::collections::hash_map::Entry::Occupied(mut e) => {
                let (_, last) = e.get_mut();
                self.nodes[*last].1 = node;
                *last = node;
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert((node, node));
            }
        }
    }

    /// The best agent for `key` that is not `used` yet.
    fn take<Q>(&mut self, key: &Q, used: &[bool]) -> Option<usize>
    where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        let (first, _) = self.lists.get_mut(key)?;
        while *first != NIL {
            let (agent, next) = self.nodes[*first];
            if !used[agent] {
                return Some(agent);
            }
            *first = next;
        }
        None
    }
}

/// Matches assets to agents one to one and reports the gaps.
///
/// An asset matches an agent when (in this order of preference, each pass
/// over all assets before the next):
/// 1. the host names are equal ignoring ASCII case;
/// 2. the short names (before the first `.`) are equal and at least one of
///    the two names has no domain (`web01` ~ `web01.corp.example`, but not
///    `web01.a.example` ~ `web01.b.example`);
/// 3. the asset's IP equals one of the agent's IPs (loopback, link-local,
///    unspecified and multicast addresses never match).
///
/// Assets are taken in host name order; when several agents could match
/// one asset, a non-stale agent is preferred, then the latest check-in, then
/// the smallest id. Output lists are sorted by host name ignoring ASCII
/// case (then by line or id).
pub fn coverage(assets: &[Asset], agents: &[AgentHost]) -> Coverage {
    let agent_keys: Vec<Cow<'_, str>> = agents.iter().map(|a| host_key(&a.hostname)).collect();
    let asset_keys: Vec<Cow<'_, str>> = assets.iter().map(|a| host_key(&a.hostname)).collect();

    let mut preferred: Vec<usize> = (0..agents.len()).collect();
    preferred.sort_unstable_by(|&x, &y| {
        let (a, b) = (&agents[x], &agents[y]);
        a.stale
            .cmp(&b.stale)
            .then(b.last_checkin.cmp(&a.last_checkin))
            .then(a.id.cmp(&b.id))
            .then(x.cmp(&y))
    });
    let n = agents.len();
    let mut exact: Candidates<&str> = Candidates::with_capacity(n);
    let mut by_short: Candidates<&str> = Candidates::with_capacity(n);
    let mut by_ip: Candidates<IpAddr> = Candidates::with_capacity(n);
    for &g in &preferred {
        let key: &str = &agent_keys[g];
        if !key.is_empty() {
            exact.add(key, g);
            match key.split_once('.') {
                Some((short, _)) => by_short.add(short, g),
                None => by_short.add(key, g),
            }
        }
        for ip in agents[g].ips.iter().filter_map(|s| ip_key(s)) {
            by_ip.add(ip, g);
        }
    }

    let mut order: Vec<usize> = (0..assets.len()).collect();
    order.sort_unstable_by(|&x, &y| {
        asset_keys[x]
            .cmp(&asset_keys[y])
            .then(assets[x].hostname.cmp(&assets[y].hostname))
            .then(assets[x].line.cmp(&assets[y].line))
            .then(x.cmp(&y))
    });
    let mut used = vec![false; agents.len()];
    let mut matched = vec![false; assets.len()];
    let mut covered = 0;
    let mut pass = |find: &mut dyn FnMut(usize, &[bool]) -> Option<usize>| {
        for &s in &order {
            if matched[s] {
                continue;
            }
            if let Some(g) = find(s, &used) {
                used[g] = true;
                matched[s] = true;
                covered += 1;
            }
        }
    };
    pass(&mut |s, used| {
        let key: &str = &asset_keys[s];
        exact.take(key, used)
    });
    pass(&mut |s, used| {
        let key: &str = &asset_keys[s];
        match key.split_once('.') {
            // `exact` keys without a dot are the agents without a domain.
            Some((short, _)) => exact.take(short, used),
            None if !key.is_empty() => by_short.take(key, used),
            None => None,
        }
    });
    pass(&mut |s, used| by_ip.take(&ip_key(&assets[s].ip)?, used));

    let assets_without_agent: Vec<Asset> = order
        .iter()
        .filter(|&&s| !matched[s])
        .map(|&s| assets[s].clone())
        .collect();
    let mut agent_order: Vec<usize> = (0..agents.len()).collect();
    agent_order.sort_unstable_by(|&x, &y| {
        agent_keys[x]
            .cmp(&agent_keys[y])
            .then(agents[x].hostname.cmp(&agents[y].hostname))
            .then(agents[x].id.cmp(&agents[y].id))
            .then(x.cmp(&y))
    });
    let agents_not_in_assets = agent_order
        .iter()
        .filter(|&&g| !used[g])
        .map(|&g| AgentRef::from(&agents[g]))
        .collect();
    let stale = agent_order
        .iter()
        .filter(|&&g| agents[g].stale)
        .map(|&g| AgentRef::from(&agents[g]))
        .collect();
    Coverage {
        assets: assets.len(),
        agents: agents.len(),
        covered,
        assets_without_agent,
        agents_not_in_assets,
        stale,
        percent_covered: if assets.is_empty() {
            0.0
        } else {
            covered as f64 * 100.0 / assets.len() as f64
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cols() -> Columns {
        Columns::default()
    }

    fn ok(text: &str) -> Vec<Asset> {
        match parse(text.as_bytes(), &cols()) {
            Ok(a) => a,
            Err(e) => panic!("unexpected errors: {e:#?}"),
        }
    }

    fn errs_with(text: &[u8], c: &Columns) -> Vec<String> {
        match parse(text, c) {
            Ok(a) => panic!("expected errors, got {a:#?}"),
            Err(e) => e.iter().map(|e| e.to_string()).collect(),
        }
    }

    fn errs(text: &str) -> Vec<String> {
        errs_with(text.as_bytes(), &cols())
    }

    fn asset(hostname: &str, ip: &str, owner: &str, unit: &str, line: usize) -> Asset {
        Asset {
            hostname: hostname.into(),
            ip: ip.into(),
            owner: owner.into(),
            business_unit: unit.into(),
            line,
        }
    }

    fn computer_name_cols() -> Columns {
        Columns {
            hostname: Some("Computer Name".into()),
            ip: Some("IP".into()),
            owner: Some("Owner".into()),
            business_unit: Some("Business Unit".into()),
        }
    }

    // ----- reading ---------------------------------------------------------

    #[test]
    fn default_columns() {
        let a = ok("hostname,ip,owner,business_unit\n\
                    web01,10.0.0.1,alice,Retail\n\
                    db01.corp.example,2001:db8::1,bob,Finance\n");
        assert_eq!(
            a,
            vec![
                asset("web01", "10.0.0.1", "alice", "Retail", 2),
                asset("db01.corp.example", "2001:db8::1", "bob", "Finance", 3),
            ]
        );
    }

    #[test]
    fn default_headers_any_case_and_padding_and_optional_columns_absent() {
        let a = ok(" HostName ,Notes, IP \nweb01,x,10.0.0.1\n");
        assert_eq!(a, vec![asset("web01", "10.0.0.1", "", "", 2)]);
        let a = ok("hostname\nweb01\n");
        assert_eq!(a, vec![asset("web01", "", "", "", 2)]);
        let a = ok("Owner,HOSTNAME,Business_Unit\nalice,web01,Retail\n");
        assert_eq!(a, vec![asset("web01", "", "alice", "Retail", 2)]);
    }

    #[test]
    fn column_flags_with_spaces_and_other_case() {
        let c = Columns {
            hostname: Some("  computer NAME ".into()),
            ip: Some("ip address".into()),
            owner: Some("PRIMARY owner".into()),
            business_unit: Some("business unit".into()),
        };
        let text = "Asset Tag, Computer Name ,IP Address,Primary Owner,Business Unit\n\
                    A1,web01,10.0.0.1,Alice Smith,Retail Banking\n";
        let a = parse(text.as_bytes(), &c).unwrap();
        assert_eq!(
            a,
            vec![asset(
                "web01",
                "10.0.0.1",
                "Alice Smith",
                "Retail Banking",
                2
            )]
        );
    }

    #[test]
    fn flag_overrides_default_header() {
        // A column named "hostname" exists, but the flag picks another one.
        let c = Columns {
            hostname: Some("fqdn".into()),
            ..cols()
        };
        let a = parse(b"hostname,fqdn\nweb01,web01.corp.example\n", &c).unwrap();
        assert_eq!(a[0].hostname, "web01.corp.example");
    }

    #[test]
    fn values_are_trimmed() {
        let a = ok("hostname,ip,owner\n  web01 , 10.0.0.1 ,\" alice \"\n");
        assert_eq!(a, vec![asset("web01", "10.0.0.1", "alice", "", 2)]);
    }

    #[test]
    fn quoted_fields_with_delimiters_quotes_and_newlines() {
        let text = "hostname,owner,business_unit\n\
                    web01,\"Smith, Alice\",\"Retail\nBanking\"\n\
                    web02,\"Bob \"\"the builder\"\"\",\"a\r\nb\"\n\
                    \"web03\",\"\",x\n";
        let a = ok(text);
        assert_eq!(
            a,
            vec![
                asset("web01", "", "Smith, Alice", "Retail\nBanking", 2),
                asset("web02", "", "Bob \"the builder\"", "a\r\nb", 4),
                asset("web03", "", "", "x", 6),
            ]
        );
    }

    #[test]
    fn quoted_newline_in_header() {
        let a = ok("\"host\nnotes\",hostname\nx,web01\n");
        assert_eq!(a, vec![asset("web01", "", "", "", 3)]);
    }

    #[test]
    fn quote_inside_unquoted_field_is_literal() {
        let a = ok("hostname,owner\nweb01,O\"Brien\n");
        assert_eq!(a[0].owner, "O\"Brien");
    }

    #[test]
    fn bom_is_stripped() {
        let a = parse(b"\xEF\xBB\xBFhostname,ip\r\nweb01,10.0.0.1\r\n", &cols()).unwrap();
        assert_eq!(a, vec![asset("web01", "10.0.0.1", "", "", 2)]);
    }

    #[test]
    fn crlf_lf_and_mixed_line_ends() {
        let want = vec![asset("a", "", "", "", 2), asset("b", "", "", "", 3)];
        assert_eq!(ok("hostname\na\nb\n"), want);
        assert_eq!(ok("hostname\r\na\r\nb\r\n"), want);
        assert_eq!(ok("hostname\r\na\nb\r\n"), want);
        assert_eq!(ok("hostname\ra\rb\r"), want);
    }

    #[test]
    fn trailing_empty_lines_and_no_final_newline() {
        let want = vec![asset("a", "", "", "", 2)];
        assert_eq!(ok("hostname\na"), want);
        assert_eq!(ok("hostname\na\n"), want);
        assert_eq!(ok("hostname\na\n\n"), want);
        assert_eq!(ok("hostname\r\na\r\n\r\n"), want);
    }

    #[test]
    fn blank_lines_and_empty_rows_are_skipped() {
        let a = ok("hostname,ip\n\nweb01,10.0.0.1\n,\n  ,  \n,,,\nweb02,\n");
        assert_eq!(
            a,
            vec![
                asset("web01", "10.0.0.1", "", "", 3),
                asset("web02", "", "", "", 7)
            ]
        );
    }

    #[test]
    fn header_only_is_an_empty_inventory() {
        assert_eq!(ok("hostname,ip\n"), vec![]);
    }

    #[test]
    fn semicolon_files() {
        let text = "\u{feff}Computer Name;IP;Owner;Business Unit\r\n\
                    web01;10.0.0.1;\"Smith; Alice\";Retail, Banking\r\n\
                    web02;;Bob;\r\n";
        let a = parse(text.as_bytes(), &computer_name_cols()).unwrap();
        assert_eq!(
            a,
            vec![
                asset("web01", "10.0.0.1", "Smith; Alice", "Retail, Banking", 2),
                asset("web02", "", "Bob", "", 3),
            ]
        );
    }

    #[test]
    fn semicolon_only_when_the_header_has_no_comma() {
        // The header has both: the delimiter is the comma.
        let a = ok("hostname,owner;unit\nweb01,a;b\n");
        assert_eq!(a, vec![asset("web01", "", "", "", 2)]);
        // A single-column file with ';' in the data is read with commas.
        assert_eq!(
            errs("hostname\nweb;01\n"),
            vec![
                "line 2, column \"hostname\": invalid character ';' at position 4 in hostname \
                 \"web;01\" (allowed: letters, digits, '-', '_', '.')"
            ]
        );
    }

    #[test]
    fn hostname_limits() {
        let label = "a".repeat(63);
        let name253 = format!("{label}.{label}.{label}.{}", "b".repeat(61));
        assert_eq!(name253.len(), 253);
        assert_eq!(ok(&format!("hostname\n{name253}\n"))[0].hostname, name253);
        assert_eq!(
            errs(&format!("hostname\n{name253}c\n")),
            vec!["line 2, column \"hostname\": hostname is 254 characters long (at most 253)"]
        );
        assert_eq!(
            errs(&format!("hostname\n{}\n", "a".repeat(64))),
            vec![format!(
                "line 2, column \"hostname\": label \"{}\" of the hostname is 64 characters \
                 long (at most 63)",
                "a".repeat(64)
            )]
        );
        assert_eq!(
            ok("hostname\nWEB_01-x.Corp.example\n")[0].hostname,
            "WEB_01-x.Corp.example"
        );
        for bad in [".web01", "web01.", "web..01"] {
            assert_eq!(
                errs(&format!("hostname\n{bad}\n")),
                vec![format!(
                    "line 2, column \"hostname\": hostname \"{bad}\" has an empty label \
                     (a leading, trailing or doubled '.')"
                )]
            );
        }
    }

    #[test]
    fn ipv4_and_ipv6_accepted_empty_ip_fine() {
        let a = ok("hostname,ip\na,192.168.1.1\nb,::1\nc,fe80::1:2\nd,\ne,\"\"\n");
        let ips: Vec<&str> = a.iter().map(|a| a.ip.as_str()).collect();
        assert_eq!(ips, ["192.168.1.1", "::1", "fe80::1:2", "", ""]);
    }

    // ----- errors ----------------------------------------------------------

    #[test]
    fn error_display_formats() {
        let e = AssetError::new(7, Some("Computer Name".into()), "empty hostname");
        assert_eq!(
            e.to_string(),
            "line 7, column \"Computer Name\": empty hostname"
        );
        let e = AssetError::new(0, None, "and 3 more errors");
        assert_eq!(e.to_string(), "and 3 more errors");
    }

    #[test]
    fn empty_file() {
        assert_eq!(errs(""), vec!["line 1: empty file"]);
        assert_eq!(errs("\u{feff}"), vec!["line 1: empty file"]);
    }

    #[test]
    fn no_header() {
        let want = vec!["line 1: no header: line 1 is empty, but it must name the columns"];
        assert_eq!(errs("\n"), want);
        assert_eq!(errs("\r\nhostname\nweb01\n"), want);
        assert_eq!(errs(" , \nweb01,x\n"), want);
    }

    #[test]
    fn missing_named_column_lists_the_header() {
        let c = Columns {
            hostname: Some("hostnme".into()),
            ..cols()
        };
        assert_eq!(
            errs_with(b"a,b,c\n1,2,3\n", &c),
            vec!["line 1: no column named \"hostnme\" (the header has: a, b, c)"]
        );
    }

    #[test]
    fn missing_default_hostname_column_and_missing_flagged_ones() {
        let c = Columns {
            ip: Some("IP Address".into()),
            business_unit: Some("BU".into()),
            ..cols()
        };
        assert_eq!(
            errs_with(b"Name,IP, ,Owner\nweb01,1.2.3.4,,x\n", &c),
            vec![
                "line 1: no column named \"hostname\" (the header has: Name, IP, (empty), \
                 Owner); name the hostname column with --hostname-column",
                "line 1: no column named \"IP Address\" (the header has: Name, IP, (empty), Owner)",
                "line 1: no column named \"BU\" (the header has: Name, IP, (empty), Owner)",
            ]
        );
    }

    #[test]
    fn ambiguous_column() {
        assert_eq!(
            errs("hostname,IP,Ip \nweb01,1.2.3.4,1.2.3.4\n"),
            vec!["line 1: 2 header columns are named \"ip\" (columns 2, 3); rename all but one"]
        );
    }

    #[test]
    fn header_problem_still_reports_structural_errors() {
        let c = Columns {
            hostname: Some("host".into()),
            ..cols()
        };
        assert_eq!(
            errs_with(b"a,b\n1,2\n1,2,3\n1,\"2\n", &c),
            vec![
                "line 1: no column named \"host\" (the header has: a, b)",
                "line 3: this record has 3 fields but the header has 2 columns",
                "line 4, column \"b\": unterminated quoted field: the closing '\"' is missing, \
                 so the rest of the file was read into this field",
            ]
        );
    }

    #[test]
    fn wrong_number_of_fields() {
        assert_eq!(
            errs("hostname,owner\nweb01\nweb02,alice,x\nweb03,\"a,b\"\n"),
            vec![
                "line 2: this record has 1 field but the header has 2 columns",
                "line 3: this record has 3 fields but the header has 2 columns",
            ]
        );
    }

    #[test]
    fn empty_hostname_names_line_and_column() {
        let text = "Computer Name,IP,Owner,Business Unit\n\
                    a,,,\nb,,,\nc,,,\nd,,\"x\ny\",\n,10.0.0.7,carol,\n";
        assert_eq!(
            errs_with(text.as_bytes(), &computer_name_cols()),
            vec!["line 7, column \"Computer Name\": empty hostname"]
        );
        assert_eq!(
            errs("hostname,owner\n \t ,alice\n\"\",bob\n"),
            vec![
                "line 2, column \"hostname\": empty hostname",
                "line 3, column \"hostname\": empty hostname",
            ]
        );
    }

    #[test]
    fn implausible_hostname_says_which_character() {
        assert_eq!(
            errs("hostname\nweb 01\nwéb01\nhttp://x\n"),
            vec![
                "line 2, column \"hostname\": invalid character ' ' at position 4 in hostname \
                 \"web 01\" (allowed: letters, digits, '-', '_', '.')",
                "line 3, column \"hostname\": invalid character 'é' at position 2 in hostname \
                 \"wéb01\" (allowed: letters, digits, '-', '_', '.')",
                "line 4, column \"hostname\": invalid character ':' at position 5 in hostname \
                 \"http://x\" (allowed: letters, digits, '-', '_', '.')",
            ]
        );
    }

    #[test]
    fn bad_ip_values() {
        let c = Columns {
            ip: Some("ip addr".into()),
            ..cols()
        };
        assert_eq!(
            errs_with(
                b"hostname, IP Addr \nweb01,10.0.0.256\nweb02,10.0.0.2\nweb03,fe80::1%eth0\nweb04,host\n",
                &c
            ),
            vec![
                "line 2, column \"IP Addr\": \"10.0.0.256\" is not an IPv4 or IPv6 address",
                "line 4, column \"IP Addr\": \"fe80::1%eth0\" is not an IPv4 or IPv6 address",
                "line 5, column \"IP Addr\": \"host\" is not an IPv4 or IPv6 address",
            ]
        );
    }

    #[test]
    fn duplicate_hostname_names_both_lines() {
        assert_eq!(
            errs("hostname,notes\nweb01,\nweb02,\nWEB01,\nweb03,\"multi\nline\"\nWeb01,\n"),
            vec![
                "line 4, column \"hostname\": duplicate hostname \"WEB01\" (lines 2 and 4)",
                "line 7, column \"hostname\": duplicate hostname \"Web01\" (lines 2 and 7)",
            ]
        );
    }

    #[test]
    fn non_utf8_bytes() {
        let text = b"hostname,owner\nweb01,M\xFCller\nweb02,ok\n\"web\n\xE9x\",x\n";
        assert_eq!(
            errs_with(text, &cols()),
            vec![
                "line 2, column \"owner\": not valid UTF-8 (byte 0xFC at byte 2 of the field); \
                 save the file as UTF-8",
                "line 4, column \"hostname\": not valid UTF-8 (byte 0xE9 at byte 5 of the \
                 field); save the file as UTF-8",
            ]
        );
        // In a column that is not imported it is still an error.
        assert_eq!(
            errs_with(b"hostname,notes\nweb01,\xFF\n", &cols()),
            vec![
                "line 2, column \"notes\": not valid UTF-8 (byte 0xFF at byte 1 of the field); \
                 save the file as UTF-8"
            ]
        );
        // A cut-off multi-byte character.
        assert_eq!(
            errs_with(b"hostname,notes\nweb01,\xE2\x82\n", &cols()),
            vec![
                "line 2, column \"notes\": not valid UTF-8 (a character is cut off at the end \
                 of the field); save the file as UTF-8"
            ]
        );
    }

    #[test]
    fn non_utf8_header() {
        assert_eq!(
            errs_with(b"hostname,Besitzer\xFC\nweb01,x\n", &cols()),
            vec![
                "line 1: the name of column 2 is not valid UTF-8 (byte 0xFC at byte 9 of the \
                 field); save the file as UTF-8"
            ]
        );
    }

    #[test]
    fn unterminated_quote_names_the_line_where_the_field_starts() {
        assert_eq!(
            errs("hostname,owner\nweb01,alice\nweb02,\"bob\nweb03,carol\n"),
            vec![
                "line 3, column \"owner\": unterminated quoted field: the closing '\"' is \
                 missing, so the rest of the file was read into this field"
            ]
        );
        // The record starts on line 2, the unterminated field on line 3.
        assert_eq!(
            errs("hostname,notes,owner\nweb01,\"a\nb\",\"carol\nweb02,x,y\n"),
            vec![
                "line 3, column \"owner\": unterminated quoted field: the closing '\"' is \
                 missing, so the rest of the file was read into this field"
            ]
        );
        assert_eq!(
            errs("\"hostname\n"),
            vec![
                "line 1: unterminated quoted field: the closing '\"' is missing, so the rest \
                 of the file was read into this field"
            ]
        );
    }

    #[test]
    fn text_after_closing_quote() {
        assert_eq!(
            errs("hostname,owner\nweb01,\"a\"b\nweb02,c\n"),
            vec![
                "line 2, column \"owner\": unexpected 'b' after the closing quote of a quoted \
                 field (a quote inside a quoted field is written \"\")"
            ]
        );
    }

    #[test]
    fn every_error_is_reported_and_nothing_imported() {
        let text = "hostname,ip\n\
                    good01,10.0.0.1\n\
                    ,10.0.0.2\n\
                    bad host,10.0.0.3\n\
                    good02,999.1.1.1\n\
                    good03\n\
                    GOOD01,10.0.0.5\n\
                    good04,10.0.0.6\n";
        assert_eq!(
            errs(text),
            vec![
                "line 3, column \"hostname\": empty hostname",
                "line 4, column \"hostname\": invalid character ' ' at position 4 in hostname \
                 \"bad host\" (allowed: letters, digits, '-', '_', '.')",
                "line 5, column \"ip\": \"999.1.1.1\" is not an IPv4 or IPv6 address",
                "line 6: this record has 1 field but the header has 2 columns",
                "line 7, column \"hostname\": duplicate hostname \"GOOD01\" (lines 2 and 7)",
            ]
        );
        // Two errors in one record are both reported.
        assert_eq!(
            errs("hostname,ip\nweb01,x\nweb01,y\n"),
            vec![
                "line 2, column \"ip\": \"x\" is not an IPv4 or IPv6 address",
                "line 3, column \"hostname\": duplicate hostname \"web01\" (lines 2 and 3)",
                "line 3, column \"ip\": \"y\" is not an IPv4 or IPv6 address",
            ]
        );
    }

    #[test]
    fn errors_are_capped_at_100_plus_a_summary() {
        let mut text = String::from("hostname\n");
        for _ in 0..250 {
            text.push_str("bad!\n");
        }
        let e = parse(text.as_bytes(), &cols()).unwrap_err();
        assert_eq!(e.len(), MAX_ERRORS + 1);
        assert_eq!(e[0].line, 2);
        assert_eq!(e[99].line, 101);
        assert_eq!(e[100], AssetError::new(0, None, "and 150 more errors"));

        let mut text = String::from("hostname\n");
        for _ in 0..101 {
            text.push_str("bad!\n");
        }
        let e = parse(text.as_bytes(), &cols()).unwrap_err();
        assert_eq!(e[100].to_string(), "and 1 more error");
        // Exactly 100: no summary.
        let text = format!("hostname\n{}", "bad!\n".repeat(100));
        assert_eq!(parse(text.as_bytes(), &cols()).unwrap_err().len(), 100);
    }

    #[test]
    fn long_values_are_shortened_in_messages() {
        let long = format!("{}!", "a".repeat(300));
        let e = errs(&format!("hostname\n{long}\n"));
        assert_eq!(
            e,
            vec![format!(
                "line 2, column \"hostname\": invalid character '!' at position 301 in \
                 hostname \"{}\"… (allowed: letters, digits, '-', '_', '.')",
                "a".repeat(80)
            )]
        );
    }

    // ----- coverage --------------------------------------------------------

    fn a(hostname: &str, ip: &str) -> Asset {
        asset(hostname, ip, "", "", 0)
    }

    fn g(id: &str, hostname: &str, ips: &[&str]) -> AgentHost {
        AgentHost {
            id: id.into(),
            hostname: hostname.into(),
            ips: ips.iter().map(|s| s.to_string()).collect(),
            last_checkin: Some(1000),
            stale: false,
        }
    }

    fn uncovered(c: &Coverage) -> Vec<&str> {
        c.assets_without_agent
            .iter()
            .map(|a| a.hostname.as_str())
            .collect()
    }

    fn unknown(c: &Coverage) -> Vec<&str> {
        c.agents_not_in_assets
            .iter()
            .map(|a| a.id.as_str())
            .collect()
    }

    #[test]
    fn exact_match_ignores_ascii_case() {
        let c = coverage(
            &[a("WEB01.Corp.Example", "")],
            &[g("1", "web01.corp.example", &[])],
        );
        assert_eq!(c.covered, 1);
        assert!(uncovered(&c).is_empty() && unknown(&c).is_empty());
        assert_eq!(c.percent_covered, 100.0);
    }

    #[test]
    fn short_name_matches_in_both_directions() {
        let c = coverage(&[a("web01", "")], &[g("1", "WEB01.corp.example", &[])]);
        assert_eq!(c.covered, 1);
        let c = coverage(&[a("web01.corp.example", "")], &[g("1", "Web01", &[])]);
        assert_eq!(c.covered, 1);
    }

    #[test]
    fn different_domains_do_not_match() {
        let c = coverage(
            &[a("web01.a.example", "")],
            &[g("1", "web01.b.example", &[])],
        );
        assert_eq!(c.covered, 0);
        assert_eq!(uncovered(&c), ["web01.a.example"]);
        assert_eq!(unknown(&c), ["1"]);
        assert_eq!(c.percent_covered, 0.0);
    }

    #[test]
    fn ip_match() {
        let c = coverage(
            &[a("cmdb-name", "10.0.0.5"), a("v6", "2001:DB8::5")],
            &[
                g("1", "DESKTOP-XYZ", &["192.168.0.1", "10.0.0.5/24"]),
                g("2", "other", &["2001:db8:0:0::5"]),
            ],
        );
        assert_eq!(c.covered, 2);
        // An empty or shared IP matches nothing.
        let c = coverage(
            &[a("x", ""), a("y", "127.0.0.1"), a("z", "fe80::1")],
            &[g("1", "q", &["", "127.0.0.1", "fe80::1%eth0"])],
        );
        assert_eq!(c.covered, 0);
    }

    #[test]
    fn one_to_one_and_preference_order() {
        // Exact matches are made before short-name ones, even though the
        // short-name asset sorts first.
        let c = coverage(
            &[a("web01", ""), a("web01.corp.example", "")],
            &[g("1", "web01.corp.example", &[])],
        );
        assert_eq!(c.covered, 1);
        assert_eq!(uncovered(&c), ["web01"]);

        let c = coverage(
            &[a("web01", ""), a("web01.corp.example", "")],
            &[g("1", "web01.corp.example", &[]), g("2", "web01", &[])],
        );
        assert_eq!(c.covered, 2);

        // An asset matched by name does not also take the IP match, and an
        // agent matched by name is not also matched by IP.
        let c = coverage(
            &[a("alpha", "10.0.0.1"), a("beta", "10.0.0.1")],
            &[
                g("1", "alpha", &["10.0.0.1"]),
                g("2", "gamma", &["10.0.0.1"]),
            ],
        );
        assert_eq!(c.covered, 2);
        let c = coverage(
            &[a("alpha", "10.0.0.1"), a("beta", "10.0.0.1")],
            &[g("1", "alpha", &["10.0.0.1"])],
        );
        assert_eq!(c.covered, 1);
        assert_eq!(uncovered(&c), ["beta"]);

        // Two agents for one asset: one matches, the other is reported.
        let mut old = g("old", "web01", &[]);
        old.stale = true;
        old.last_checkin = Some(5000);
        let c = coverage(&[a("web01", "")], &[old, g("new", "web01", &[])]);
        assert_eq!(c.covered, 1);
        assert_eq!(unknown(&c), ["old"]);
        assert_eq!(c.stale.len(), 1);

        // Among non-stale agents, the latest check-in wins.
        let mut late = g("late", "web01", &[]);
        late.last_checkin = Some(2000);
        let c = coverage(&[a("web01", "")], &[g("early", "web01", &[]), late]);
        assert_eq!(unknown(&c), ["early"]);

        // Two assets, one agent with a bare name: only one is covered.
        let c = coverage(
            &[a("web01.b.example", ""), a("web01.a.example", "")],
            &[g("1", "web01", &[])],
        );
        assert_eq!(c.covered, 1);
        assert_eq!(uncovered(&c), ["web01.b.example"]);
    }

    #[test]
    fn stale_sorting_and_counts() {
        let mut s1 = g("s1", "Zeta", &[]);
        s1.stale = true;
        let mut s2 = g("s2", "alpha", &[]);
        s2.stale = true;
        s2.last_checkin = None;
        let c = coverage(
            &[a("zeta", ""), a("Mid", ""), a("beta", ""), a("Alpha2", "")],
            &[s1, s2, g("x", "Omega", &[]), g("y", "delta", &[])],
        );
        assert_eq!((c.assets, c.agents, c.covered), (4, 4, 1));
        assert_eq!(uncovered(&c), ["Alpha2", "beta", "Mid"]);
        let names: Vec<&str> = c
            .agents_not_in_assets
            .iter()
            .map(|a| a.hostname.as_str())
            .collect();
        assert_eq!(names, ["alpha", "delta", "Omega"]);
        assert_eq!(
            c.stale,
            vec![
                AgentRef {
                    id: "s2".into(),
                    hostname: "alpha".into(),
                    last_checkin: None
                },
                AgentRef {
                    id: "s1".into(),
                    hostname: "Zeta".into(),
                    last_checkin: Some(1000)
                },
            ]
        );
        assert_eq!(c.percent_covered, 25.0);
    }

    #[test]
    fn no_assets_no_agents() {
        let c = coverage(&[], &[]);
        assert_eq!((c.assets, c.agents, c.covered), (0, 0, 0));
        assert_eq!(c.percent_covered, 0.0);
    }

    /// `cargo test --release -- --ignored --nocapture timing`
    #[test]
    #[ignore]
    fn timing_100k_by_100k() {
        use std::time::Instant;
        let n = 100_000;
        let mut csv = String::from("hostname,ip,owner,business_unit\n");
        for i in 0..n {
            csv.push_str(&format!(
                "host{i}.corp.example,10.{}.{}.{},owner{},unit{}\n",
                i >> 16,
                (i >> 8) & 255,
                i & 255,
                i % 97,
                i % 13
            ));
        }
        // Best and median of a few runs, wall clock and (on Linux) time
        // this thread spent on a CPU: the machine may be shared.
        fn on_cpu() -> Option<std::time::Duration> {
            let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
            let ns = s.split_whitespace().next()?.parse().ok()?;
            Some(std::time::Duration::from_nanos(ns))
        }
        type Times = (std::time::Duration, std::time::Duration, String);
        fn runs<T>(mut f: impl FnMut() -> T) -> (T, Times) {
            let mut wall = Vec::new();
            let mut cpu = Vec::new();
            let mut out = None;
            for _ in 0..5 {
                let (t, c) = (Instant::now(), on_cpu());
                out = Some(f());
                wall.push(t.elapsed());
                if let (Some(c0), Some(c1)) = (c, on_cpu()) {
                    cpu.push(c1 - c0);
                }
            }
            wall.sort();
            cpu.sort();
            let cpu = cpu
                .first()
                .map_or(String::new(), |c| format!(", on CPU best {c:?}"));
            (out.unwrap(), (wall[0], wall[2], cpu))
        }
        let (assets, (parse_min, parse_median, parse_cpu)) =
            runs(|| parse(csv.as_bytes(), &cols()).unwrap());
        assert_eq!(assets.len(), n);

        let agents: Vec<AgentHost> = (0..n)
            .map(|i| {
                let ip = format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255);
                let (hostname, ips) = match i % 4 {
                    0 => (format!("HOST{i}.corp.example"), vec![]),
                    1 => (format!("host{i}"), vec!["127.0.0.1".to_string()]),
                    2 => (format!("DESKTOP-{i}"), vec![ip, "fe80::1".to_string()]),
                    _ => (format!("host{i}.other.example"), vec!["192.0.2.1".into()]),
                };
                AgentHost {
                    id: format!("agent-{i}"),
                    hostname,
                    ips,
                    last_checkin: Some(i as i64),
                    stale: i % 10 == 0,
                }
            })
            .collect();
        let (c, (cov_min, cov_median, cov_cpu)) = runs(|| coverage(&assets, &agents));
        assert_eq!(c.covered, 75_000);
        assert_eq!(c.assets_without_agent.len(), 25_000);
        assert_eq!(c.agents_not_in_assets.len(), 25_000);
        assert_eq!(c.stale.len(), 10_000);
        println!(
            "parse {n} rows ({} bytes): best {parse_min:?}, median {parse_median:?}{parse_cpu}\n\
             coverage {n} assets x {n} agents: best {cov_min:?}, median {cov_median:?}{cov_cpu}",
            csv.len()
        );
    }

    // ----- properties ------------------------------------------------------

    fn check_result(r: &Result<Vec<Asset>, Vec<AssetError>>) {
        match r {
            Ok(assets) => {
                for w in assets.windows(2) {
                    assert!(w[0].line < w[1].line);
                }
                for a in assets {
                    assert!(check_hostname(&a.hostname).is_ok());
                    assert!(a.line >= 2);
                }
            }
            Err(errors) => {
                assert!(!errors.is_empty() && errors.len() <= MAX_ERRORS + 1);
                for (k, e) in errors.iter().enumerate() {
                    assert!(e.line >= 1 || (k == MAX_ERRORS && e.column.is_none()));
                    let _ = e.to_string();
                }
            }
        }
    }

    fn any_columns() -> impl Strategy<Value = Columns> {
        let name = prop::option::of(prop_oneof![
            Just("hostname".to_string()),
            Just("IP".to_string()),
            Just(" a ".to_string()),
            "[a-z;,\" ]{0,4}",
        ]);
        (name.clone(), name.clone(), name.clone(), name).prop_map(|(h, i, o, b)| Columns {
            hostname: h,
            ip: i,
            owner: o,
            business_unit: b,
        })
    }

    /// Bytes biased towards what the reader cares about.
    fn csvish_bytes() -> impl Strategy<Value = Vec<u8>> {
        let byte = prop_oneof![
            4 => prop::sample::select(b",;\"\r\n ab.-_1:".to_vec()),
            1 => any::<u8>(),
        ];
        (
            prop::sample::select(vec![
                &b""[..],
                b"hostname,ip\n",
                b"hostname;owner\r\n",
                b"\xEF\xBB\xBFhostname,a,IP\n",
                b"\"hostname\",\"ip\"\n",
            ]),
            prop::collection::vec(byte, 0..300),
        )
            .prop_map(|(head, body)| [head, &body[..]].concat())
    }

    #[derive(Debug, Clone)]
    struct Row {
        hostname: String,
        ip: String,
        owner: String,
        unit: String,
        notes: String,
    }

    fn row() -> impl Strategy<Value = Row> {
        let text = "[a-zA-Z0-9 ,;\"'\n\r\té€日]{0,12}";
        (
            "[a-zA-Z0-9_-]{1,12}(\\.[a-zA-Z0-9_-]{1,12}){0,3}",
            prop_oneof![
                Just(String::new()),
                any::<IpAddr>().prop_map(|i| i.to_string())
            ],
            text,
            text,
            text,
        )
            .prop_map(|(hostname, ip, owner, unit, notes)| Row {
                hostname,
                ip,
                owner,
                unit,
                notes,
            })
    }

    /// How a generated file is laid out.
    #[derive(Debug, Clone)]
    struct Layout {
        semicolon: bool,
        crlf: bool,
        bom: bool,
        final_newline: bool,
        /// Per value: (present, named by a flag rather than the default).
        roles: [(bool, bool); 4],
        notes: bool,
        order: Vec<usize>,
        quote_bits: Vec<bool>,
        case_bits: u32,
    }

    fn layout() -> impl Strategy<Value = Layout> {
        (
            any::<[bool; 5]>(),
            any::<[(bool, bool); 4]>(),
            Just((0..5).collect::<Vec<usize>>()).prop_shuffle(),
            prop::collection::vec(any::<bool>(), 64),
            any::<u32>(),
        )
            .prop_map(|(f, mut roles, order, quote_bits, case_bits)| {
                roles[0].0 = true; // the hostname column is always there
                Layout {
                    semicolon: f[0],
                    crlf: f[1],
                    bom: f[2],
                    final_newline: f[3],
                    notes: f[4],
                    roles,
                    order,
                    quote_bits,
                    case_bits,
                }
            })
    }

    /// Changes the case of letters and pads with spaces, driven by `bits`.
    fn mangle(name: &str, bits: u32) -> String {
        let s: String = name
            .chars()
            .enumerate()
            .map(|(k, c)| {
                if bits >> (k % 28) & 1 == 1 {
                    c.to_ascii_uppercase()
                } else {
                    c.to_ascii_lowercase()
                }
            })
            .collect();
        match bits >> 29 {
            0 => format!(" {s}"),
            1 => format!("{s}  "),
            _ => s,
        }
    }

    fn write_csv(rows: &[Row], lay: &Layout) -> (Vec<u8>, Columns, Vec<Asset>) {
        const DEFAULTS: [&str; 4] = ["hostname", "ip", "owner", "business_unit"];
        const CUSTOM: [&str; 4] = [
            "Computer Name",
            "IP Address",
            "Primary Owner",
            "Business Unit",
        ];
        let delim = if lay.semicolon { ';' } else { ',' };
        let eol = if lay.crlf { "\r\n" } else { "\n" };
        let mut c = Columns::default();
        let mut header = Vec::new(); // (slot, header name)
        for &slot in &lay.order {
            if slot == 4 {
                if lay.notes {
                    header.push((4, "Notes".to_string()));
                }
                continue;
            }
            let (present, flagged) = lay.roles[slot];
            if !present {
                continue;
            }
            let name = if flagged {
                let flag = Some(mangle(CUSTOM[slot], lay.case_bits.rotate_left(slot as u32)));
                match slot {
                    0 => c.hostname = flag,
                    1 => c.ip = flag,
                    2 => c.owner = flag,
                    _ => c.business_unit = flag,
                }
                CUSTOM[slot].to_string()
            } else {
                mangle(DEFAULTS[slot], lay.case_bits.rotate_right(slot as u32 + 3))
            };
            header.push((slot, name));
        }
        let mut k = 0;
        let mut field = |out: &mut String, s: &str| {
            let must = s.contains(delim) || s.contains(['"', '\r', '\n']);
            k += 1;
            if must || lay.quote_bits[k % lay.quote_bits.len()] {
                out.push('"');
                out.push_str(&s.replace('"', "\"\""));
                out.push('"');
            } else {
                out.push_str(s);
            }
        };
        let mut out = String::new();
        if lay.bom {
            out.push('\u{feff}');
        }
        for (n, (_, name)) in header.iter().enumerate() {
            if n > 0 {
                out.push(delim);
            }
            field(&mut out, name);
        }
        let mut expected = Vec::new();
        for (r, row) in rows.iter().enumerate() {
            out.push_str(eol);
            let line = 1 + physical_breaks(&out);
            for (n, (slot, _)) in header.iter().enumerate() {
                if n > 0 {
                    out.push(delim);
                }
                let v = match slot {
                    0 => &row.hostname,
                    1 => &row.ip,
                    2 => &row.owner,
                    3 => &row.unit,
                    _ => &row.notes,
                };
                field(&mut out, v);
            }
            let has = |slot: usize| lay.roles[slot].0;
            expected.push(Asset {
                hostname: row.hostname.clone(),
                ip: if has(1) {
                    row.ip.clone()
                } else {
                    String::new()
                },
                owner: if has(2) {
                    row.owner.trim().into()
                } else {
                    String::new()
                },
                business_unit: if has(3) {
                    row.unit.trim().into()
                } else {
                    String::new()
                },
                line,
            });
            if r + 1 == rows.len() && lay.final_newline {
                out.push_str(eol);
            }
        }
        (out.into_bytes(), c, expected)
    }

    /// Line breaks as a text editor counts them: LF, CRLF, lone CR.
    fn physical_breaks(s: &str) -> usize {
        let b = s.as_bytes();
        (0..b.len())
            .filter(|&k| b[k] == b'\n' || (b[k] == b'\r' && b.get(k + 1) != Some(&b'\n')))
            .count()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn parse_never_panics_on_arbitrary_bytes(
            bytes in prop::collection::vec(any::<u8>(), 0..400),
            c in any_columns(),
        ) {
            check_result(&parse(&bytes, &c));
        }

        #[test]
        fn parse_never_panics_on_csv_like_bytes(bytes in csvish_bytes(), c in any_columns()) {
            check_result(&parse(&bytes, &c));
            check_result(&parse(&bytes, &Columns::default()));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn written_assets_are_read_back(
            rows in prop::collection::vec(row(), 0..20),
            lay in layout(),
        ) {
            let mut seen = std::collections::HashSet::new();
            let rows: Vec<Row> = rows
                .into_iter()
                .filter(|r| seen.insert(r.hostname.to_ascii_lowercase()))
                .collect();
            let (bytes, c, expected) = write_csv(&rows, &lay);
            let got = parse(&bytes, &c);
            prop_assert_eq!(
                got,
                Ok(expected),
                "file: {:?}, columns: {:?}",
                String::from_utf8_lossy(&bytes),
                c
            );
        }
    }
}

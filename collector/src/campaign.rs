//! Campaign status: where a fleet stands against a ban with deadlines.
//!
//! A *campaign* is a ban with dates (for example DHS BOD 17-01: every
//! Kaspersky product banned, issued 2017-09-13, identify by 2017-10-13,
//! remove by 2017-12-12). Given the hosts, the episodes of banned products on
//! them, and the assets that have no agent, [`status`] works out which hosts
//! are affected, cleared, overdue or unknown, with a day-by-day burn-down;
//! [`render_html`] turns that into one self-contained HTML report for an
//! auditor or a directive's 30-day status report.
//!
//! The module is pure: no I/O, no clock (the caller passes `now`), no
//! database. All times are unix seconds, UTC.
//!
//! # Rules
//!
//! * An episode is *open* when its `to` is `None`. A host with an open
//!   episode is **affected**, whatever else is true of it; if it is also
//!   stale its last known state stands and its entry says `"stale": true`.
//! * An episode is *relevant* to the campaign when it was open at `issued` or
//!   started at or after `issued`. A host with relevant episodes, none open,
//!   that checks in normally, is **cleared** (`cleared_at` = latest `to`).
//!   Episodes that ended before the campaign was issued do not count.
//! * A host without an open episode whose state cannot be proven is
//!   **unknown**: `never_reported` (no check-in ever, checked first), then
//!   `stale`. This includes a stale host that had been cleared: it is listed
//!   as unknown (with its `cleared_at`), not as cleared. Assets from the asset
//!   list with no agent are unknown with state `no_agent`.
//! * **overdue** is the affected list once `now > remove_by` (the deadline is
//!   the exact instant given, normally 00:00 UTC of the remove-by date).
//! * Episodes whose `host_id` is not in `hosts` are not dropped: the host is
//!   reported with its id as hostname and an empty OS, and counted in
//!   `counts.hosts`; it is treated as checking in (its latest episode time
//!   stands for its last check-in), never as stale or never reported.
//! * Host ids are primary keys and expected to be unique. A repeated id does
//!   not panic: for a host with episodes or an unknown host the first entry
//!   stands and the repeats are ignored; repeats of other hosts are not
//!   looked for (to keep 100 000 hosts cheap) and only add to `counts.hosts`.
//! * An episode with `to < from` is read as `to == from`.
//! * `daily` is history: day by day, from the episodes alone. Staleness has
//!   no history, so a stale host that had been cleared counts as cleared in
//!   `daily` but is listed (and counted) as unknown today. When every host
//!   checks in and no episode is dated after `now`, the last day of `daily`
//!   equals `counts.affected` / `counts.cleared` (a property test checks it).
//! * `HostInfo::imported` does not enter the rules.
//! * Product states are compared case-insensitively, `running` above
//!   `installed` above `remnant`; any other state string is kept verbatim
//!   and ranks below `remnant` (such a host counts as affected but in none
//!   of the per-state counts).

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;

const DAY: i64 = 86_400;

/// The most days the [`CampaignStatus::daily`] series holds. When a campaign
/// is older than that, only the most recent `MAX_DAILY_DAYS` days (ending
/// today) are kept.
pub const MAX_DAILY_DAYS: usize = 3660;

/// 0000-01-01T00:00:00Z and 9999-12-31T23:59:59Z: the range RFC 3339 and
/// `YYYY-MM-DD` can express. Timestamps outside it are clamped when they are
/// formatted (they can only come from corrupt data).
const MIN_TS: i64 = -62_167_219_200;
const MAX_TS: i64 = 253_402_300_799;

// ---------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------

/// A ban with dates. All dates are unix seconds (UTC midnight of the dates).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Campaign {
    pub name: String,
    pub policy: String,
    pub issued: i64,
    pub identify_by: i64,
    pub remove_by: i64,
}

/// A host known to the collector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostInfo {
    pub id: String,
    pub hostname: String,
    pub os: String,
    pub last_checkin: Option<i64>,
    pub stale: bool,
    pub imported: bool,
}

/// Why a product was detected: a file, a service, a registry key...
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Evidence {
    pub kind: String,
    pub value: String,
    pub location: String,
}

/// One episode of a banned product on a host: found at `from`, gone at `to`
/// (None = still there). A host may have several episodes (found, removed,
/// found again) and several products.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Episode {
    pub host_id: String,
    pub product_id: String,
    pub product: String,
    pub vendor: String,
    /// Latest state in this episode: `running`, `installed` or `remnant`.
    pub state: String,
    pub version: String,
    pub from: i64,
    pub to: Option<i64>,
    pub evidence: Vec<Evidence>,
}

/// An asset in the organisation's asset list with no agent reporting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnknownAsset {
    pub hostname: String,
    pub owner: String,
    pub business_unit: String,
}

// ---------------------------------------------------------------------------
// Output (documented, stable JSON)
// ---------------------------------------------------------------------------

/// The campaign, with its dates also as `YYYY-MM-DD`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignInfo {
    pub name: String,
    pub policy: String,
    pub issued: i64,
    pub identify_by: i64,
    pub remove_by: i64,
    pub issued_date: String,
    pub identify_by_date: String,
    pub remove_by_date: String,
}

/// `identify` before `identify_by`, `remove` from then until `remove_by`
/// (inclusive), `overdue` after `remove_by`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Identify,
    Remove,
    Overdue,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Identify => "identify",
            Phase::Remove => "remove",
            Phase::Overdue => "overdue",
        }
    }
}

/// A banned product currently present on an affected host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AffectedProduct {
    pub product_id: String,
    pub product: String,
    pub vendor: String,
    pub state: String,
    pub version: String,
    /// RFC 3339: start of the open episode.
    pub since: String,
    pub evidence: Vec<Evidence>,
}

/// A host with at least one open episode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AffectedHost {
    pub id: String,
    pub hostname: String,
    pub os: String,
    /// Strongest state of its products: running > installed > remnant.
    pub state: String,
    pub products: Vec<AffectedProduct>,
    /// RFC 3339: earliest start of its open episodes.
    pub since: String,
    /// The host has stopped checking in: this is its last known state.
    pub stale: bool,
    /// RFC 3339, or null if the host never checked in.
    pub last_checkin: Option<String>,
}

/// A host that had a banned product during the campaign and has none now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClearedHost {
    pub id: String,
    pub hostname: String,
    pub os: String,
    /// Always `"cleared"`.
    pub state: String,
    /// RFC 3339: when the last of its episodes ended.
    pub cleared_at: String,
}

/// Why a host's status cannot be proven.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownState {
    /// Has checked in before, but not recently; no open episode.
    Stale,
    /// Known to the collector but never checked in.
    NeverReported,
    /// In the asset list, no agent at all.
    NoAgent,
}

impl UnknownState {
    pub fn as_str(self) -> &'static str {
        match self {
            UnknownState::Stale => "stale",
            UnknownState::NeverReported => "never_reported",
            UnknownState::NoAgent => "no_agent",
        }
    }
}

/// A host or asset whose status cannot be proven.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnknownHost {
    /// Empty for `no_agent` assets.
    pub id: String,
    pub hostname: String,
    /// Empty for `no_agent` assets.
    pub os: String,
    pub state: UnknownState,
    /// RFC 3339, or null if never checked in.
    pub last_checkin: Option<String>,
    /// From the asset list; empty for agent hosts.
    pub owner: String,
    /// From the asset list; empty for agent hosts.
    pub business_unit: String,
    /// RFC 3339 if the host had been seen cleared during the campaign before
    /// it went stale; null otherwise.
    pub cleared_at: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Hosts known to the collector (unseen assets are not included).
    pub hosts: usize,
    pub affected: usize,
    /// Affected hosts whose strongest state is `running`.
    pub running: usize,
    pub installed: usize,
    pub remnant: usize,
    pub cleared: usize,
    pub overdue: usize,
    /// Stale + never reported + no agent.
    pub unknown: usize,
}

/// One day of the burn-down.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayCount {
    /// Distinct hosts with an episode open at the end of the day.
    pub affected: usize,
    /// Distinct hosts that had a relevant episode by the end of the day and
    /// have none open at the end of the day.
    pub cleared: usize,
}

/// The result of [`status`]; its JSON form is a documented, stable output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignStatus {
    pub campaign: CampaignInfo,
    /// RFC 3339.
    pub generated_at: String,
    pub phase: Phase,
    /// Sorted by state strength (running first), then hostname, then id.
    pub affected: Vec<AffectedHost>,
    /// Sorted by hostname, then id.
    pub cleared: Vec<ClearedHost>,
    /// The affected hosts once `now > remove_by`; empty before.
    pub overdue: Vec<AffectedHost>,
    /// Stale, then never reported, then no agent; each by hostname.
    pub unknown: Vec<UnknownHost>,
    pub counts: Counts,
    /// `YYYY-MM-DD` → counts at the end of that UTC day, from the issue date
    /// to today inclusive. At most [`MAX_DAILY_DAYS`] days: for an older
    /// campaign only the most recent ones are kept. Empty if `now` is before
    /// the issue date.
    pub daily: BTreeMap<String, DayCount>,
}

// ---------------------------------------------------------------------------
// status
// ---------------------------------------------------------------------------

/// Where the fleet stands against campaign `c` at `now` (unix seconds).
///
/// Runs in O(hosts + episodes·log(episodes) + days); see the module docs for
/// the rules.
pub fn status(
    c: &Campaign,
    hosts: &[HostInfo],
    episodes: &[Episode],
    unseen_assets: &[UnknownAsset],
    now: i64,
) -> CampaignStatus {
    // Only the few hosts named by episodes are indexed; the (many) others
    // are looked up in that small map, which keeps this fast for 100 000
    // hosts.
    struct HostRef<'a> {
        id: &'a str,
        hostname: &'a str,
        os: &'a str,
        last_checkin: Option<i64>,
        stale: bool,
    }
    struct Slot<'a> {
        host: Option<HostRef<'a>>,
        episodes: Vec<&'a Episode>,
    }
    let mut slot_of: HashMap<&str, usize> = HashMap::new();
    let mut slots: Vec<Slot> = Vec::new();
    for e in episodes {
        let si = *slot_of.entry(e.host_id.as_str()).or_insert_with(|| {
            slots.push(Slot {
                host: None,
                episodes: Vec::new(),
            });
            slots.len() - 1
        });
        slots[si].episodes.push(e);
    }
    let mut unknown = Vec::new();
    let mut unknown_ids: HashSet<&str> = HashSet::new();
    let mut n_hosts = 0usize;
    for h in hosts {
        let r = HostRef {
            id: &h.id,
            hostname: &h.hostname,
            os: &h.os,
            last_checkin: h.last_checkin,
            stale: h.stale,
        };
        if let Some(&si) = slot_of.get(h.id.as_str()) {
            if slots[si].host.is_some() {
                continue; // repeated id: the first entry stands
            }
            slots[si].host = Some(r);
        } else if h.last_checkin.is_none() || h.stale {
            if !unknown_ids.insert(&h.id) {
                continue; // repeated id
            }
            unknown.push(unknown_host(r.id, r.hostname, r.os, r.last_checkin, None));
        }
        n_hosts += 1;
    }
    // Hosts only named by episodes: reported under their id, "checking in"
    // at their latest episode time.
    for (id, &si) in &slot_of {
        let slot = &mut slots[si];
        if slot.host.is_none() {
            let last = slot
                .episodes
                .iter()
                .map(|e| end_of(e).unwrap_or(e.from).max(e.from))
                .max();
            slot.host = Some(HostRef {
                id,
                hostname: id,
                os: "",
                last_checkin: last,
                stale: false,
            });
            n_hosts += 1;
        }
    }

    let phase = if now < c.identify_by {
        Phase::Identify
    } else if now > c.remove_by {
        Phase::Overdue
    } else {
        Phase::Remove
    };

    // Daily window, in day numbers (days since 1970-01-01), clamped to what
    // a date can show so that keys never collide.
    let min_day = MIN_TS.div_euclid(DAY);
    let max_day = MAX_TS.div_euclid(DAY);
    let issue_day = c.issued.div_euclid(DAY).clamp(min_day, max_day);
    let today = now.div_euclid(DAY).clamp(min_day, max_day);
    let (lo, n_days) = if today < issue_day {
        (issue_day, 0usize)
    } else {
        let lo = issue_day.max(today - (MAX_DAILY_DAYS as i64 - 1));
        (lo, (today - lo + 1) as usize)
    };
    let hi_day = lo + n_days as i64 - 1;
    let mut aff_diff = vec![0i64; n_days + 1];
    let mut clr_diff = vec![0i64; n_days + 1];
    // Adds `delta` over days [a, b] (inclusive) clipped to the window.
    let add = |diff: &mut [i64], a: i64, b: i64, delta: i64| {
        let a = a.max(lo);
        let b = b.min(hi_day);
        if n_days == 0 || a > b {
            return;
        }
        diff[(a - lo) as usize] += delta;
        diff[(b - lo) as usize + 1] -= delta;
    };

    let mut affected = Vec::new();
    let mut cleared = Vec::new();
    let mut intervals: Vec<(i64, i64)> = Vec::new();
    for slot in &slots {
        let Some(h) = &slot.host else { continue };
        let eps = &slot.episodes;
        let relevant: Vec<&Episode> = eps
            .iter()
            .copied()
            .filter(|e| is_relevant(e, c.issued))
            .collect();
        if relevant.is_empty() {
            // Only episodes that ended before the campaign: a clean host.
            if h.last_checkin.is_none() || h.stale {
                unknown.push(unknown_host(h.id, h.hostname, h.os, h.last_checkin, None));
            }
            continue;
        }

        // Burn-down: days on which an episode is open at end of day, and the
        // days from the first relevant episode on that are not.
        intervals.clear();
        let mut first_day = i64::MAX;
        for e in &relevant {
            let a = e.from.div_euclid(DAY);
            first_day = first_day.min(a);
            let b = match end_of(e) {
                None => i64::MAX,
                // Open at end of day d  ⇔  from <= eod(d) < to  ⇔  d < to/DAY.
                Some(to) => to.div_euclid(DAY) - 1,
            };
            if a <= b {
                intervals.push((a, b));
            }
        }
        intervals.sort_unstable();
        add(&mut clr_diff, first_day, i64::MAX, 1);
        let mut cur: Option<(i64, i64)> = None;
        for &(a, b) in &intervals {
            cur = match cur {
                Some((ca, cb)) if a <= cb.saturating_add(1) => Some((ca, cb.max(b))),
                Some((ca, cb)) => {
                    add(&mut aff_diff, ca, cb, 1);
                    add(&mut clr_diff, ca, cb, -1);
                    Some((a, b))
                }
                None => Some((a, b)),
            };
        }
        if let Some((ca, cb)) = cur {
            add(&mut aff_diff, ca, cb, 1);
            add(&mut clr_diff, ca, cb, -1);
        }

        // Current status.
        let open: Vec<&Episode> = relevant
            .iter()
            .copied()
            .filter(|e| e.to.is_none())
            .collect();
        if !open.is_empty() {
            affected.push(affected_host(
                h.id,
                h.hostname,
                h.os,
                h.stale,
                h.last_checkin,
                &open,
            ));
            continue;
        }
        let cleared_at = relevant
            .iter()
            .filter_map(|e| end_of(e))
            .max()
            .unwrap_or(c.issued);
        if h.last_checkin.is_none() || h.stale {
            unknown.push(unknown_host(
                h.id,
                h.hostname,
                h.os,
                h.last_checkin,
                Some(cleared_at),
            ));
        } else {
            cleared.push(ClearedHost {
                id: h.id.to_string(),
                hostname: h.hostname.to_string(),
                os: h.os.to_string(),
                state: "cleared".to_string(),
                cleared_at: rfc3339(cleared_at),
            });
        }
    }
    for a in unseen_assets {
        unknown.push(UnknownHost {
            id: String::new(),
            hostname: a.hostname.clone(),
            os: String::new(),
            state: UnknownState::NoAgent,
            last_checkin: None,
            owner: a.owner.clone(),
            business_unit: a.business_unit.clone(),
            cleared_at: None,
        });
    }

    affected.sort_by(|x: &AffectedHost, y: &AffectedHost| {
        rank(&y.state)
            .cmp(&rank(&x.state))
            .then_with(|| x.hostname.cmp(&y.hostname))
            .then_with(|| x.id.cmp(&y.id))
    });
    cleared.sort_by(|x, y| x.hostname.cmp(&y.hostname).then_with(|| x.id.cmp(&y.id)));
    unknown.sort_by(|x, y| {
        unknown_order(x.state)
            .cmp(&unknown_order(y.state))
            .then_with(|| x.hostname.cmp(&y.hostname))
            .then_with(|| x.id.cmp(&y.id))
    });
    let overdue = if phase == Phase::Overdue {
        affected.clone()
    } else {
        Vec::new()
    };

    let mut daily = BTreeMap::new();
    let (mut a_run, mut c_run) = (0i64, 0i64);
    for i in 0..n_days {
        a_run += aff_diff[i];
        c_run += clr_diff[i];
        daily.insert(
            date_string(lo + i as i64),
            DayCount {
                affected: a_run.max(0) as usize,
                cleared: c_run.max(0) as usize,
            },
        );
    }

    let counts = Counts {
        hosts: n_hosts,
        affected: affected.len(),
        running: affected.iter().filter(|h| rank(&h.state) == 3).count(),
        installed: affected.iter().filter(|h| rank(&h.state) == 2).count(),
        remnant: affected.iter().filter(|h| rank(&h.state) == 1).count(),
        cleared: cleared.len(),
        overdue: overdue.len(),
        unknown: unknown.len(),
    };

    CampaignStatus {
        campaign: CampaignInfo {
            name: c.name.clone(),
            policy: c.policy.clone(),
            issued: c.issued,
            identify_by: c.identify_by,
            remove_by: c.remove_by,
            issued_date: date_string(c.issued.div_euclid(DAY)),
            identify_by_date: date_string(c.identify_by.div_euclid(DAY)),
            remove_by_date: date_string(c.remove_by.div_euclid(DAY)),
        },
        generated_at: rfc3339(now),
        phase,
        affected,
        cleared,
        overdue,
        unknown,
        counts,
        daily,
    }
}

/// `to`, read as at least `from`.
fn end_of(e: &Episode) -> Option<i64> {
    e.to.map(|t| t.max(e.from))
}

/// Open at `issued`, or started at or after it.
fn is_relevant(e: &Episode, issued: i64) -> bool {
    e.from >= issued || end_of(e).is_none_or(|t| t > issued)
}

/// running 3 > installed 2 > remnant 1 > anything else 0.
fn rank(state: &str) -> u8 {
    if state.eq_ignore_ascii_case("running") {
        3
    } else if state.eq_ignore_ascii_case("installed") {
        2
    } else if state.eq_ignore_ascii_case("remnant") {
        1
    } else {
        0
    }
}

fn canonical_state(state: &str) -> String {
    match rank(state) {
        3 => "running".to_string(),
        2 => "installed".to_string(),
        1 => "remnant".to_string(),
        _ => state.to_string(),
    }
}

/// Stronger state first; among unrecognised ones, alphabetical.
fn stronger_first(a: &str, b: &str) -> std::cmp::Ordering {
    rank(b).cmp(&rank(a)).then_with(|| a.cmp(b))
}

fn unknown_order(s: UnknownState) -> u8 {
    match s {
        UnknownState::Stale => 0,
        UnknownState::NeverReported => 1,
        UnknownState::NoAgent => 2,
    }
}

fn unknown_host(
    id: &str,
    hostname: &str,
    os: &str,
    last_checkin: Option<i64>,
    cleared_at: Option<i64>,
) -> UnknownHost {
    UnknownHost {
        id: id.to_string(),
        hostname: hostname.to_string(),
        os: os.to_string(),
        state: if last_checkin.is_none() {
            UnknownState::NeverReported
        } else {
            UnknownState::Stale
        },
        last_checkin: last_checkin.map(rfc3339),
        owner: String::new(),
        business_unit: String::new(),
        cleared_at: cleared_at.map(rfc3339),
    }
}

fn affected_host(
    id: &str,
    hostname: &str,
    os: &str,
    stale: bool,
    last_checkin: Option<i64>,
    open: &[&Episode],
) -> AffectedHost {
    // One entry per product id; several open episodes of one product (which
    // should not happen) are merged: strongest state, earliest start, version
    // of the latest-started one, evidence united.
    let mut by_product: Vec<&Episode> = open.to_vec();
    by_product.sort_by(|a, b| a.product_id.cmp(&b.product_id).then(a.from.cmp(&b.from)));
    let mut products: Vec<(i64, AffectedProduct)> = Vec::new();
    let mut i = 0;
    while i < by_product.len() {
        let mut j = i;
        while j < by_product.len() && by_product[j].product_id == by_product[i].product_id {
            j += 1;
        }
        let group = &by_product[i..j];
        i = j;
        let first = group[0];
        let latest = group[group.len() - 1];
        let state = group
            .iter()
            .map(|e| e.state.as_str())
            .min_by(|a, b| stronger_first(a, b))
            .unwrap_or("");
        let mut evidence: Vec<Evidence> = Vec::new();
        for e in group {
            for ev in &e.evidence {
                if !evidence.contains(ev) {
                    evidence.push(ev.clone());
                }
            }
        }
        products.push((
            first.from,
            AffectedProduct {
                product_id: latest.product_id.clone(),
                product: latest.product.clone(),
                vendor: latest.vendor.clone(),
                state: canonical_state(state),
                version: latest.version.clone(),
                since: rfc3339(first.from),
                evidence,
            },
        ));
    }
    products.sort_by(|(_, a), (_, b)| {
        stronger_first(&a.state, &b.state)
            .then_with(|| a.product.cmp(&b.product))
            .then_with(|| a.product_id.cmp(&b.product_id))
    });
    let since = products.iter().map(|(f, _)| *f).min().unwrap_or(0);
    let state = products
        .iter()
        .map(|(_, p)| p.state.as_str())
        .min_by(|a, b| stronger_first(a, b))
        .unwrap_or("")
        .to_string();
    AffectedHost {
        id: id.to_string(),
        hostname: hostname.to_string(),
        os: os.to_string(),
        state,
        products: products.into_iter().map(|(_, p)| p).collect(),
        since: rfc3339(since),
        stale,
        last_checkin: last_checkin.map(rfc3339),
    }
}

// ---------------------------------------------------------------------------
// Calendar (proleptic Gregorian, UTC); checked against `time` in the tests.
// ---------------------------------------------------------------------------

/// (year, month, day) of a day number (days since 1970-01-01).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m as u32, d as u32)
}

/// Day number of (year, month, day).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DD` of a day number, clamped to years 0000..=9999.
fn date_string(day: i64) -> String {
    let day = day.clamp(MIN_TS.div_euclid(DAY), MAX_TS.div_euclid(DAY));
    let (y, m, d) = civil_from_days(day);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `YYYY-MM-DD` back to a day number.
fn parse_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let y: i64 = s.get(0..4)?.parse().ok()?;
    let m: u32 = s.get(5..7)?.parse().ok()?;
    let d: u32 = s.get(8..10)?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    Some(days_from_civil(y, m, d))
}

/// RFC 3339 in UTC (`2017-09-13T00:00:00Z`), clamped to years 0000..=9999.
fn rfc3339(ts: i64) -> String {
    let ts = ts.clamp(MIN_TS, MAX_TS);
    let secs = ts.rem_euclid(DAY);
    format!(
        "{}T{:02}:{:02}:{:02}Z",
        date_string(ts.div_euclid(DAY)),
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

// ---------------------------------------------------------------------------
// HTML report
// ---------------------------------------------------------------------------

/// HTML-escapes text for element content and quoted attribute values.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(ch),
        }
    }
    out
}

/// A CSS class for a state; data never reaches an attribute unescaped.
fn state_class(state: &str) -> &'static str {
    match rank(state) {
        3 => "st-running",
        2 => "st-installed",
        1 => "st-remnant",
        _ if state == "cleared" => "st-cleared",
        _ => "st-unknown",
    }
}

/// "2017-09-13T00:00:00Z" → "2017-09-13 00:00 UTC" for people.
pub(crate) fn human_time(rfc: &str) -> String {
    match (rfc.get(0..10), rfc.get(11..16)) {
        (Some(d), Some(t)) if rfc.len() == 20 && rfc.ends_with('Z') => format!("{d} {t} UTC"),
        _ => rfc.to_string(),
    }
}

/// Short state word and what it means.
fn unknown_label(s: UnknownState) -> (&'static str, &'static str) {
    match s {
        UnknownState::Stale => ("stale", "has stopped checking in"),
        UnknownState::NeverReported => ("never reported", "agent enrolled, no report yet"),
        UnknownState::NoAgent => ("no agent", "in the asset list only"),
    }
}

const CSS: &str = r#"
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  color: #1a1a1a; background: #fff; max-width: 62rem; margin: 2rem auto; padding: 0 1rem; line-height: 1.45; }
h1 { font-size: 1.7rem; margin: 0 0 .2rem; }
h2 { font-size: 1.25rem; margin: 2rem 0 .5rem; border-bottom: 2px solid #1a1a1a; padding-bottom: .15rem; }
h3 { font-size: 1.05rem; margin: 0 0 .3rem; }
.sub { color: #555; margin: 0 0 1rem; }
dl.dates { display: grid; grid-template-columns: max-content auto; gap: .2rem 1rem; margin: .5rem 0; }
dl.dates dt { font-weight: 600; }
dl.dates dd { margin: 0; }
table { border-collapse: collapse; width: 100%; margin: .5rem 0 1rem; font-size: .92rem; }
th, td { border: 1px solid #c4c4c4; padding: .3rem .5rem; text-align: left; vertical-align: top; }
th { background: #efefef; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.summary { width: auto; min-width: 28rem; }
table.summary td.num { font-weight: 600; min-width: 4rem; }
.state { font-weight: 600; padding: 0 .35em; border-radius: 3px; white-space: nowrap; }
.st-running { background: #fbd0d0; color: #7d0b0b; }
.st-installed { background: #fde2c0; color: #6b3a00; }
.st-remnant { background: #fff1a8; color: #4d4100; }
.st-cleared { background: #d3eed6; color: #0f5418; }
.st-unknown { background: #e2e2e2; color: #2a2a2a; }
.flag { font-size: .8rem; font-weight: 700; border: 1px solid currentColor; border-radius: 3px; padding: 0 .3em; margin-left: .4em; }
.flag.overdue { color: #a00; }
.flag.stale { color: #555; }
.host { border: 1px solid #c4c4c4; border-radius: 4px; padding: .6rem .8rem; margin: .8rem 0; }
.host p { margin: 0 0 .4rem; }
.host table { margin-bottom: 0; }
ul.evidence { margin: 0; padding-left: 1.1rem; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace; font-size: .85em; word-break: break-all; }
figure { margin: .5rem 0 1rem; }
figure svg { width: 100%; max-width: 760px; height: auto; display: block; }
figcaption { font-size: .85rem; color: #555; }
.note { color: #555; font-style: italic; }
td.t { white-space: nowrap; }
footer { border-top: 1px solid #c4c4c4; margin-top: 2.5rem; padding-top: .5rem; font-size: .85rem; color: #555; }
@page { margin: 15mm; }
@media print {
  body { margin: 0; max-width: none; font-size: 10pt; }
  h2 { break-after: avoid; }
  .host, figure, table.summary, tr { break-inside: avoid; }
  a { color: inherit; text-decoration: none; }
  * { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
}
"#;

/// One self-contained HTML5 page (inline CSS and SVG, no script, no external
/// reference) for an auditor or a directive's 30-day status report.
/// Every string that comes from data is HTML-escaped.
pub fn render_html(s: &CampaignStatus, catalog_version: &str) -> String {
    let c = &s.campaign;
    let mut o = String::with_capacity(16_384 + 1024 * (s.affected.len() + s.unknown.len()));
    let name = esc(&c.name);
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{name} — campaign status {gen}</title>\n<style>{CSS}</style>\n</head>\n<body>\n",
        gen = esc(s.generated_at.get(0..10).unwrap_or(&s.generated_at)),
    );
    let _ = write!(
        o,
        "<header>\n<h1>{name}</h1>\n<p class=\"sub\">Campaign status report — status as of {}</p>\n</header>\n<main>\n",
        esc(&human_time(&s.generated_at))
    );

    // What the campaign is.
    let now_day = s
        .generated_at
        .get(0..10)
        .and_then(parse_date)
        .unwrap_or(c.issued.div_euclid(DAY));
    let phase_text = match s.phase {
        Phase::Identify => format!(
            "<strong>Identify</strong>: organisations must find every affected host by {}; {} left.",
            esc(&c.identify_by_date),
            plural(c.identify_by.div_euclid(DAY) - now_day, "day")
        ),
        Phase::Remove => format!(
            "<strong>Remove</strong>: the identify-by date has passed; the banned products must be removed by {}; {} left.",
            esc(&c.remove_by_date),
            plural((c.remove_by.div_euclid(DAY) - now_day).max(0), "day")
        ),
        Phase::Overdue => format!(
            "<strong>Overdue</strong>: the remove-by date ({}) passed {} ago; every host still affected is out of compliance.",
            esc(&c.remove_by_date),
            plural((now_day - c.remove_by.div_euclid(DAY)).max(0), "day")
        ),
    };
    let _ = write!(
        o,
        "<section>\n<h2>The campaign</h2>\n<p>{policy}</p>\n<dl class=\"dates\">\n\
         <dt>Issued</dt><dd>{issued}</dd>\n<dt>Identify by</dt><dd>{ident}</dd>\n\
         <dt>Remove by</dt><dd>{remove}</dd>\n<dt>Phase</dt><dd>{phase_text}</dd>\n</dl>\n\
         <p>This report was produced by Muster, which inventories the security software \
         installed on an organisation's computers (<em>hosts</em>) through an agent on each \
         host. Every host falls in one of these states for this campaign: \
         <span class=\"state st-running\">running</span> — a banned product is installed and \
         its software is running; <span class=\"state st-installed\">installed</span> — a banned \
         product is installed but was not seen running; <span class=\"state st-remnant\">remnant</span> \
         — the product was uninstalled incompletely and leftovers (files, services, drivers or \
         registry entries) are still present, which does not count as removed; \
         <span class=\"state st-cleared\">cleared</span> — the host had a banned product during the \
         campaign and it is gone; <span class=\"state st-unknown\">unknown</span> — the host's \
         status cannot be proven, because it has stopped reporting (stale), has never reported, or \
         is in the asset list without an agent. Running, installed and remnant hosts are \
         <em>affected</em>; affected hosts after the remove-by date are <em>overdue</em>. A stale \
         host whose last report showed a banned product stays affected on that evidence. Hosts that \
         never had a banned product are not listed.</p>\n</section>\n",
        policy = esc(&c.policy),
        issued = esc(&c.issued_date),
        ident = esc(&c.identify_by_date),
        remove = esc(&c.remove_by_date),
    );

    // Summary.
    let k = &s.counts;
    let rows: [(&str, usize, &str); 8] = [
        ("Hosts inventoried", k.hosts, "hosts with a Muster agent"),
        ("Affected", k.affected, "a banned product is present"),
        ("— running", k.running, "affected, product running"),
        (
            "— installed",
            k.installed,
            "affected, product installed, not running",
        ),
        (
            "— remnant",
            k.remnant,
            "affected, leftovers of an incomplete removal",
        ),
        (
            "Cleared",
            k.cleared,
            "had a banned product during the campaign, none now",
        ),
        ("Overdue", k.overdue, "affected after the remove-by date"),
        (
            "Unknown",
            k.unknown,
            "status cannot be proven (incl. assets without agent)",
        ),
    ];
    o.push_str(
        "<section>\n<h2>Summary</h2>\n<table class=\"summary\">\n\
         <thead><tr><th>Status</th><th>Hosts</th><th>Meaning</th></tr></thead>\n<tbody>\n",
    );
    for (label, n, meaning) in rows {
        let _ = writeln!(
            o,
            "<tr><td>{label}</td><td class=\"num\">{n}</td><td>{meaning}</td></tr>"
        );
    }
    o.push_str("</tbody>\n</table>\n</section>\n");

    // Burn-down.
    o.push_str("<section>\n<h2>Burn-down</h2>\n");
    render_chart(&mut o, &s.daily, &s.campaign, "during the campaign");
    o.push_str("</section>\n");

    // Overdue.
    o.push_str("<section>\n<h2>Overdue hosts</h2>\n");
    if s.phase != Phase::Overdue {
        let _ = writeln!(
            o,
            "<p>The remove-by date ({}) has not passed; no host is overdue yet.</p>",
            esc(&c.remove_by_date)
        );
    } else if s.overdue.is_empty() {
        o.push_str("<p>None: no host is affected after the remove-by date.</p>\n");
    } else {
        let _ = writeln!(
            o,
            "<p>{} still affected after the remove-by date. Each is detailed, with the evidence \
             for every product, under <a href=\"#affected\">Affected hosts</a>.</p>",
            plural(s.overdue.len() as i64, "host")
        );
        o.push_str(
            "<table>\n<thead><tr><th>Host</th><th>State</th><th>Products</th><th>Affected since</th></tr></thead>\n<tbody>\n",
        );
        for (i, h) in s.overdue.iter().enumerate() {
            let products: Vec<String> = h
                .products
                .iter()
                .map(|p| format!("{} ({})", esc(&p.product), esc(&p.state)))
                .collect();
            let _ = writeln!(
                o,
                "<tr><td><a href=\"#host-{i}\">{}</a>{}</td><td><span class=\"state {}\">{}</span></td><td>{}</td><td class=\"t\">{}</td></tr>",
                esc(&h.hostname),
                if h.stale {
                    "<span class=\"flag stale\">STALE</span>"
                } else {
                    ""
                },
                state_class(&h.state),
                esc(&h.state),
                products.join("; "),
                esc(&human_time(&h.since)),
            );
        }
        o.push_str("</tbody>\n</table>\n");
    }
    o.push_str("</section>\n");

    // Affected, in full.
    o.push_str("<section id=\"affected\">\n<h2>Affected hosts</h2>\n");
    if s.affected.is_empty() {
        o.push_str("<p>None: no host has a banned product.</p>\n");
    }
    let overdue = s.phase == Phase::Overdue && !s.overdue.is_empty();
    for (i, h) in s.affected.iter().enumerate() {
        render_host(&mut o, h, i, overdue);
    }
    o.push_str("</section>\n");

    // Cleared.
    o.push_str("<section>\n<h2>Cleared hosts</h2>\n");
    if s.cleared.is_empty() {
        o.push_str("<p>None.</p>\n");
    } else {
        o.push_str(
            "<table>\n<thead><tr><th>Host</th><th>Host ID</th><th>OS</th><th>Cleared at</th></tr></thead>\n<tbody>\n",
        );
        for h in &s.cleared {
            let _ = writeln!(
                o,
                "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td class=\"t\">{}</td></tr>",
                esc(&h.hostname),
                esc(&h.id),
                esc(&h.os),
                esc(&human_time(&h.cleared_at)),
            );
        }
        o.push_str("</tbody>\n</table>\n");
    }
    o.push_str("</section>\n");

    // Unknown.
    o.push_str("<section>\n<h2>Unknown hosts</h2>\n");
    if s.unknown.is_empty() {
        o.push_str("<p>None: every host's status is proven.</p>\n");
    } else {
        o.push_str(
            "<p>These hosts may or may not have a banned product: they must be checked by other means.</p>\n\
             <table>\n<thead><tr><th>Host</th><th>Why unknown</th><th>Last check-in</th><th>Host ID</th>\
             <th>OS</th><th>Owner</th><th>Business unit</th></tr></thead>\n<tbody>\n",
        );
        for h in &s.unknown {
            let cleared = h
                .cleared_at
                .as_deref()
                .map(|t| format!("<br><small>was cleared {}</small>", esc(&human_time(t))))
                .unwrap_or_default();
            let _ = writeln!(
                o,
                "<tr><td>{}</td><td><span class=\"state st-unknown\">{}</span> {}{cleared}</td><td class=\"t\">{}</td>\
                 <td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&h.hostname),
                unknown_label(h.state).0,
                unknown_label(h.state).1,
                h.last_checkin
                    .as_deref()
                    .map(|t| esc(&human_time(t)))
                    .unwrap_or_else(|| "never".into()),
                esc(&h.id),
                esc(&h.os),
                esc(&h.owner),
                esc(&h.business_unit),
            );
        }
        o.push_str("</tbody>\n</table>\n");
    }
    o.push_str("</section>\n</main>\n");

    let _ = write!(
        o,
        "<footer>\n<p>Report generated {} ({}) by Muster. Product catalog version: <code>{}</code>.</p>\n</footer>\n</body>\n</html>\n",
        esc(&human_time(&s.generated_at)),
        esc(&s.generated_at),
        esc(catalog_version),
    );
    o
}

fn plural(n: i64, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

fn render_host(o: &mut String, h: &AffectedHost, i: usize, overdue: bool) {
    let _ = write!(
        o,
        "<div class=\"host\" id=\"host-{i}\">\n<h3>{} <span class=\"state {}\">{}</span>{}{}</h3>\n",
        esc(&h.hostname),
        state_class(&h.state),
        esc(&h.state),
        if overdue {
            "<span class=\"flag overdue\">OVERDUE</span>"
        } else {
            ""
        },
        if h.stale {
            "<span class=\"flag stale\">STALE</span>"
        } else {
            ""
        },
    );
    let _ = write!(
        o,
        "<p>Host ID <code>{}</code> · OS {} · affected since {}",
        esc(&h.id),
        if h.os.is_empty() {
            "unknown".to_string()
        } else {
            esc(&h.os)
        },
        esc(&human_time(&h.since)),
    );
    if h.stale {
        let _ = write!(
            o,
            " · <strong>stopped checking in</strong> (last check-in {}): this is its last known state",
            h.last_checkin
                .as_deref()
                .map(|t| esc(&human_time(t)))
                .unwrap_or_else(|| "never".into())
        );
    }
    o.push_str(
        "</p>\n<table>\n<thead><tr><th>Product</th><th>Vendor</th><th>Version</th><th>State</th>\
         <th>Since</th><th>Evidence (kind: value — location)</th></tr></thead>\n<tbody>\n",
    );
    for p in &h.products {
        let _ = write!(
            o,
            "<tr><td>{}<br><small><code>{}</code></small></td><td>{}</td><td>{}</td>\
             <td><span class=\"state {}\">{}</span></td><td class=\"t\">{}</td><td>",
            esc(&p.product),
            esc(&p.product_id),
            esc(&p.vendor),
            esc(&p.version),
            state_class(&p.state),
            esc(&p.state),
            esc(&human_time(&p.since)),
        );
        if p.evidence.is_empty() {
            o.push_str("<span class=\"note\">none recorded</span>");
        } else {
            o.push_str("<ul class=\"evidence\">");
            for e in &p.evidence {
                let _ = write!(
                    o,
                    "<li>{}: <code>{}</code> — <code>{}</code></li>",
                    esc(&e.kind),
                    esc(&e.value),
                    esc(&e.location)
                );
            }
            o.push_str("</ul>");
        }
        o.push_str("</td></tr>\n");
    }
    o.push_str("</tbody>\n</table>\n</div>\n");
}

/// Inline SVG burn-down: affected hosts per day as a filled step area,
/// cleared hosts as a step line, dashed markers at identify-by and remove-by
/// (when they fall in the days shown). `period` ends the caption's
/// "hosts cleared …".
pub(crate) fn render_chart(
    o: &mut String,
    daily: &BTreeMap<String, DayCount>,
    c: &CampaignInfo,
    period: &str,
) {
    let days: Vec<(&String, &DayCount)> = daily.iter().collect();
    let n = days.len();
    if n == 0 {
        o.push_str(
            "<p class=\"note\">No daily data: the campaign's issue date is after the date of this report.</p>\n",
        );
        return;
    }
    const W: f64 = 760.0;
    const H: f64 = 300.0;
    const ML: f64 = 56.0;
    const MR: f64 = 40.0;
    const MT: f64 = 34.0;
    const MB: f64 = 52.0;
    let pw = W - ML - MR;
    let ph = H - MT - MB;
    let w = pw / n as f64;
    let max = days
        .iter()
        .map(|(_, d)| d.affected.max(d.cleared))
        .max()
        .unwrap_or(0);
    let step = nice_step(max);
    let top = (max.div_ceil(step) * step).max(1);
    let y = |v: usize| MT + ph - (v as f64 / top as f64) * ph;
    let x = |i: usize| ML + i as f64 * w;
    let first_day = parse_date(days[0].0);
    let last = days[n - 1];

    let _ = write!(
        o,
        "<figure>\n<svg viewBox=\"0 0 {W} {H}\" width=\"{W}\" height=\"{H}\" role=\"img\" \
         aria-labelledby=\"chart-title chart-desc\" font-family=\"system-ui, sans-serif\" font-size=\"11\">\n\
         <title id=\"chart-title\">Affected and cleared hosts per day</title>\n\
         <desc id=\"chart-desc\">From {} to {}: {} affected and {} cleared on the last day; at most {} on any day.</desc>\n\
         <rect x=\"0\" y=\"0\" width=\"{W}\" height=\"{H}\" fill=\"#fff\"/>\n",
        esc(days[0].0),
        esc(last.0),
        last.1.affected,
        last.1.cleared,
        max
    );
    // Grid and y labels.
    let mut v = 0;
    while v <= top {
        let yy = y(v);
        let _ = writeln!(
            o,
            "<line x1=\"{ML}\" y1=\"{yy:.1}\" x2=\"{:.1}\" y2=\"{yy:.1}\" stroke=\"{}\" stroke-width=\"1\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#333\">{v}</text>",
            ML + pw,
            if v == 0 { "#333" } else { "#ddd" },
            ML - 6.0,
            yy + 4.0
        );
        v += step;
    }
    // Affected: filled step area.
    let mut path = format!("M{ML:.1},{:.1}", y(0));
    for (i, (_, d)) in days.iter().enumerate() {
        let yy = y(d.affected);
        let _ = write!(path, "L{:.1},{yy:.1}L{:.1},{yy:.1}", x(i), x(i + 1));
    }
    let _ = write!(path, "L{:.1},{:.1}Z", x(n), y(0));
    let _ = writeln!(
        o,
        "<path d=\"{path}\" fill=\"#d64545\" fill-opacity=\"0.35\" stroke=\"#b21f1f\" stroke-width=\"1.5\" stroke-linejoin=\"round\"/>"
    );
    // Cleared: step line.
    let mut path = String::new();
    for (i, (_, d)) in days.iter().enumerate() {
        let yy = y(d.cleared);
        let _ = write!(
            path,
            "{}{:.1},{yy:.1}L{:.1},{yy:.1}",
            if i == 0 { "M" } else { "L" },
            x(i),
            x(i + 1)
        );
    }
    let _ = writeln!(
        o,
        "<path d=\"{path}\" fill=\"none\" stroke=\"#1e7b34\" stroke-width=\"2\" stroke-dasharray=\"6 3\" stroke-linejoin=\"round\"/>"
    );
    if max == 0 {
        let _ = writeln!(
            o,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#555\">No affected or cleared hosts in this period</text>",
            ML + pw / 2.0,
            MT + ph / 2.0
        );
    }
    // X axis labels: up to 6 dates, evenly spaced, at the middle of their day.
    let labels = n.min(6);
    let mut shown: Vec<usize> = (0..labels)
        .map(|j| {
            if labels == 1 {
                0
            } else {
                (j * (n - 1) + (labels - 1) / 2) / (labels - 1)
            }
        })
        .collect();
    shown.dedup();
    for i in shown {
        let xx = x(i) + w / 2.0;
        let _ = writeln!(
            o,
            "<line x1=\"{xx:.1}\" y1=\"{:.1}\" x2=\"{xx:.1}\" y2=\"{:.1}\" stroke=\"#333\"/>\
             <text x=\"{xx:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#333\">{}</text>",
            MT + ph,
            MT + ph + 4.0,
            MT + ph + 16.0,
            esc(days[i].0)
        );
    }
    // Deadline markers.
    if let Some(first) = first_day {
        let marks = [
            ("identify-by", c.identify_by, MT - 20.0),
            ("remove-by", c.remove_by, MT - 8.0),
        ];
        for (label, ts, ty) in marks {
            let d = ts.div_euclid(DAY);
            if d < first || d > first + n as i64 - 1 {
                continue;
            }
            let xx = x((d - first) as usize);
            let (tx, anchor) = if xx > ML + pw * 0.75 {
                (xx - 3.0, "end")
            } else {
                (xx + 3.0, "start")
            };
            let _ = writeln!(
                o,
                "<line x1=\"{xx:.1}\" y1=\"{:.1}\" x2=\"{xx:.1}\" y2=\"{:.1}\" stroke=\"#222\" stroke-width=\"1.2\" stroke-dasharray=\"3 3\"/>\
                 <text x=\"{tx:.1}\" y=\"{ty:.1}\" text-anchor=\"{anchor}\" fill=\"#222\">{label} {}</text>",
                ty - 10.0,
                MT + ph,
                esc(&date_string(d))
            );
        }
    }
    // Legend.
    let ly = H - 12.0;
    let _ = writeln!(
        o,
        "<rect x=\"{ML}\" y=\"{:.1}\" width=\"14\" height=\"10\" fill=\"#d64545\" fill-opacity=\"0.35\" stroke=\"#b21f1f\"/>\
         <text x=\"{:.1}\" y=\"{ly:.1}\" fill=\"#333\">affected hosts (end of day)</text>\
         <line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#1e7b34\" stroke-width=\"2\" stroke-dasharray=\"6 3\"/>\
         <text x=\"{:.1}\" y=\"{ly:.1}\" fill=\"#333\">cleared hosts</text>",
        ly - 9.0,
        ML + 20.0,
        ML + 210.0,
        ly - 4.0,
        ML + 234.0,
        ly - 4.0,
        ML + 240.0,
    );
    let _ = writeln!(
        o,
        "</svg>\n<figcaption>Hosts with a banned product at the end of each day (red area) and hosts \
         cleared {period} (green dashed line), {} to {}; {}.</figcaption>\n</figure>",
        esc(days[0].0),
        esc(last.0),
        plural(n as i64, "day")
    );
}

/// A tick step of 1, 2 or 5 × 10^k giving about four intervals up to `max`.
fn nice_step(max: usize) -> usize {
    if max <= 4 {
        return 1;
    }
    let raw = max.div_ceil(4);
    let mut mag = 1usize;
    while mag.saturating_mul(10) <= raw {
        mag *= 10;
    }
    for f in [1, 2, 5, 10] {
        if f * mag >= raw {
            return f * mag;
        }
    }
    10 * mag
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Unix seconds of a UTC date and hour.
    fn ts(y: i64, m: u32, d: u32, hour: i64) -> i64 {
        days_from_civil(y, m, d) * DAY + hour * 3600
    }

    fn bod() -> Campaign {
        Campaign {
            name: "DHS BOD 17-01".into(),
            policy: "Binding Operational Directive 17-01: identify and remove all \
                     Kaspersky-branded products from federal information systems."
                .into(),
            issued: ts(2017, 9, 13, 0),
            identify_by: ts(2017, 10, 13, 0),
            remove_by: ts(2017, 12, 12, 0),
        }
    }

    fn host(id: &str, last_checkin: Option<i64>, stale: bool) -> HostInfo {
        HostInfo {
            id: format!("id-{id}"),
            hostname: id.into(),
            os: "Windows 10 Enterprise".into(),
            last_checkin,
            stale,
            imported: false,
        }
    }

    fn ep(host: &str, product: &str, state: &str, from: i64, to: Option<i64>) -> Episode {
        let (pid, name) = match product {
            "kes" => ("kaspersky.endpoint", "Kaspersky Endpoint Security"),
            "ksc" => (
                "kaspersky.netagent",
                "Kaspersky Security Center Network Agent",
            ),
            other => (other, other),
        };
        Episode {
            host_id: format!("id-{host}"),
            product_id: pid.into(),
            product: name.into(),
            vendor: "Kaspersky".into(),
            state: state.into(),
            version: "10.3.0.6294".into(),
            from,
            to,
            evidence: vec![Evidence {
                kind: "service".into(),
                value: "AVP".into(),
                location: r"HKLM\SYSTEM\CurrentControlSet\Services\AVP".into(),
            }],
        }
    }

    /// The BOD 17-01 fleet; "now" is 2017-12-20 12:00 UTC (overdue).
    fn fleet() -> (Vec<HostInfo>, Vec<Episode>, Vec<UnknownAsset>, i64) {
        let now = ts(2017, 12, 20, 12);
        let fresh = Some(ts(2017, 12, 20, 6));
        let hosts = vec![
            host("alpha", fresh, false),
            host("bravo", fresh, false),
            host("charlie", fresh, false),
            host("delta", Some(ts(2017, 10, 1, 0)), true),
            host("echo", Some(ts(2017, 9, 1, 0)), true),
            host("foxtrot", None, false),
            host("golf", fresh, false),
            host("hotel", fresh, false),
            host("juliet", Some(ts(2017, 11, 1, 0)), true),
        ];
        let episodes = vec![
            // Found before issue, removed during the campaign.
            ep(
                "alpha",
                "kes",
                "running",
                ts(2017, 6, 1, 9),
                Some(ts(2017, 11, 2, 15)),
            ),
            // Removed, then found again (plus a second product).
            ep(
                "bravo",
                "kes",
                "installed",
                ts(2017, 9, 20, 10),
                Some(ts(2017, 10, 20, 10)),
            ),
            ep("bravo", "kes", "running", ts(2017, 11, 15, 8), None),
            ep("bravo", "ksc", "installed", ts(2017, 11, 16, 8), None),
            // Incomplete uninstall: leftovers.
            ep("charlie", "kes", "remnant", ts(2017, 8, 1, 0), None),
            // Stale, last seen with the product.
            ep("delta", "kes", "installed", ts(2017, 9, 14, 12), None),
            // Removed before the campaign: not part of it.
            ep(
                "hotel",
                "kes",
                "running",
                ts(2017, 5, 1, 0),
                Some(ts(2017, 6, 1, 0)),
            ),
            // Cleared, then went stale.
            ep(
                "juliet",
                "kes",
                "installed",
                ts(2017, 9, 15, 0),
                Some(ts(2017, 10, 5, 10)),
            ),
        ];
        let assets = vec![UnknownAsset {
            hostname: "india".into(),
            owner: "J. Doe".into(),
            business_unit: "Finance".into(),
        }];
        (hosts, episodes, assets, now)
    }

    fn bod_status() -> CampaignStatus {
        let (h, e, a, now) = fleet();
        status(&bod(), &h, &e, &a, now)
    }

    fn names<T>(v: &[T], f: impl Fn(&T) -> &str) -> Vec<String> {
        v.iter().map(|x| f(x).to_string()).collect()
    }

    #[test]
    fn bod_example_lists_and_counts() {
        let s = bod_status();
        assert_eq!(s.phase, Phase::Overdue);
        assert_eq!(s.generated_at, "2017-12-20T12:00:00Z");
        assert_eq!(s.campaign.issued_date, "2017-09-13");
        assert_eq!(s.campaign.identify_by_date, "2017-10-13");
        assert_eq!(s.campaign.remove_by_date, "2017-12-12");

        // Affected: by strength, then hostname.
        assert_eq!(
            names(&s.affected, |h| &h.hostname),
            ["bravo", "delta", "charlie"]
        );
        let bravo = &s.affected[0];
        assert_eq!(bravo.state, "running");
        assert_eq!(
            bravo.since, "2017-11-15T08:00:00Z",
            "since the re-infection"
        );
        assert_eq!(bravo.products.len(), 2);
        assert_eq!(bravo.products[0].product_id, "kaspersky.endpoint");
        assert_eq!(bravo.products[0].state, "running");
        assert_eq!(bravo.products[1].state, "installed");
        assert_eq!(bravo.products[0].evidence[0].value, "AVP");
        assert!(!bravo.stale);
        let delta = &s.affected[1];
        assert_eq!(delta.state, "installed");
        assert!(delta.stale, "stale host with an open episode is flagged");
        assert_eq!(delta.last_checkin.as_deref(), Some("2017-10-01T00:00:00Z"));
        let charlie = &s.affected[2];
        assert_eq!(charlie.state, "remnant");
        assert_eq!(charlie.since, "2017-08-01T00:00:00Z");

        // Overdue = affected after remove-by.
        assert_eq!(s.overdue, s.affected);

        // Cleared: alpha only (juliet is stale → unknown; hotel pre-dates).
        assert_eq!(names(&s.cleared, |h| &h.hostname), ["alpha"]);
        assert_eq!(s.cleared[0].state, "cleared");
        assert_eq!(s.cleared[0].cleared_at, "2017-11-02T15:00:00Z");

        // Unknown: stale, never reported, no agent.
        let u: Vec<(String, UnknownState)> = s
            .unknown
            .iter()
            .map(|h| (h.hostname.clone(), h.state))
            .collect();
        assert_eq!(
            u,
            [
                ("echo".to_string(), UnknownState::Stale),
                ("juliet".to_string(), UnknownState::Stale),
                ("foxtrot".to_string(), UnknownState::NeverReported),
                ("india".to_string(), UnknownState::NoAgent),
            ]
        );
        assert_eq!(
            s.unknown[0].last_checkin.as_deref(),
            Some("2017-09-01T00:00:00Z")
        );
        assert_eq!(
            s.unknown[1].cleared_at.as_deref(),
            Some("2017-10-05T10:00:00Z")
        );
        assert_eq!(s.unknown[2].last_checkin, None);
        let india = &s.unknown[3];
        assert_eq!((india.id.as_str(), india.owner.as_str()), ("", "J. Doe"));
        assert_eq!(india.business_unit, "Finance");

        assert_eq!(
            s.counts,
            Counts {
                hosts: 9,
                affected: 3,
                running: 1,
                installed: 1,
                remnant: 1,
                cleared: 1,
                overdue: 3,
                unknown: 4,
            }
        );
    }

    #[test]
    fn bod_example_daily() {
        let s = bod_status();
        // 2017-09-13 ..= 2017-12-20.
        assert_eq!(s.daily.len(), 18 + 31 + 30 + 20);
        assert_eq!(
            s.daily.keys().next().map(String::as_str),
            Some("2017-09-13")
        );
        assert_eq!(
            s.daily.keys().last().map(String::as_str),
            Some("2017-12-20")
        );
        let day = |d: &str| {
            let c = s.daily[d];
            (c.affected, c.cleared)
        };
        // Issue day: alpha and charlie (both found before issue).
        assert_eq!(day("2017-09-13"), (2, 0));
        assert_eq!(day("2017-09-14"), (3, 0)); // + delta
        assert_eq!(day("2017-09-20"), (5, 0)); // + juliet, bravo
        assert_eq!(day("2017-10-04"), (5, 0));
        assert_eq!(day("2017-10-05"), (4, 1)); // juliet removed
        assert_eq!(day("2017-10-20"), (3, 2)); // bravo removed
        assert_eq!(day("2017-11-02"), (2, 3)); // alpha removed
        assert_eq!(day("2017-11-14"), (2, 3));
        assert_eq!(day("2017-11-15"), (3, 2)); // bravo re-infected
        assert_eq!(day("2017-12-20"), (3, 2)); // juliet still counts as cleared here
    }

    #[test]
    fn phase_boundaries() {
        let c = bod();
        let phase = |now| status(&c, &[], &[], &[], now).phase;
        assert_eq!(phase(c.issued - 1), Phase::Identify);
        assert_eq!(phase(c.issued), Phase::Identify);
        assert_eq!(phase(c.identify_by - 1), Phase::Identify);
        assert_eq!(phase(c.identify_by), Phase::Remove);
        assert_eq!(phase(c.remove_by - 1), Phase::Remove);
        assert_eq!(phase(c.remove_by), Phase::Remove);
        assert_eq!(phase(c.remove_by + 1), Phase::Overdue);

        let (h, e, a, _) = fleet();
        let at = |now| status(&c, &h, &e, &a, now);
        assert!(at(c.remove_by).overdue.is_empty());
        assert_eq!(at(c.remove_by).counts.overdue, 0);
        assert_eq!(at(c.remove_by + 1).counts.overdue, 3);
        assert_eq!(
            serde_json::to_value(at(c.issued).phase).unwrap(),
            serde_json::json!("identify")
        );
    }

    #[test]
    fn end_of_day_boundaries() {
        let c = bod();
        let d13 = ts(2017, 9, 13, 0);
        let d14 = ts(2017, 9, 14, 0);
        let d15 = ts(2017, 9, 15, 0);
        let hosts = vec![
            host("a", Some(d15), false),
            host("b", Some(d15), false),
            host("c", Some(d15), false),
        ];
        let eps = vec![
            // Ends exactly at the next midnight: open at the end of the 13th.
            ep("a", "kes", "running", d13, Some(d14)),
            // Ends one second before: closed at the end of the 13th.
            ep("b", "kes", "running", d13, Some(d14 - 1)),
            // Starts in the last second of the 14th.
            ep("c", "kes", "running", d15 - 1, None),
        ];
        let s = status(&c, &hosts, &eps, &[], d15 + 3600);
        let day = |d: &str| (s.daily[d].affected, s.daily[d].cleared);
        assert_eq!(day("2017-09-13"), (1, 1));
        assert_eq!(day("2017-09-14"), (1, 2));
        assert_eq!(day("2017-09-15"), (1, 2));
    }

    #[test]
    fn episode_open_at_issue_counts_and_earlier_one_does_not() {
        let c = bod();
        let now = ts(2017, 9, 20, 0);
        let hosts = vec![host("a", Some(now), false), host("b", Some(now), false)];
        let eps = vec![
            // Open across the issue instant, closed later: cleared.
            ep("a", "kes", "running", c.issued - 10, Some(c.issued + 10)),
            // Closed exactly at the issue instant: not part of the campaign.
            ep("b", "kes", "running", c.issued - 10, Some(c.issued)),
        ];
        let s = status(&c, &hosts, &eps, &[], now);
        assert_eq!(names(&s.cleared, |h| &h.hostname), ["a"]);
        assert_eq!(
            s.daily["2017-09-13"],
            DayCount {
                affected: 0,
                cleared: 1
            }
        );
    }

    #[test]
    fn orphan_episodes_and_odd_states_are_kept() {
        let c = bod();
        let now = ts(2017, 10, 1, 0);
        let mut e1 = ep("ghost", "kes", "RUNNING", ts(2017, 9, 20, 0), None);
        e1.evidence.push(e1.evidence[0].clone()); // duplicate evidence is merged
        let e2 = ep("ghost", "kes", "weird", ts(2017, 9, 21, 0), None);
        let s = status(&c, &[], &[e1, e2], &[], now);
        assert_eq!(s.counts.hosts, 1);
        assert_eq!(s.affected.len(), 1);
        let h = &s.affected[0];
        assert_eq!(
            (h.id.as_str(), h.hostname.as_str()),
            ("id-ghost", "id-ghost")
        );
        assert_eq!(h.state, "running");
        assert_eq!(h.products.len(), 1, "one entry per product id");
        assert_eq!(h.products[0].evidence.len(), 1);
        assert_eq!(h.since, "2017-09-20T00:00:00Z");
        assert_eq!(s.counts.running, 1);
    }

    #[test]
    fn daily_is_capped_and_empty_before_issue() {
        let c = bod();
        let s = status(&c, &[], &[], &[], ts(2040, 1, 1, 0));
        assert_eq!(s.daily.len(), MAX_DAILY_DAYS);
        assert_eq!(
            s.daily.keys().last().map(String::as_str),
            Some("2040-01-01")
        );
        let s = status(&c, &[], &[], &[], c.issued - 1);
        assert!(s.daily.is_empty());
        let s = status(&c, &[], &[], &[], c.issued + 5);
        assert_eq!(s.daily.len(), 1);
    }

    #[test]
    fn json_shape() {
        let s = bod_status();
        let v = serde_json::to_value(&s).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let mut want = [
            "campaign",
            "generated_at",
            "phase",
            "affected",
            "cleared",
            "overdue",
            "unknown",
            "counts",
            "daily",
        ];
        want.sort();
        assert_eq!(keys, want);
        assert_eq!(v["phase"], "overdue");
        assert_eq!(v["campaign"]["remove_by_date"], "2017-12-12");
        assert_eq!(v["campaign"]["issued"], 1_505_260_800);
        assert_eq!(v["affected"][1]["stale"], true);
        assert_eq!(
            v["affected"][0]["products"][0]["evidence"][0]["kind"],
            "service"
        );
        assert_eq!(v["unknown"][2]["state"], "never_reported");
        assert_eq!(v["unknown"][3]["state"], "no_agent");
        assert_eq!(v["counts"]["remnant"], 1);
        assert_eq!(v["daily"]["2017-11-15"]["affected"], 3);
        let back: CampaignStatus = serde_json::from_value(v).unwrap();
        assert_eq!(back, s);
    }

    // --- HTML ---------------------------------------------------------------

    const TAGS: &[&str] = &[
        "html",
        "head",
        "meta",
        "title",
        "style",
        "body",
        "header",
        "main",
        "section",
        "footer",
        "h1",
        "h2",
        "h3",
        "p",
        "dl",
        "dt",
        "dd",
        "table",
        "thead",
        "tbody",
        "tr",
        "th",
        "td",
        "ul",
        "li",
        "code",
        "span",
        "strong",
        "em",
        "small",
        "br",
        "a",
        "div",
        "figure",
        "figcaption",
        "svg",
        "desc",
        "line",
        "path",
        "text",
        "rect",
    ];

    /// Every `<` opens a tag we emit; `<` and `>` balance; no external
    /// reference of any kind.
    fn check_html(html: &str) {
        assert!(html.starts_with("<!DOCTYPE html>"));
        for (i, _) in html.match_indices('<').skip(1) {
            let rest = &html[i + 1..];
            let rest = rest.strip_prefix('/').unwrap_or(rest);
            let name: String = rest
                .chars()
                .take_while(char::is_ascii_alphanumeric)
                .collect();
            assert!(
                TAGS.contains(&name.as_str()),
                "unexpected `<{name}` at {i}: {}",
                &html[i..(i + 60).min(html.len())]
            );
        }
        assert_eq!(html.matches('<').count(), html.matches('>').count());
        let lower = html.to_ascii_lowercase();
        assert!(!lower.contains("<script"));
        // Inside every tag (data never contains a raw `<`, so these are all
        // ours): no fetching attribute, links only to fragments of the page.
        for (i, _) in lower.match_indices('<') {
            let tag = &lower[i..i + lower[i..].find('>').unwrap()];
            for bad in [
                "src=", "url(", "http:", "https:", "xlink:", "action=", "srcset=",
            ] {
                assert!(!tag.contains(bad), "{bad} in {tag}");
            }
            if let Some(h) = tag.find("href=") {
                assert!(tag[h + 5..].starts_with("\"#"), "non-local href in {tag}");
            }
        }
        // The stylesheet loads nothing.
        let css = &lower[lower.find("<style>").unwrap()..lower.find("</style>").unwrap()];
        for bad in ["url(", "@import", "@font-face", "http"] {
            assert!(!css.contains(bad), "{bad} in css");
        }
    }

    #[test]
    fn render_bod_report() {
        let s = bod_status();
        let html = render_html(&s, "2024.06.1");
        check_html(&html);
        assert!(html.contains("<svg"));
        for name in [
            "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "india",
        ] {
            assert!(html.contains(name), "{name}");
        }
        assert!(!html.contains(">golf<"), "clean hosts are not listed");
        assert!(html.contains("<td>Affected</td><td class=\"num\">3</td>"));
        assert!(html.contains("<td>Unknown</td><td class=\"num\">4</td>"));
        assert!(html.contains("<td>Hosts inventoried</td><td class=\"num\">9</td>"));
        assert!(html.contains("2017-09-13") && html.contains("2017-10-13"));
        assert!(html.contains("identify-by 2017-10-13") && html.contains("remove-by 2017-12-12"));
        assert!(html.contains("OVERDUE") && html.contains("STALE"));
        assert!(html.contains(r"HKLM\SYSTEM\CurrentControlSet\Services\AVP"));
        assert!(html.contains("2024.06.1") && html.contains("2017-12-20T12:00:00Z"));
        assert!(html.contains("@media print"));
        assert!(!html.contains("http://") && !html.contains("https://"));
    }

    #[test]
    fn render_escapes_hostile_data() {
        let c = Campaign {
            name: "<i>BOD</i> & \"x\"".into(),
            policy: "<b>policy</b>".into(),
            ..bod()
        };
        let now = ts(2017, 12, 20, 0);
        let mut h = host("<script>alert(1)</script> &", Some(now), true);
        h.id = "id\"><script>".into();
        h.os = "<os>".into();
        let mut e = ep("x", "<prod>", "running", ts(2017, 9, 20, 0), None);
        e.host_id = h.id.clone();
        e.vendor = "<v>".into();
        e.version = "1<2".into();
        e.evidence = vec![Evidence {
            kind: "<k>".into(),
            value: "\"'&<>".into(),
            location: "C:\\<dir>&'".into(),
        }];
        let asset = UnknownAsset {
            hostname: "<img src=x onerror=alert(1)>".into(),
            owner: "O'Brien & <Co>".into(),
            business_unit: "\"BU\"".into(),
        };
        let s = status(&c, &[h], &[e], &[asset], now);
        let html = render_html(&s, "<cat>&");
        check_html(&html);
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp;"));
        assert!(html.contains("&quot;&#39;&amp;&lt;&gt;"));
        assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"));
        assert!(html.contains("O&#39;Brien &amp; &lt;Co&gt;"));
        assert!(html.contains("&lt;i&gt;BOD&lt;/i&gt; &amp; &quot;x&quot;"));
        assert!(html.contains("&lt;cat&gt;&amp;"));
        assert!(html.contains("1&lt;2"));
    }

    #[test]
    fn render_edge_cases() {
        let c = bod();
        // No data at all, before the campaign starts.
        let s = status(&c, &[], &[], &[], c.issued - DAY);
        let html = render_html(&s, "");
        check_html(&html);
        assert!(html.contains("No daily data"));
        // One day, all zero.
        let s = status(&c, &[], &[], &[], c.issued + 60);
        assert_eq!(s.daily.len(), 1);
        let html = render_html(&s, "1");
        check_html(&html);
        assert!(html.contains("<svg") && html.contains("No affected or cleared hosts"));
        assert!(!html.contains("identify-by 2017"), "marker outside range");
        // 1000 days, all zero.
        let s = status(&c, &[], &[], &[], c.issued + 999 * DAY);
        assert_eq!(s.daily.len(), 1000);
        let html = render_html(&s, "1");
        check_html(&html);
        assert!(html.contains("identify-by 2017-10-13"));
        // 1000 days with data.
        let (h, e, a, _) = fleet();
        let s = status(&c, &h, &e, &a, c.issued + 999 * DAY);
        check_html(&render_html(&s, "1"));
    }

    #[test]
    fn nice_steps() {
        assert_eq!(nice_step(0), 1);
        assert_eq!(nice_step(4), 1);
        assert_eq!(nice_step(5), 2);
        assert_eq!(nice_step(17), 5);
        assert_eq!(nice_step(100), 50);
        assert_eq!(nice_step(100_000), 50_000);
        assert_eq!(nice_step(usize::MAX), nice_step(usize::MAX));
    }

    // --- properties ---------------------------------------------------------

    const STATES: &[&str] = &["running", "installed", "remnant", "Running", "weird", ""];

    fn arb_case(
        span: i64,
    ) -> impl Strategy<
        Value = (
            Campaign,
            Vec<HostInfo>,
            Vec<Episode>,
            Vec<UnknownAsset>,
            i64,
        ),
    > {
        let base = 1_500_000_000i64;
        let t = move || (-span..span).prop_map(move |o| base + o);
        let host_s = (0usize..15, proptest::option::of(t()), any::<bool>());
        let ep_s = (
            0usize..20,
            0usize..3,
            0usize..STATES.len(),
            t(),
            proptest::option::of(-DAY..span),
        );
        (
            (t(), 0..span / 4, 0..span / 4),
            proptest::collection::vec(host_s, 0..15),
            proptest::collection::vec(ep_s, 0..40),
            0usize..3,
            t(),
        )
            .prop_map(move |((issued, a, b), hs, es, n_assets, now)| {
                let c = Campaign {
                    name: "c".into(),
                    policy: "p".into(),
                    issued,
                    identify_by: issued + a,
                    remove_by: issued + a + b,
                };
                let hosts = hs
                    .into_iter()
                    .map(|(i, last, stale)| HostInfo {
                        id: format!("h{i}"),
                        hostname: format!("host{i}"),
                        os: String::new(),
                        last_checkin: last,
                        stale,
                        imported: false,
                    })
                    .collect();
                let eps = es
                    .into_iter()
                    .map(|(h, p, st, from, dur)| Episode {
                        host_id: format!("h{h}"),
                        product_id: format!("p{p}"),
                        product: format!("P{p}"),
                        vendor: "v".into(),
                        state: STATES[st].into(),
                        version: String::new(),
                        from,
                        to: dur.map(|d| from + d),
                        evidence: vec![],
                    })
                    .collect();
                let assets = (0..n_assets)
                    .map(|i| UnknownAsset {
                        hostname: format!("asset{i}"),
                        owner: String::new(),
                        business_unit: String::new(),
                    })
                    .collect();
                (c, hosts, eps, assets, now)
            })
    }

    fn check_invariants(
        c: &Campaign,
        hosts: &[HostInfo],
        eps: &[Episode],
        assets: &[UnknownAsset],
        now: i64,
    ) -> CampaignStatus {
        let s = status(c, hosts, eps, assets, now);
        let ever: std::collections::HashSet<&str> =
            eps.iter().map(|e| e.host_id.as_str()).collect();
        assert!(s.daily.len() <= MAX_DAILY_DAYS);
        for (d, n) in &s.daily {
            assert!(
                n.affected + n.cleared <= ever.len(),
                "{d}: {n:?} > {}",
                ever.len()
            );
        }
        let k = &s.counts;
        assert_eq!(k.affected, s.affected.len());
        assert!(k.running + k.installed + k.remnant <= k.affected);
        assert!(k.affected + k.cleared + k.unknown <= k.hosts + assets.len());
        assert!(s.overdue.is_empty() || s.overdue == s.affected);
        s
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn status_never_panics_and_bounds_hold((c, hosts, eps, assets, now) in arb_case(400 * DAY)) {
            let s = check_invariants(&c, &hosts, &eps, &assets, now);
            check_html(&render_html(&s, "v"));
        }

        #[test]
        fn last_day_matches_counts_for_reporting_hosts(
            (c, hosts, eps, _, now) in arb_case(200 * DAY)
        ) {
            // Every host fresh, nothing recorded after `now`.
            let hosts: Vec<HostInfo> = hosts
                .into_iter()
                .map(|h| HostInfo { last_checkin: Some(now), stale: false, ..h })
                .collect();
            let eps: Vec<Episode> = eps
                .into_iter()
                .filter(|e| e.from <= now && e.to.is_none_or(|t| t <= now))
                .collect();
            let s = check_invariants(&c, &hosts, &eps, &[], now);
            if let Some((_, last)) = s.daily.iter().last() {
                prop_assert_eq!(last.affected, s.counts.affected);
                prop_assert_eq!(last.cleared, s.counts.cleared);
            }
        }

        #[test]
        fn status_never_panics_on_extreme_times(
            times in proptest::collection::vec(any::<i64>(), 8),
            to in proptest::option::of(any::<i64>()),
        ) {
            let c = Campaign {
                name: String::new(),
                policy: String::new(),
                issued: times[0],
                identify_by: times[1],
                remove_by: times[2],
            };
            let hosts = vec![HostInfo {
                id: "h".into(),
                hostname: "h".into(),
                os: String::new(),
                last_checkin: Some(times[3]),
                stale: false,
                imported: false,
            }];
            let eps = vec![
                Episode {
                    host_id: "h".into(),
                    product_id: "p".into(),
                    product: "p".into(),
                    vendor: String::new(),
                    state: "running".into(),
                    version: String::new(),
                    from: times[4],
                    to,
                    evidence: vec![],
                },
                Episode {
                    host_id: "o".into(),
                    product_id: "p".into(),
                    product: "p".into(),
                    vendor: String::new(),
                    state: "remnant".into(),
                    version: String::new(),
                    from: times[5],
                    to: Some(times[6]),
                    evidence: vec![],
                },
            ];
            let s = check_invariants(&c, &hosts, &eps, &[], times[7]);
            check_html(&render_html(&s, "v"));
        }

        #[test]
        fn calendar_matches_time_crate(t in MIN_TS..=MAX_TS) {
            let odt = time::OffsetDateTime::from_unix_timestamp(t).unwrap();
            let want = format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
                odt.year(), u8::from(odt.month()), odt.day(), odt.hour(), odt.minute(), odt.second()
            );
            prop_assert_eq!(rfc3339(t), want);
            let day = t.div_euclid(DAY);
            prop_assert_eq!(parse_date(&date_string(day)), Some(day));
        }
    }

    #[test]
    fn calendar_fixed_points() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_505_260_800), "2017-09-13T00:00:00Z");
        assert_eq!(rfc3339(MIN_TS), "0000-01-01T00:00:00Z");
        assert_eq!(rfc3339(MAX_TS), "9999-12-31T23:59:59Z");
        assert_eq!(rfc3339(i64::MAX), "9999-12-31T23:59:59Z");
        assert_eq!(rfc3339(i64::MIN), "0000-01-01T00:00:00Z");
        assert_eq!(date_string(days_from_civil(2016, 2, 29)), "2016-02-29");
    }

    // --- timing -------------------------------------------------------------

    /// `cargo test --release -- --ignored --nocapture timing`
    #[test]
    #[ignore]
    fn timing_100k_hosts() {
        let c = bod();
        let now = c.issued + 100 * DAY + 3600;
        let hosts: Vec<HostInfo> = (0..100_000)
            .map(|i| HostInfo {
                id: format!("{i:08x}-0000-4000-8000-000000000000"),
                hostname: format!("ws-{i:06}.corp.example"),
                os: "Windows 11 Enterprise".into(),
                last_checkin: if i % 200 == 7 {
                    None
                } else {
                    Some(now - (i % 1000) as i64)
                },
                stale: i % 100 == 3,
                imported: false,
            })
            .collect();
        let mut eps = Vec::new();
        for k in 0..4000usize {
            let h = (k * 7919) % 100_000;
            let from = c.issued - 20 * DAY + (k as i64 * 3571) % (110 * DAY);
            let to = if k % 3 == 0 {
                None
            } else {
                Some(from + (k as i64 * 977) % (40 * DAY))
            };
            eps.push(Episode {
                host_id: hosts[h].id.clone(),
                product_id: format!("kaspersky.p{}", k % 5),
                product: format!("Kaspersky product {}", k % 5),
                vendor: "Kaspersky".into(),
                state: STATES[(k / 3) % 3].into(),
                version: "21.3".into(),
                from,
                to,
                evidence: vec![Evidence {
                    kind: "file".into(),
                    value: "avp.exe".into(),
                    location: r"C:\Program Files (x86)\Kaspersky Lab".into(),
                }],
            });
        }
        let assets: Vec<UnknownAsset> = (0..500)
            .map(|i| UnknownAsset {
                hostname: format!("legacy-{i}"),
                owner: "ops".into(),
                business_unit: "IT".into(),
            })
            .collect();
        let mut times = Vec::new();
        let mut s = None;
        for _ in 0..7 {
            let t0 = std::time::Instant::now();
            s = Some(status(&c, &hosts, &eps, &assets, now));
            times.push(t0.elapsed());
        }
        times.sort();
        let s = s.unwrap();
        let t0 = std::time::Instant::now();
        let json = serde_json::to_string(&s).unwrap();
        let t_json = t0.elapsed();
        let t0 = std::time::Instant::now();
        let html = render_html(&s, "v");
        let t_html = t0.elapsed();
        println!(
            "status(): min {:?} median {:?} max {:?} | {} days, counts {:?} | json {:?} ({} KB) | html {:?} ({} KB)",
            times[0],
            times[3],
            times[6],
            s.daily.len(),
            s.counts,
            t_json,
            json.len() / 1024,
            t_html,
            html.len() / 1024
        );
        if !cfg!(debug_assertions) {
            assert!(times[3] < std::time::Duration::from_millis(100));
        }
    }
}

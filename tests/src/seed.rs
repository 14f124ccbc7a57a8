//! A fleet with a history, for the console benchmark
//! (`muster-bench-console`): written through the store's own API
//! (`Store::enroll`, `Store::checkin_at` for reports weeks ago,
//! `Store::checkin` for today's), so every row is what real agents'
//! enrollments and check-ins write.
//!
//! Host `i` is a function of `i` alone ([`plan`]): a hostname such as
//! `web-fra-00042`, a Linux distribution, a few dozen packages, units and
//! processes; 40 % run another security product (ClamAV, CrowdStrike
//! Falcon, Wazuh, Defender for Endpoint, osquery); 3 % have Kaspersky
//! Endpoint Security for Linux now (running, installed or only its
//! remnant), found on some day of the last 60, and 2 % had it and had it
//! removed; 5 % last reported weeks ago (stale) and 0.5 % enrolled but
//! never reported. Agents that report send digests first and the sections
//! the collector asks for, as the agent does.

mod load;

pub use load::{Marker, host_ids, report_now, seed};

use muster_catalog::{HostFacts, Item, ItemKind, Presence, Section};
use std::collections::BTreeMap;

pub const DAY: i64 = 86_400;

/// Bumped whenever [`plan`] or the seeding changes: a data folder seeded
/// by another version is not reused.
pub const SEED_VERSION: u32 = 1;

/// Kaspersky Endpoint Security for Linux as a host has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kesl {
    /// Package, unit and process.
    Running,
    /// Package and unit.
    Installed,
    /// Removed but not purged: its configuration files.
    Remnant,
}

/// A host's history with the banned product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Banned {
    Never,
    /// Found `since` days ago (installed), in the state `now` today; a
    /// remnant was installed first and uninstalled half-way since.
    Present {
        since: i64,
        now: Kesl,
    },
    /// Installed `from` days ago, purged `to` days ago.
    Removed {
        from: i64,
        to: i64,
    },
}

/// When a host last reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reporting {
    /// Reports now.
    Current,
    /// Last reported this many days ago.
    Stale { days: i64 },
    /// Enrolled, never reported.
    Never,
}

/// Another security product (not banned).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Other {
    ClamAv,
    Falcon,
    Wazuh,
    Defender,
    Osquery,
}

/// Everything about host `i`.
#[derive(Debug, Clone)]
pub struct Plan {
    pub i: usize,
    pub facts: HostFacts,
    pub reporting: Reporting,
    pub banned: Banned,
    pub other: Option<Other>,
    /// dpkg (`packages` section) or rpm.
    pub rpm: bool,
}

fn mix(i: usize, salt: u64) -> u64 {
    let mut x = (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ salt;
    x ^= x >> 31;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 29;
    x
}

const ROLES: &[&str] = &[
    "web", "app", "db", "cache", "build", "k8s-node", "mail", "proxy", "ws", "files",
];
const SITES: &[&str] = &["fra", "ams", "lon", "nyc", "sfo", "sgp", "syd"];

/// Host `i`'s hostname: unique, and spread over the alphabet so that a
/// page sorted by hostname mixes roles and sites.
pub fn hostname(i: usize) -> String {
    let h = mix(i, 1);
    format!(
        "{}-{}-{i:05}",
        ROLES[(h % ROLES.len() as u64) as usize],
        SITES[((h >> 8) % SITES.len() as u64) as usize]
    )
}

/// Host `i`.
pub fn plan(i: usize) -> Plan {
    let h = mix(i, 2);
    let os = match h % 100 {
        0..35 => ("Debian GNU/Linux", "12", "6.1.0-26-amd64", false),
        35..45 => ("Debian GNU/Linux", "11", "5.10.0-32-amd64", false),
        45..70 => ("Ubuntu", "22.04", "5.15.0-122-generic", false),
        70..85 => ("Ubuntu", "24.04", "6.8.0-45-generic", false),
        85..95 => (
            "Red Hat Enterprise Linux",
            "9.4",
            "5.14.0-427.el9.x86_64",
            true,
        ),
        _ => ("Rocky Linux", "8.10", "4.18.0-553.el8_10.x86_64", true),
    };
    let facts = HostFacts {
        hostname: hostname(i),
        os_name: os.0.into(),
        os_version: os.1.into(),
        kernel: os.2.into(),
        arch: if (h >> 8).is_multiple_of(10) {
            "aarch64"
        } else {
            "x86_64"
        }
        .into(),
        ips: vec![ip(i)],
        agent_version: "0.1.0".into(),
        platform: "linux".into(),
        hardware_id: format!("{:08x}-0000-4000-8000-{:012x}", mix(i, 3) as u32, i),
    };
    let r = mix(i, 4);
    let reporting = match r % 1000 {
        0..5 => Reporting::Never,
        5..55 => Reporting::Stale {
            days: 7 + (r >> 10) as i64 % 50,
        },
        _ => Reporting::Current,
    };
    let b = mix(i, 5);
    let banned = match b % 1000 {
        0..30 => Banned::Present {
            since: 1 + (b >> 10) as i64 % 58,
            now: match (b >> 20) % 10 {
                0..5 => Kesl::Running,
                5..8 => Kesl::Installed,
                _ => Kesl::Remnant,
            },
        },
        30..50 => {
            let from = 10 + (b >> 10) as i64 % 49;
            Banned::Removed {
                from,
                to: 1 + (b >> 20) as i64 % (from - 1),
            }
        }
        _ => Banned::Never,
    };
    let o = mix(i, 6);
    let other = match o % 100 {
        0..15 => Some(Other::ClamAv),
        15..27 => Some(Other::Falcon),
        27..33 => Some(Other::Wazuh),
        33..37 => Some(Other::Defender),
        37..40 => Some(Other::Osquery),
        _ => None,
    };
    Plan {
        i,
        facts,
        reporting,
        banned,
        other,
        rpm: os.3,
    }
}

/// A private address unique to host `i`.
pub fn ip(i: usize) -> String {
    format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255)
}

/// What a host has: packages, services (each a systemd unit too),
/// processes, paths.
#[derive(Default)]
struct Have {
    packages: Vec<(String, Presence)>,
    services: Vec<String>,
    processes: Vec<String>,
    files: Vec<String>,
}

impl Have {
    fn add(&mut self, packages: &[&str], services: &[&str], processes: &[&str]) {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        self.packages
            .extend(packages.iter().map(|p| (p.to_string(), Presence::Present)));
        self.services.extend(s(services));
        self.processes.extend(s(processes));
    }
}

/// Host `plan`'s inventory with Kaspersky as `kesl` (`None`: absent).
pub fn inventory(plan: &Plan, kesl: Option<Kesl>, names: &[String]) -> BTreeMap<String, Section> {
    let mut rng = crate::fleetgen::Rng(mix(plan.i, 7) | 1);
    let mut have = Have::default();
    let base: Vec<&str> = names_of(names, &mut rng, 30);
    have.add(
        &base,
        &["ssh", "cron", "rsyslog", "systemd-journald", "chrony"],
        &["sshd", "cron", "rsyslogd", "systemd", "chronyd"],
    );
    match hostname(plan.i).split('-').next().unwrap_or("") {
        "web" | "proxy" => have.add(&["nginx"], &["nginx"], &["nginx"]),
        "db" => have.add(&["postgresql-15"], &["postgresql"], &["postgres"]),
        "cache" => have.add(&["redis-server"], &["redis-server"], &["redis-server"]),
        "mail" => have.add(&["postfix"], &["postfix"], &["master"]),
        "k8s" => have.add(
            &["containerd", "kubelet"],
            &["containerd", "kubelet"],
            &["containerd", "kubelet"],
        ),
        _ => {}
    }
    match plan.other {
        Some(Other::ClamAv) => have.add(
            &["clamav", "clamav-daemon", "clamav-freshclam"],
            &["clamav-daemon", "clamav-freshclam"],
            &["clamd", "freshclam"],
        ),
        Some(Other::Falcon) => have.add(&["falcon-sensor"], &["falcon-sensor"], &["falcon-sensor"]),
        Some(Other::Wazuh) => have.add(
            &["wazuh-agent"],
            &["wazuh-agent"],
            &["wazuh-agentd", "wazuh-execd", "wazuh-modulesd"],
        ),
        Some(Other::Defender) => have.add(&["mdatp"], &["mdatp"], &["wdavdaemon"]),
        Some(Other::Osquery) => have.add(&["osquery"], &["osqueryd"], &["osqueryd"]),
        None => {}
    }
    match kesl {
        Some(Kesl::Running) => {
            have.add(&["kesl"], &["kesl"], &["kesl"]);
            have.files.push("/opt/kaspersky/kesl".into());
        }
        Some(Kesl::Installed) => {
            have.add(&["kesl"], &["kesl"], &[]);
            have.files.push("/opt/kaspersky/kesl".into());
        }
        Some(Kesl::Remnant) => {
            have.packages.push(("kesl".into(), Presence::Leftover));
            have.files.push("/var/opt/kaspersky/kesl".into());
        }
        None => {}
    }
    let manager = if plan.rpm { "rpm" } else { "dpkg" };
    let packages: Vec<Item> = have
        .packages
        .iter()
        .map(|(name, presence)| {
            Item::new(ItemKind::Package, name.as_str(), *presence, manager)
                .version("1.0-1")
                .attr("manager", manager)
        })
        .collect();
    let mut services = Vec::new();
    for s in &have.services {
        let path = format!("/lib/systemd/system/{s}.service");
        services.push(
            Item::new(ItemKind::Service, s.as_str(), Presence::Present, "systemd").path(&path),
        );
        services.push(
            Item::new(
                ItemKind::SystemdUnit,
                format!("{s}.service"),
                Presence::Present,
                "systemd",
            )
            .path(&path),
        );
    }
    let processes = have
        .processes
        .iter()
        .map(|p| {
            Item::new(ItemKind::Process, p.as_str(), Presence::Active, "/proc")
                .path(format!("/usr/sbin/{p}"))
        })
        .collect();
    let files = have
        .files
        .iter()
        .map(|f| Item::new(ItemKind::FilePath, f.as_str(), Presence::Present, "paths").path(f))
        .collect();
    crate::fleetgen::sections([
        (if plan.rpm { "rpm" } else { "packages" }, packages),
        ("services", services),
        ("processes", processes),
        ("files", files),
    ])
}

fn names_of<'a>(names: &'a [String], rng: &mut crate::fleetgen::Rng, n: usize) -> Vec<&'a str> {
    (0..n)
        .map(|_| names[rng.below(names.len())].as_str())
        .collect()
}

/// Host `plan`'s reports as of `t0` (the seeding's start): (time, state of
/// Kaspersky) oldest first. The last is today's for a current host.
pub fn reports(plan: &Plan, t0: i64) -> Vec<(i64, Option<Kesl>)> {
    // Within the hour before, so that hosts do not all report on the same
    // second (and never after `t0`, when today's report is sent).
    let at = |days: i64| t0 - days * DAY - (mix(plan.i, 8) % 3600) as i64;
    let mut out = match plan.banned {
        Banned::Never => vec![(at(60), None)],
        Banned::Present { since, now } => {
            let mut v = vec![(at(60), None), (at(since), Some(Kesl::Installed))];
            if now != Kesl::Installed {
                v.push((at(since / 2), Some(now)));
            }
            v
        }
        Banned::Removed { from, to } => vec![
            (at(60), None),
            (at(from), Some(Kesl::Installed)),
            (at(to), None),
        ],
    };
    match plan.reporting {
        Reporting::Never => Vec::new(),
        Reporting::Stale { days } => {
            let last = at(days);
            let state = out.iter().rev().find(|(t, _)| *t <= last).and_then(|r| r.1);
            out.retain(|(t, _)| *t < last);
            out.push((last, state));
            out
        }
        Reporting::Current => {
            let state = out.last().and_then(|r| r.1);
            // Today's report: the same inventory as the last change.
            out.push((t0, state));
            out
        }
    }
}

/// The asset list: 95 % of the hosts (some names in capitals, as asset
/// lists often have them) and as many assets again that have no agent,
/// `n` rows in all.
pub fn assets(n: usize) -> Vec<muster_collector::assets::Asset> {
    const UNITS: &[&str] = &["Finance", "Engineering", "Sales", "Operations", "Research"];
    let mut out = Vec::with_capacity(n);
    let mut missing = 0;
    for i in 0..n {
        let h = mix(i, 10);
        if h.is_multiple_of(20) {
            missing += 1;
            continue;
        }
        let name = hostname(i);
        out.push(muster_collector::assets::Asset {
            hostname: if h.is_multiple_of(7) {
                name.to_uppercase()
            } else {
                name
            },
            ip: ip(i),
            owner: format!("owner{}@example.org", h % 400),
            business_unit: UNITS[(h >> 8) as usize % UNITS.len()].into(),
            line: 0,
        });
    }
    for k in 0..missing {
        out.push(muster_collector::assets::Asset {
            hostname: format!("pc-{}-{k:05}", SITES[k % SITES.len()]),
            ip: format!("172.16.{}.{}", (k >> 8) & 255, k & 255),
            owner: format!("owner{}@example.org", k % 400),
            business_unit: UNITS[k % UNITS.len()].into(),
            line: 0,
        });
    }
    for (line, a) in out.iter_mut().enumerate() {
        // After the header line.
        a.line = line + 2;
    }
    out
}

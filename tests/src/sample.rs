//! The small sample fleet the HTTP API's and the console's tests share:
//! one host running a banned product, one clean, one asset without agent.

use crate::{Collector, agent_once, linux_image};

/// Kaspersky Endpoint Security for Linux, banned under BOD 17-01.
pub const KESL: (&str, &str, &str) = ("kesl", "11.1.0.3013", "install ok installed");
/// A package no policy cares about.
pub const BASH: (&str, &str, &str) = ("bash", "5.2", "install ok installed");

/// A collector (with a file exporter, so the exporters' list has one)
/// where `alpha` runs a banned Kaspersky product and `bravo` is clean, both
/// reported by real agents; an asset list naming `alpha` and `charlie`, an
/// asset without agent.
pub fn fleet() -> Collector {
    let c = Collector::start_with(|data| {
        let cfg = data.join("collector.toml");
        let text = std::fs::read_to_string(&cfg).expect("collector.toml");
        let events = data.join("events.jsonl");
        std::fs::write(
            &cfg,
            format!("{text}\n[[export]]\nname = \"lake\"\nkind = \"file\"\naddress = {events:?}\n"),
        )
        .expect("collector.toml");
    });
    for (name, packages) in [("alpha", vec![KESL, BASH]), ("bravo", vec![BASH])] {
        let state = c.dir.join(&format!("agent-{name}"));
        let root = c.dir.join(&format!("img-{name}"));
        c.enroll(&state);
        linux_image(
            &root,
            name,
            &packages,
            &["kesl.service"][..usize::from(name == "alpha")],
        );
        let out = agent_once(&state, &root);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let csv = c.dir.join("assets.csv");
    std::fs::write(&csv, "hostname,owner\nalpha,ops\ncharlie,finance\n").expect("assets.csv");
    c.muster(&["assets", "import", csv.to_str().expect("utf-8 path")]);
    c
}

/// The id of the host named `hostname`, as `muster hosts` lists it.
pub fn id_of(c: &Collector, hostname: &str) -> String {
    c.hosts()
        .iter()
        .find(|h| h["hostname"] == hostname)
        .and_then(|h| h["id"].as_str())
        .unwrap_or_else(|| panic!("no host {hostname}"))
        .to_string()
}

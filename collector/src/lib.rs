//! Muster's collector: PKI and enrollment, the gRPC server, the fleet store,
//! and the operator command line's client side.
#![forbid(unsafe_code)]

pub mod admission;
pub mod api;
pub mod assets;
pub mod backup;
pub mod campaign;
pub mod config;
pub mod console;
pub mod datalock;
pub mod metrics;
pub mod pki;
pub mod rotation;
pub mod server;
pub mod service;
pub mod siem;
pub mod store;
pub mod tickets;

use anyhow::{Context, Result};
use std::io::Write;
use std::path::Path;

/// Unix seconds as RFC 3339 (UTC), or `None` when out of range.
pub fn rfc3339_checked(t: i64) -> Option<String> {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()?
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}

/// Unix seconds as RFC 3339 (UTC), or the number when out of range.
pub fn rfc3339(t: i64) -> String {
    rfc3339_checked(t).unwrap_or_else(|| t.to_string())
}

/// Writes a new file with `mode`, refusing to replace one that exists.
pub fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(contents)
        .and_then(|_| f.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Starts logging to standard error: `human` (default) or `json`.
pub fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MUSTER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: journald and log files get plain text.
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if format == "json" {
        b.json().init();
    } else {
        b.init();
    }
}

/// Runs a command's future on a tokio runtime with the ring crypto provider
/// installed, printing an error chain and exiting 1 on failure.
pub fn run_command<F>(multi_thread: bool, f: impl FnOnce() -> F) -> std::process::ExitCode
where
    F: std::future::Future<Output = Result<()>>,
{
    quiet_broken_pipe();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut b = if multi_thread {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let rt = b.enable_all().build().expect("tokio runtime");
    match rt.block_on(f()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// A reader that stops reading (`muster ... | head`) closes the pipe:
/// end quietly and successfully, as ripgrep does: what was asked for was
/// delivered, and `set -o pipefail` scripts must not fail on `| head`.
fn quiet_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}

//! `muster-collector`: initialise, configure and run a Muster collector.

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use muster_collector::config::{Config, DEFAULT_CONFIG, DataDir, HttpListen, parse_duration};
use muster_collector::pki::Authority;
use muster_collector::server::{State, serve, tls_config};
use muster_collector::service::token_hash;
use muster_collector::store::{Database, Store, now};
use muster_collector::{init_logging, write_new};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "muster-collector",
    version,
    about = "The Muster collector: gathers agents' reports over mutual TLS and answers operators",
    after_help = "Example:\n  muster-collector init --data-dir /var/lib/muster --server-name muster.example.org\n  muster-collector token create --data-dir /var/lib/muster --uses 100 --expires 24h\n  muster-collector serve --data-dir /var/lib/muster --listen 0.0.0.0:8443"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create a collector's state: CA, server and operator certificates, config, database
    #[command(
        after_help = "Example:\n  muster-collector init --data-dir /var/lib/muster --server-name muster.example.org\n  muster-collector init --data-dir /var/lib/muster --server-name muster.example.org \\\n      --database postgres://muster@db.example.org/muster"
    )]
    Init {
        /// Folder for the collector's state (created; must not hold a collector already)
        #[arg(long, env = "MUSTER_DATA_DIR")]
        data_dir: PathBuf,
        /// The DNS name or IP agents use to reach the collector
        #[arg(long)]
        server_name: String,
        /// A PostgreSQL URL to keep the fleet in (recorded in the config)
        /// [default: the SQLite file DIR/muster.db]
        #[arg(long, env = "MUSTER_DATABASE")]
        database: Option<String>,
    },
    /// Serve agents and operators over gRPC with mutual TLS 1.3
    #[command(
        after_help = "Example:\n  muster-collector serve --data-dir /var/lib/muster --listen 0.0.0.0:8443 --log-format json"
    )]
    Serve {
        /// The collector's state folder (made by `init`)
        #[arg(long, env = "MUSTER_DATA_DIR")]
        data_dir: PathBuf,
        /// Address to listen on [default: the config's `listen`, 0.0.0.0:8443]
        #[arg(long)]
        listen: Option<String>,
        /// Log format: human or json [default: the config's `log_format`]
        #[arg(long)]
        log_format: Option<String>,
        /// The fleet database, SQLite file or postgres:// URL [default: the
        /// config's `database`, else DIR/muster.db]
        #[arg(long)]
        database: Option<String>,
        /// Address of the HTTP API (HTTPS, /api/v1/) and the web console
        /// (/), or `off` [default: the config's `http_listen`,
        /// 127.0.0.1:8444]
        #[arg(long, value_name = "ADDR:PORT")]
        http_listen: Option<String>,
    },
    /// Manage enrollment tokens
    Token {
        #[command(subcommand)]
        cmd: TokenCmd,
    },
    /// Manage operator tokens: the bearer tokens of the HTTP API, and
    /// what operators sign in to the console with
    OperatorToken {
        #[command(subcommand)]
        cmd: OperatorTokenCmd,
    },
    /// Check the config file
    Config {
        #[command(subcommand)]
        cmd: ConfigCmd,
    },
    /// Rotate the CA with an overlap: rotate, wait for agents to renew, finish
    Ca {
        #[command(subcommand)]
        cmd: CaCmd,
    },
    /// Copy the SQLite fleet database into a new file, consistent, while the collector serves
    #[command(
        after_help = "Example:\n  muster-collector backup --data-dir /var/lib/muster-collector --out /var/backups/muster-$(date +%F).db\n\nThe copy is the database as of one instant (SQLite VACUUM INTO), checked before it gets its\nname. It holds the fleet, not the CA, keys or collector.toml: keep a copy of those too.\nOn PostgreSQL use pg_dump."
    )]
    Backup {
        /// The collector's state folder
        #[arg(long, env = "MUSTER_DATA_DIR")]
        data_dir: PathBuf,
        /// The file to write (must not exist)
        #[arg(long)]
        out: PathBuf,
        /// text or json
        #[arg(long, default_value = "text", value_parser = ["text", "json"])]
        format: String,
    },
    /// Put a backup in place of the SQLite fleet database; the collector must be stopped
    #[command(
        after_help = "Example:\n  systemctl stop muster-collector\n  muster-collector restore --data-dir /var/lib/muster-collector --from /var/backups/muster-2026-11-30.db\n  systemctl start muster-collector\n\nThe backup is checked (an SQLite file, whole, integrity_check, a Muster schema this version\nknows) before anything changes; the database it replaces is kept as muster.db.before-restore."
    )]
    Restore {
        /// The collector's state folder
        #[arg(long, env = "MUSTER_DATA_DIR")]
        data_dir: PathBuf,
        /// The backup file (made by `muster-collector backup`)
        #[arg(long)]
        from: PathBuf,
        /// text or json
        #[arg(long, default_value = "text", value_parser = ["text", "json"])]
        format: String,
    },
}

#[derive(Subcommand)]
enum CaCmd {
    /// Start a rotation: a new signing CA, both CAs trusted until `finish`
    #[command(
        after_help = "Example:\n  muster-collector ca rotate --data-dir /var/lib/muster && systemctl reload muster-collector"
    )]
    Rotate {
        /// The collector's state folder
        #[arg(long, env = "MUSTER_DATA_DIR")]
        data_dir: PathBuf,
    },
    /// The trusted CAs, and the agents still holding a certificate of another CA than the signing one
    #[command(
        after_help = "Example:\n  muster-collector ca status --data-dir /var/lib/muster --format json"
    )]
    Status {
        /// The collector's state folder
        #[arg(long, env = "MUSTER_DATA_DIR")]
        data_dir: PathBuf,
        /// table or json
        #[arg(long, default_value = "table", value_parser = ["table", "json"])]
        format: String,
    },
    /// End a rotation: a server certificate from the new CA, the previous CA no longer trusted
    #[command(
        after_help = "Example:\n  muster-collector ca finish --data-dir /var/lib/muster && systemctl reload muster-collector"
    )]
    Finish {
        /// The collector's state folder
        #[arg(long, env = "MUSTER_DATA_DIR")]
        data_dir: PathBuf,
        /// Finish even though some agents still hold a certificate of the
        /// previous CA (they will be locked out and must enroll again)
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Print a new enrollment token, alone on the last line of standard output
    #[command(
        after_help = "Example:\n  TOKEN=$(muster-collector token create --data-dir /var/lib/muster --uses 50 --expires 7d | tail -1)"
    )]
    Create {
        /// The collector's state folder
        #[arg(long, env = "MUSTER_DATA_DIR")]
        data_dir: PathBuf,
        /// How many agents may enroll with it
        #[arg(long, default_value_t = 1)]
        uses: u32,
        /// How long it is valid (s, m, h, d)
        #[arg(long, default_value = "24h")]
        expires: String,
    },
}

#[derive(Subcommand)]
enum OperatorTokenCmd {
    /// Make an operator token, printed alone on the last line of standard
    /// output (only its hash is kept: it cannot be shown again)
    #[command(
        after_help = "Example:\n  TOKEN=$(muster-collector operator-token create --data-dir /var/lib/muster --name console --expires 12h | tail -1)\n  curl --cacert /var/lib/muster/ca.pem -H \"Authorization: Bearer $TOKEN\" https://localhost:8444/api/v1/summary"
    )]
    Create {
        /// The collector's state folder
        #[arg(long, env = "MUSTER_DATA_DIR")]
        data_dir: PathBuf,
        /// Who or what uses it (letters, digits, . _ - @); every API request
        /// is logged with it. One token per name until it is revoked
        #[arg(long)]
        name: String,
        /// How long it is valid (s, m, h, d), or `never`
        #[arg(long, default_value = "90d")]
        expires: String,
    },
    /// Revoke an operator token, by name or id: it is refused from the next request on
    #[command(
        after_help = "Example:\n  muster-collector operator-token revoke --data-dir /var/lib/muster console\n  muster-collector operator-token revoke --data-dir /var/lib/muster 7"
    )]
    Revoke {
        /// The collector's state folder
        #[arg(long, env = "MUSTER_DATA_DIR")]
        data_dir: PathBuf,
        /// The token's name (from `operator-token list`), or its id
        #[arg(value_name = "NAME-or-ID")]
        which: String,
    },
    /// List operator tokens (never the tokens themselves)
    #[command(
        after_help = "Example:\n  muster-collector operator-token list --data-dir /var/lib/muster\n  muster-collector operator-token list --data-dir /var/lib/muster --format json"
    )]
    List {
        /// The collector's state folder
        #[arg(long, env = "MUSTER_DATA_DIR")]
        data_dir: PathBuf,
        /// table or json
        #[arg(long, default_value = "table", value_parser = ["table", "json"])]
        format: String,
    },
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Validate DIR/collector.toml and the environment overrides; exit 1 on any problem
    #[command(after_help = "Example:\n  muster-collector config check --data-dir /var/lib/muster")]
    Check {
        /// The collector's state folder
        #[arg(long, env = "MUSTER_DATA_DIR")]
        data_dir: PathBuf,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    muster_collector::run_command(true, || run(cli))
}

async fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Init {
            data_dir,
            server_name,
            database,
        } => init(DataDir::new(data_dir), &server_name, database.as_deref()).await,
        Cmd::Serve {
            data_dir,
            listen,
            log_format,
            database,
            http_listen,
        } => {
            let dir = DataDir::new(data_dir);
            let mut config = load_config(&dir)?;
            if let Some(d) = database {
                config.database = Some(d);
            }
            if let Some(h) = http_listen {
                anyhow::ensure!(
                    h == "off" || h.parse::<std::net::SocketAddr>().is_ok(),
                    "--http-listen must be ADDRESS:PORT or off, not {h:?}"
                );
                config.http_listen = Some(h);
            }
            if let Some(l) = listen {
                config.listen = l;
            }
            if let Some(f) = log_format {
                anyhow::ensure!(
                    f == "human" || f == "json",
                    "--log-format must be human or json, not {f:?}"
                );
                config.log_format = f;
            }
            init_logging(&config.log_format);
            run_server(dir, config).await
        }
        Cmd::Token {
            cmd:
                TokenCmd::Create {
                    data_dir,
                    uses,
                    expires,
                },
        } => {
            let dir = DataDir::new(data_dir);
            anyhow::ensure!(uses >= 1, "--uses must be at least 1");
            let ttl = parse_duration(&expires).map_err(|e| anyhow::anyhow!("--expires: {e}"))?;
            let config = load_config(&dir)?;
            let store = open_store(&dir, &config).await?;
            let token = muster_collector::service::new_token();
            let expires_at = now() + ttl.as_secs() as i64;
            store
                .create_token(&token_hash(&token), expires_at, uses)
                .await?;
            store.close().await;
            let when = time::OffsetDateTime::from_unix_timestamp(expires_at)?
                .format(&time::format_description::well_known::Rfc3339)?;
            println!("enrollment token for {uses} agent(s), valid until {when}:");
            println!("{token}");
            Ok(())
        }
        Cmd::OperatorToken { cmd } => operator_token(cmd).await,
        Cmd::Ca { cmd } => ca(cmd).await,
        Cmd::Backup {
            data_dir,
            out,
            format,
        } => backup(DataDir::new(data_dir), &out, format == "json").await,
        Cmd::Restore {
            data_dir,
            from,
            format,
        } => restore(DataDir::new(data_dir), &from, format == "json").await,
        Cmd::Config {
            cmd: ConfigCmd::Check { data_dir },
        } => {
            let dir = DataDir::new(data_dir);
            let cfg = load_config(&dir)?;
            let mut files = vec![
                dir.ca_cert(),
                dir.ca_key(),
                dir.server_cert(),
                dir.server_key(),
            ];
            if let Database::Sqlite(db) = cfg.database(&dir) {
                files.push(db);
            }
            for f in files {
                anyhow::ensure!(
                    f.exists(),
                    "{} is missing (run muster-collector init)",
                    f.display()
                );
            }
            tls_config(&dir, None)?;
            let http = match cfg.http_listen() {
                HttpListen::Off => "off".to_string(),
                HttpListen::Default(a) | HttpListen::Given(a) => a,
            };
            println!(
                "{}: ok (listen {}, HTTP API {http}, check-in every {})",
                dir.config().display(),
                cfg.listen,
                cfg.checkin_interval
            );
            Ok(())
        }
    }
}

async fn operator_token(cmd: OperatorTokenCmd) -> Result<()> {
    use muster_collector::store::{TokenCreated, TokenRevoked, check_operator_name};
    let rfc = |t: Option<i64>| t.map(muster_collector::rfc3339);
    match cmd {
        OperatorTokenCmd::Create {
            data_dir,
            name,
            expires,
        } => {
            check_operator_name(&name).map_err(|e| anyhow::anyhow!("--name: {e}"))?;
            let ttl = match expires.trim() {
                "never" => None,
                e => Some(parse_duration(e).map_err(|e| anyhow::anyhow!("--expires: {e}"))?),
            };
            anyhow::ensure!(
                ttl.is_none_or(|d| d.as_secs() >= 60),
                "--expires: a token must live at least 1m"
            );
            let dir = DataDir::new(data_dir);
            let config = load_config(&dir)?;
            let store = open_store(&dir, &config).await?;
            let token = muster_collector::service::new_operator_token();
            let expires_at = ttl.map(|d| now().saturating_add(d.as_secs() as i64));
            let created = store
                .create_operator_token(&name, &token_hash(&token), expires_at)
                .await;
            store.close().await;
            match created? {
                TokenCreated::Created(t) => {
                    let until = match rfc(t.expires_at) {
                        Some(w) => format!("valid until {w}"),
                        None => "never expires".to_string(),
                    };
                    println!(
                        "operator token {} (id {}), {until}; revoke it with: muster-collector operator-token revoke --data-dir {} {}",
                        t.name,
                        t.id,
                        dir.root.display(),
                        t.name
                    );
                    println!("{token}");
                    Ok(())
                }
                TokenCreated::NameTaken { id } => bail!(
                    "an operator token named {name:?} exists already (id {id}); revoke it first \
                     (muster-collector operator-token revoke {name}) or choose another --name"
                ),
            }
        }
        OperatorTokenCmd::Revoke { data_dir, which } => {
            let dir = DataDir::new(data_dir);
            let config = load_config(&dir)?;
            let store = open_store(&dir, &config).await?;
            let done = store.revoke_operator_token(&which).await;
            store.close().await;
            match done? {
                TokenRevoked::Revoked(t) => {
                    println!(
                        "operator token {} (id {}) revoked: it is refused from the next request on",
                        t.name, t.id
                    );
                    Ok(())
                }
                TokenRevoked::Already(t) => {
                    println!(
                        "operator token {} (id {}) was already revoked at {}",
                        t.name,
                        t.id,
                        rfc(t.revoked_at).unwrap_or_default()
                    );
                    Ok(())
                }
                TokenRevoked::NotFound => bail!(
                    "no operator token named {which:?} (or with that id); see muster-collector operator-token list"
                ),
            }
        }
        OperatorTokenCmd::List { data_dir, format } => {
            let dir = DataDir::new(data_dir);
            let config = load_config(&dir)?;
            let store = open_store(&dir, &config).await?;
            let tokens = store.operator_tokens().await;
            store.close().await;
            let tokens = tokens?;
            let t = now();
            let state = |k: &muster_collector::store::OperatorToken| {
                if k.revoked_at.is_some() {
                    "revoked"
                } else if k.expires_at.is_some_and(|e| e <= t) {
                    "expired"
                } else {
                    "active"
                }
            };
            if format == "json" {
                let v: Vec<serde_json::Value> = tokens
                    .iter()
                    .map(|k| {
                        serde_json::json!({
                            "id": k.id, "name": k.name, "state": state(k),
                            "created_at": rfc(Some(k.created_at)), "expires_at": rfc(k.expires_at),
                            "revoked_at": rfc(k.revoked_at), "last_used_at": rfc(k.last_used_at),
                        })
                    })
                    .collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({ "tokens": v }))?
                );
                return Ok(());
            }
            let mut table = comfy_table::Table::new();
            table.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
            table.set_header(["id", "name", "state", "created", "expires", "last used"]);
            for k in &tokens {
                table.add_row([
                    k.id.to_string(),
                    k.name.clone(),
                    match (state(k), rfc(k.revoked_at)) {
                        ("revoked", Some(at)) => format!("revoked {at}"),
                        (s, _) => s.to_string(),
                    },
                    rfc(Some(k.created_at)).unwrap_or_default(),
                    rfc(k.expires_at).unwrap_or_else(|| "never".into()),
                    rfc(k.last_used_at).unwrap_or_else(|| "never".into()),
                ]);
            }
            println!("{table}\n{} operator token(s)", tokens.len());
            Ok(())
        }
    }
}

/// The SQLite file of the collector in `dir`; an error pointing to the
/// PostgreSQL tools when its fleet is in PostgreSQL.
fn sqlite_database(dir: &DataDir, what: &str, instead: &str) -> Result<PathBuf> {
    match load_config(dir)?.database(dir) {
        Database::Sqlite(path) => Ok(path),
        pg @ Database::Postgres(_) => bail!(
            "the fleet of {} is in PostgreSQL ({pg}), not SQLite: {what} it with PostgreSQL's tools, \
             e.g. {instead}",
            dir.root.display()
        ),
    }
}

/// `12.3 MiB`.
fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

async fn backup(dir: DataDir, out: &std::path::Path, json: bool) -> Result<()> {
    use muster_collector::backup;
    let db = sqlite_database(
        &dir,
        "back up",
        "pg_dump --format=custom --file muster.dump \"$URL\"",
    )?;
    let source = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0)
        + std::fs::metadata(format!("{}-wal", db.display()))
            .map(|m| m.len())
            .unwrap_or(0);
    // Progress is for a person watching; a script or a timer unit gets
    // the result only.
    let tty = !json && std::io::IsTerminal::is_terminal(&std::io::stderr());
    if !json {
        eprintln!(
            "backing up {} ({}) to {}",
            db.display(),
            size(source),
            out.display()
        );
    }
    let started = std::time::Instant::now();
    let done = backup::backup(&dir.root, &db, out, |written| {
        if tty {
            eprint!("\r  {} written", size(written));
        }
    })
    .await;
    if tty {
        eprintln!();
    }
    let s = done?;
    let seconds = started.elapsed().as_secs_f64();
    if json {
        let v = serde_json::json!({
            "database": db,
            "out": s.path,
            "bytes": s.bytes,
            "hosts": s.hosts,
            "schema_version": s.schema_version,
            "seconds": (seconds * 1000.0).round() / 1000.0,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "backup written: {} ({}, {} hosts, schema version {}) in {seconds:.1} s",
            s.path.display(),
            size(s.bytes),
            s.hosts,
            s.schema_version
        );
        println!(
            "restore it with the collector stopped: muster-collector restore --data-dir {} --from {}",
            dir.root.display(),
            s.path.display()
        );
    }
    Ok(())
}

async fn restore(dir: DataDir, from: &std::path::Path, json: bool) -> Result<()> {
    let db = sqlite_database(
        &dir,
        "restore",
        "pg_restore --clean --dbname \"$URL\" muster.dump",
    )?;
    let r = muster_collector::backup::restore(&dir.root, &db, from).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    println!(
        "restored {} into {}: {} hosts, schema version {}{}",
        r.from.path.display(),
        r.database.display(),
        r.from.hosts,
        r.schema_version,
        if r.schema_version > r.from.schema_version {
            format!(" (brought up from {})", r.from.schema_version)
        } else {
            String::new()
        }
    );
    match &r.previous {
        Some(p) => println!(
            "the database it replaced is kept as {} (delete it once the collector runs as it should)",
            p.display()
        ),
        None => println!("there was no database to replace"),
    }
    println!(
        "next: start the collector (systemctl start muster-collector, or muster-collector serve --data-dir {})",
        dir.root.display()
    );
    Ok(())
}

/// How many of the agents still on another CA `ca status` and `ca finish`
/// name.
const LISTED: u32 = 20;

async fn ca(cmd: CaCmd) -> Result<()> {
    use muster_collector::rotation;
    match cmd {
        CaCmd::Rotate { data_dir } => {
            let dir = DataDir::new(data_dir);
            let config = load_config(&dir)?;
            let fp = rotation::rotate(&dir)?;
            println!("new signing CA {fp}; the previous CA stays trusted until `ca finish`");
            println!(
                "  {} now holds both CAs; the operator identity in {} was renewed",
                dir.ca_cert().display(),
                dir.operator_dir().display()
            );
            println!(
                "next: send the collector SIGHUP (systemctl reload muster-collector). Agents get the new CA \
                 with their next renewal, within {} days (two thirds of agent_certificate_days = {}); \
                 watch `muster-collector ca status`, then run `muster-collector ca finish`",
                config.agent_certificate_days * 2 / 3,
                config.agent_certificate_days
            );
            Ok(())
        }
        CaCmd::Status { data_dir, format } => {
            let (cas, waiting) = ca_waiting(&DataDir::new(data_dir)).await?;
            let rfc = |t: i64| {
                time::OffsetDateTime::from_unix_timestamp(t)
                    .ok()
                    .and_then(|t| {
                        t.format(&time::format_description::well_known::Rfc3339)
                            .ok()
                    })
            };
            if format == "json" {
                let v = serde_json::json!({
                    "rotating": cas.len() > 1,
                    "cas": cas.iter().map(|c| serde_json::json!({
                        "name": c.name, "fingerprint": c.fingerprint,
                        "not_after": rfc(c.not_after), "signing": c.signing,
                    })).collect::<Vec<_>>(),
                    "agents_on_other_ca": waiting.count,
                    "first": waiting.hosts.iter().map(|(id, hostname, last)| serde_json::json!({
                        "id": id, "hostname": hostname, "last_checkin": last.and_then(rfc),
                    })).collect::<Vec<_>>(),
                });
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            for c in &cas {
                println!(
                    "{} CA {} ({}), valid until {}",
                    if c.signing { "signing " } else { "previous" },
                    c.fingerprint,
                    c.name,
                    rfc(c.not_after).unwrap_or_default()
                );
            }
            println!(
                "agents holding a certificate of another CA: {}",
                waiting.count
            );
            for (id, hostname, last) in &waiting.hosts {
                println!(
                    "  {id}  {hostname}  last check-in {}",
                    last.and_then(rfc).unwrap_or_else(|| "never".into())
                );
            }
            if cas.len() > 1 && waiting.count == 0 {
                println!("every agent has the new CA: `muster-collector ca finish` is safe");
            }
            Ok(())
        }
        CaCmd::Finish { data_dir, force } => {
            let dir = DataDir::new(data_dir);
            let (cas, waiting) = ca_waiting(&dir).await?;
            if waiting.count > 0 && cas.len() > 1 && !force {
                let names: Vec<String> = waiting
                    .hosts
                    .iter()
                    .map(|(id, hostname, _)| format!("{hostname} ({id})"))
                    .collect();
                bail!(
                    "{} agent(s) still hold a certificate of the previous CA and would be locked out, e.g. {}; \
                     wait for them to renew (see `muster-collector ca status`), or give --force",
                    waiting.count,
                    names.join(", ")
                );
            }
            rotation::finish(&dir)?;
            println!(
                "the server certificate now comes from CA {}, and only that CA is trusted",
                cas[0].fingerprint
            );
            println!("next: send the collector SIGHUP (systemctl reload muster-collector)");
            Ok(())
        }
    }
}

/// The bundle's CAs, and the live agents whose certificate another CA
/// than the signing one signed.
async fn ca_waiting(
    dir: &DataDir,
) -> Result<(
    Vec<muster_collector::rotation::CaInfo>,
    muster_collector::store::OtherCa,
)> {
    let config = load_config(dir)?;
    let cas = muster_collector::rotation::bundle(dir)?;
    let store = open_store(dir, &config).await?;
    let waiting = store.hosts_on_other_ca(&cas[0].fingerprint, LISTED).await?;
    store.close().await;
    Ok((cas, waiting))
}

fn load_config(dir: &DataDir) -> Result<Config> {
    anyhow::ensure!(
        dir.root.is_dir(),
        "{} is not a collector data folder (run muster-collector init --data-dir {} first)",
        dir.root.display(),
        dir.root.display()
    );
    Config::load(&dir.config())
}

async fn open_store(dir: &DataDir, config: &Config) -> Result<Store> {
    let db = config.database(dir);
    if let Database::Sqlite(path) = &db {
        anyhow::ensure!(
            path.exists(),
            "no database at {} (run muster-collector init --data-dir {} first)",
            path.display(),
            dir.root.display()
        );
    }
    Ok(Store::open(&db, false).await?)
}

async fn init(dir: DataDir, server_name: &str, database: Option<&str>) -> Result<()> {
    for existing in [dir.config(), dir.ca_cert(), dir.ca_key(), dir.database()] {
        if existing.exists() {
            bail!(
                "{} already holds a collector ({} exists); refusing to overwrite its CA and database. \
                 Choose another --data-dir, or remove this one if you mean to start over",
                dir.root.display(),
                existing.display()
            );
        }
    }
    std::fs::create_dir_all(&dir.root)
        .with_context(|| format!("cannot create {}", dir.root.display()))?;
    let (ca, ca_key) = Authority::generate(server_name)?;
    let server = ca.server_cert(server_name)?;
    let op = ca.operator_cert("admin", 365)?;
    write_new(&dir.ca_key(), ca_key.as_bytes(), 0o600)?;
    write_new(&dir.ca_cert(), ca.cert_pem.as_bytes(), 0o644)?;
    write_new(&dir.server_key(), server.key_pem.as_bytes(), 0o600)?;
    write_new(
        &dir.server_cert(),
        format!("{}{}", server.cert_pem, ca.cert_pem).as_bytes(),
        0o644,
    )?;
    let opdir = dir.operator_dir();
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&opdir)
            .with_context(|| format!("cannot create {}", opdir.display()))?;
    }
    write_new(&opdir.join("key.pem"), op.key_pem.as_bytes(), 0o600)?;
    write_new(&opdir.join("cert.pem"), op.cert_pem.as_bytes(), 0o644)?;
    write_new(&opdir.join("ca.pem"), ca.cert_pem.as_bytes(), 0o644)?;
    let db = match database {
        Some(url) => {
            let db = Database::parse(url);
            anyhow::ensure!(
                matches!(db, Database::Postgres(_)),
                "--database takes a postgres:// URL (the default SQLite file needs no option)"
            );
            db
        }
        None => Database::Sqlite(dir.database()),
    };
    let mut config_text = DEFAULT_CONFIG.to_string();
    if let Some(url) = database {
        config_text.push_str(&format!("\ndatabase = {}\n", toml_string(url)));
    }
    write_new(&dir.config(), config_text.as_bytes(), 0o600)?;
    let store = Store::open(&db, true).await?;
    let version = store.schema_version().await?;
    store.close().await;
    println!("collector initialised in {}", dir.root.display());
    println!(
        "  CA certificate (give to agents as --ca-cert): {}",
        dir.ca_cert().display()
    );
    println!(
        "  server certificate for {server_name}, localhost, 127.0.0.1: {}",
        dir.server_cert().display()
    );
    println!("  operator identity \"admin\": {}", opdir.display());
    println!("  config: {}", dir.config().display());
    println!("  database: {db} (schema version {version})");
    println!(
        "next: muster-collector serve --data-dir {}",
        dir.root.display()
    );
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutdown requested; finishing in-flight requests");
}

/// On SIGHUP, reads the server certificate, its key, the CA bundle and the
/// CA key again; the next TLS handshakes, enrollments and renewals use
/// them. A bad file is logged and the current configuration kept.
async fn reload_on_sighup(
    dir: DataDir,
    tls: tokio::sync::watch::Sender<Arc<rustls::ServerConfig>>,
    tickets: Arc<muster_collector::tickets::TicketKeys>,
    state: Arc<State>,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        return;
    };
    while hup.recv().await.is_some() {
        let authority = match muster_collector::rotation::load_authority(&dir) {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "SIGHUP: cannot reload the CA; keeping the current TLS files and CA");
                continue;
            }
        };
        match tls_config(&dir, Some(tickets.clone())) {
            Ok(cfg) => {
                *state.authority.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(authority);
                let _ = tls.send(Arc::new(cfg));
                tracing::info!(cert = %dir.server_cert().display(), ca = %dir.ca_cert().display(), "SIGHUP: server certificate and CA bundle reloaded; new connections use them");
            }
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "SIGHUP: cannot reload the TLS files; keeping the current ones");
            }
        }
    }
}

async fn run_server(dir: DataDir, config: Config) -> Result<()> {
    // Held while serving: `restore` refuses to replace the database under
    // a running collector.
    let _lock = muster_collector::datalock::DataLock::take(
        &dir.root,
        muster_collector::datalock::Holder::Serve,
    )?;
    let tickets = Arc::new(muster_collector::tickets::TicketKeys::load_or_create(
        &dir.ticket_keys(),
    )?);
    tickets.spawn_rotation();
    let tls = tls_config(&dir, Some(tickets.clone()))?;
    let authority = muster_collector::rotation::load_authority(&dir)?;
    let store = open_store(&dir, &config).await?;
    let catalog = config.catalog()?;
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    tracing::info!(
        listen = %listener.local_addr()?,
        catalog = %catalog.version,
        products = catalog.products.len(),
        database = %config.database(&dir),
        "collector serving"
    );
    let exporters = config
        .exporters()
        .map_err(|e| anyhow::anyhow!("invalid exporter: {e}"))?;
    let metrics_listener = match &config.metrics_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen for metrics on {addr}"))?,
        ),
        None => None,
    };
    let http_listener = match config.http_listen() {
        HttpListen::Off => None,
        HttpListen::Given(addr) => Some(
            tokio::net::TcpListener::bind(&addr)
                .await
                .with_context(|| format!("cannot listen for the HTTP API on {addr} (http_listen; \"off\" turns the API off)"))?,
        ),
        // Nobody asked for this port: a second collector on the machine
        // (a test, a replica) serves without the API rather than not at all.
        HttpListen::Default(addr) => match tokio::net::TcpListener::bind(&addr).await {
            Ok(l) => Some(l),
            Err(e) => {
                tracing::warn!(listen = %addr, error = %e, "the HTTP API is not served: its default address is taken (set http_listen, or \"off\")");
                None
            }
        },
    };
    let state = Arc::new(State {
        store: store.clone(),
        catalog,
        authority: std::sync::RwLock::new(Arc::new(authority)),
        admission: muster_collector::admission::Admission::new(config.max_checkins_per_second),
        config,
        exporters,
        observer: muster_collector::siem::observer(),
        metrics: Default::default(),
    });
    muster_collector::service::start_configured_campaigns(&state).await?;
    tokio::spawn(muster_collector::service::reevaluate_all(state.clone()));
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let mut background = muster_collector::siem::export::start(state.clone(), stopping.clone());
    background.push(tokio::spawn(muster_collector::siem::sweep::run(
        state.clone(),
        stopping.clone(),
    )));
    if let Some(l) = metrics_listener {
        tracing::info!(listen = %l.local_addr()?, "metrics served at /metrics");
        let mut stopping = stopping.clone();
        let state = state.clone();
        background.push(tokio::spawn(async move {
            let stopped = async move {
                let _ = stopping.wait_for(|s| *s).await;
            };
            if let Err(e) = muster_collector::metrics::serve(l, state, stopped).await {
                tracing::error!(error = %e, "metrics endpoint failed");
            }
        }));
    }
    let (tls_now, tls) = tokio::sync::watch::channel(Arc::new(tls));
    if let Some(l) = http_listener {
        tracing::info!(listen = %l.local_addr()?, "HTTP API served at /api/v1/, the console at /");
        let mut stopping = stopping.clone();
        let (state, tls) = (state.clone(), tls.clone());
        background.push(tokio::spawn(async move {
            let stopped = async move {
                let _ = stopping.wait_for(|s| *s).await;
            };
            if let Err(e) = muster_collector::api::serve(l, tls, state, stopped).await {
                tracing::error!(error = %e, "the HTTP API failed");
            }
        }));
    }
    tokio::spawn(reload_on_sighup(
        dir.clone(),
        tls_now,
        tickets,
        state.clone(),
    ));
    let result = serve(listener, tls, state, async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    })
    .await;
    // Exporters confirm what they sent and release their leases.
    for task in background {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), task).await;
    }
    store.close().await;
    tracing::info!("collector stopped; database closed");
    result
}

/// A TOML basic string holding `s`.
fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

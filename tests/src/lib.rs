//! Test harness: builds the real binaries once, then starts real collectors
//! and agents in temporary folders on loopback. Nothing is mocked.

pub mod browser;
pub mod fleetgen;
pub mod https;
pub mod openapi;
pub mod sample;
pub mod seed;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The folder holding the workspace's binaries, built on first use.
pub fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // target/<profile>/deps/<test-binary> or target/<profile>/<bench-binary>
        let exe = std::env::current_exe().expect("test binary path");
        let mut dir = exe.parent().expect("target dir").to_path_buf();
        if dir.file_name().is_some_and(|n| n == "deps") {
            dir.pop();
        }
        // The binaries are built with the profile this program was built
        // with (the folder's name), so a bench run with `--profile dist`
        // measures the agent as shipped.
        let profile = dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("debug")
            .to_string();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args([
            "build",
            "-q",
            "--bins",
            "-p",
            "muster-agent",
            "-p",
            "muster-collector",
        ]);
        if profile != "debug" {
            cmd.args(["--profile", &profile]);
        }
        // Cargo gives a test the variables of the package it belongs to;
        // build scripts that watch them (ring's watches
        // CARGO_MANIFEST_DIR) would then rebuild here, and again in the
        // next plain `cargo test`, each time.
        for (name, _) in std::env::vars_os() {
            let n = name.to_string_lossy();
            if n.starts_with("CARGO_PKG_")
                || n.starts_with("CARGO_MANIFEST_")
                || matches!(
                    &*n,
                    "CARGO_CRATE_NAME"
                        | "CARGO_BIN_NAME"
                        | "CARGO_PRIMARY_PACKAGE"
                        | "CARGO_TARGET_TMPDIR"
                        | "OUT_DIR"
                )
            {
                cmd.env_remove(&name);
            }
        }
        let st = cmd.status().expect("run cargo build");
        assert!(st.success(), "cargo build of the binaries failed");
        dir
    })
}

/// A command for one of the binaries: `muster-collector`, `muster-agent`, `muster`.
pub fn cmd(name: &str) -> Command {
    let mut c = Command::new(bin_dir().join(name));
    c.env_remove("MUSTER_COLLECTOR")
        .env_remove("MUSTER_IDENTITY")
        .env_remove("MUSTER_PROFILE")
        .env("HOME", "/nonexistent")
        .env("MUSTER_LOG", "info");
    c
}

/// A connection to the SQLite file `options` names, as any SQLite client
/// would open it, with the runtime to use it on.
fn sqlite(
    options: sqlx::sqlite::SqliteConnectOptions,
) -> (tokio::runtime::Runtime, sqlx::SqliteConnection) {
    use sqlx::ConnectOptions;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let conn = rt
        .block_on(options.connect())
        .unwrap_or_else(|e| panic!("{:?}: {e}", options.get_filename()));
    (rt, conn)
}

/// The first column of `query`'s rows in the SQLite file `file`, opened
/// read-only.
pub fn column<T>(file: &Path, query: &'static str) -> Vec<T>
where
    T: for<'r> sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite> + Send + Unpin,
{
    let (rt, mut conn) = sqlite(
        sqlx::sqlite::SqliteConnectOptions::new()
            .filename(file)
            .read_only(true),
    );
    rt.block_on(async {
        let rows = sqlx::query_scalar(query)
            .fetch_all(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{query}: {e}"));
        sqlx::Connection::close(conn).await.unwrap();
        rows
    })
}

/// Runs `statements` in the SQLite file `file`, made if missing.
pub fn sql(file: &Path, statements: &[&str]) {
    let (rt, mut conn) = sqlite(
        sqlx::sqlite::SqliteConnectOptions::new()
            .filename(file)
            .create_if_missing(true),
    );
    rt.block_on(async {
        for s in statements {
            sqlx::query(sqlx::AssertSqlSafe(s.to_string()))
                .execute(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("{s}: {e}"));
        }
        sqlx::Connection::close(conn).await.unwrap();
    })
}

/// Runs a command and returns its output, whatever its exit status.
pub fn run(c: &mut Command) -> Output {
    c.stdin(Stdio::null()).output().expect("spawn")
}

/// Runs a command that must succeed; returns its standard output.
pub fn ok(c: &mut Command) -> String {
    let out = run(c);
    assert!(
        out.status.success(),
        "{:?} failed ({}):\n{}\n{}",
        c,
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// Runs a command that must fail; returns its standard error.
pub fn fails(c: &mut Command) -> String {
    let out = run(c);
    assert!(
        !out.status.success(),
        "{:?} succeeded but should have failed:\n{}",
        c,
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A temporary folder removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A new empty folder under the system temp dir.
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("muster-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
    /// A path inside it.
    pub fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Polls `f` until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// The text of `GET /metrics` from a collector whose `metrics_listen` is
/// `127.0.0.1:PORT`.
pub fn scrape_metrics(port: u16) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("metrics endpoint");
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("response");
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    text
}

/// The value of the sample `name` (labels included, as written) in a
/// scrape.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// A free loopback port (bound then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// A running collector with its data folder.
pub struct Collector {
    /// The data folder (and scratch space for the test).
    pub dir: TempDir,
    /// The listening port.
    pub port: u16,
    /// The HTTP API's port (`--http-listen`).
    pub http_port: u16,
    child: Option<Child>,
}

impl Collector {
    /// Initialises a collector for `localhost` and starts it.
    pub fn start() -> Collector {
        Self::start_with(|_| {})
    }

    /// Like [`Collector::start`], with a chance to edit the data folder
    /// (the config file, say) before it serves.
    pub fn start_with(edit: impl FnOnce(&Path)) -> Collector {
        let dir = TempDir::new("collector");
        ok(cmd("muster-collector")
            .args(["init", "--server-name", "localhost", "--data-dir"])
            .arg(dir.join("c")));
        edit(&dir.join("c"));
        let mut c = Collector {
            dir,
            port: 0,
            http_port: 0,
            child: None,
        };
        c.restart();
        c
    }

    /// Like [`Collector::start`], with `settings` (TOML lines) added to
    /// its config file.
    pub fn start_with_config(settings: &str) -> Collector {
        Self::start_with(|data| {
            let cfg = data.join("collector.toml");
            let text = std::fs::read_to_string(&cfg).expect("collector.toml");
            std::fs::write(cfg, format!("{text}\n{settings}\n")).expect("collector.toml");
        })
    }

    /// A collector keeping its fleet in the PostgreSQL database `url`.
    pub fn start_postgres(url: &str) -> Collector {
        let dir = TempDir::new("collector");
        ok(cmd("muster-collector")
            .args([
                "init",
                "--server-name",
                "localhost",
                "--database",
                url,
                "--data-dir",
            ])
            .arg(dir.join("c")));
        let mut c = Collector {
            dir,
            port: 0,
            http_port: 0,
            child: None,
        };
        c.restart();
        c
    }

    /// A second collector of the same deployment (a copy of this one's data
    /// folder: its CA, server certificate and config, hence its database),
    /// serving on its own port, as behind a load balancer.
    pub fn replica(&self) -> Collector {
        let dir = TempDir::new("replica");
        copy_dir(&self.data(), &dir.join("c"));
        let mut c = Collector {
            dir,
            port: 0,
            http_port: 0,
            child: None,
        };
        c.restart();
        c
    }

    /// The data folder.
    pub fn data(&self) -> PathBuf {
        self.dir.join("c")
    }

    /// `https://localhost:PORT`.
    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.port)
    }

    /// Starts (again, on the same port, so agents find it) and waits until
    /// it accepts connections.
    pub fn restart(&mut self) {
        self.kill();
        if self.port == 0 {
            self.port = free_port();
        }
        // Its own API port, never the default one: collectors of parallel
        // tests would contend for it.
        if self.http_port == 0 {
            self.http_port = free_port();
        }
        let log =
            std::fs::File::create(self.dir.join(&format!("serve-{}.log", self.port))).expect("log");
        let child = cmd("muster-collector")
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{}", self.port),
                "--http-listen",
                &format!("127.0.0.1:{}", self.http_port),
                "--data-dir",
            ])
            .arg(self.data())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start collector");
        self.child = Some(child);
        let port = self.port;
        wait_for(Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        })
        .unwrap_or_else(|| panic!("collector did not listen: {}", self.log()));
    }

    /// Everything the collector logged on its current port.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join(&format!("serve-{}.log", self.port)))
            .unwrap_or_default()
    }

    /// The running collector's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGKILL, no chance to clean up.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends `signal` (`HUP`, `STOP`...) to the running collector.
    pub fn signal(&self, signal: &str) {
        let c = self.child.as_ref().expect("running");
        let _ = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(c.id().to_string())
            .status();
    }

    /// SIGTERM, then waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        c.wait().expect("wait")
    }

    /// A new enrollment token.
    pub fn token(&self, uses: u32, expires: &str) -> String {
        let out = ok(cmd("muster-collector")
            .args([
                "token",
                "create",
                "--uses",
                &uses.to_string(),
                "--expires",
                expires,
                "--data-dir",
            ])
            .arg(self.data()));
        out.lines().last().expect("token line").trim().to_string()
    }

    /// Enrolls an agent into `state` with a one-use token.
    pub fn enroll(&self, state: &Path) {
        self.enroll_with(&self.token(1, "1h"), state);
    }

    /// Enrolls an agent into `state` with `token`; must succeed.
    pub fn enroll_with(&self, token: &str, state: &Path) {
        ok(cmd("muster-agent")
            .args([
                "enroll",
                "--collector",
                &self.url(),
                "--token",
                token,
                "--ca-cert",
            ])
            .arg(self.data().join("ca.pem"))
            .arg("--state-dir")
            .arg(state));
    }

    /// An agent enrolled into `DIR/agent` and a Linux image `DIR/img` named
    /// `hostname` holding `packages`: (state folder, image root).
    pub fn agent_with_image(
        &self,
        hostname: &str,
        packages: &[(&str, &str, &str)],
    ) -> (PathBuf, PathBuf) {
        let (state, root) = (self.dir.join("agent"), self.dir.join("img"));
        self.enroll(&state);
        linux_image(&root, hostname, packages, &[]);
        (state, root)
    }

    /// `muster ... ARGS` as the first operator; must succeed.
    pub fn muster(&self, args: &[&str]) -> String {
        ok(cmd("muster")
            .args(["--collector", &self.url(), "--identity"])
            .arg(self.data().join("operator"))
            .args(args))
    }

    /// A new operator token named `name` (`operator-token create`).
    pub fn operator_token(&self, name: &str, expires: &str) -> String {
        let out = ok(cmd("muster-collector")
            .args([
                "operator-token",
                "create",
                "--name",
                name,
                "--expires",
                expires,
                "--data-dir",
            ])
            .arg(self.data()));
        out.lines().last().expect("token line").trim().to_string()
    }

    /// A client of the HTTP API, trusting the collector's CA; presenting
    /// the identity folder `identity` when given.
    pub fn api(&self, identity: Option<&Path>) -> https::Https {
        https::Https::new(&self.data().join("ca.pem"), self.http_port, identity)
    }

    /// `muster hosts --format json`, parsed: the list of hosts.
    pub fn hosts(&self) -> Vec<serde_json::Value> {
        let v: serde_json::Value =
            serde_json::from_str(&self.muster(&["hosts", "--format", "json"])).expect("hosts json");
        v["hosts"].as_array().expect("hosts array").clone()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A file of the shared real-data fixtures (`../shared/fixtures` beside the
/// checkout); `None`, saying so, in a clone that has none.
pub fn fixture(rel: &str) -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures")
        .join(rel);
    if p.exists() {
        Some(p)
    } else {
        eprintln!(
            "skipped: {} is absent (a clone without ../shared)",
            p.display()
        );
        None
    }
}

/// Copies a folder recursively (files and folders only), keeping modes.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir").flatten() {
        let target = to.join(e.file_name());
        if e.file_type().expect("file type").is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).expect("copy");
        }
    }
}

/// A fresh PostgreSQL database for one test on the server named by
/// `MUSTER_TEST_POSTGRES_URL`, dropped afterwards.
pub struct PgDatabase {
    /// The new database's URL.
    pub url: String,
    server: String,
    name: String,
}

impl PgDatabase {
    /// `None`, saying so, when `MUSTER_TEST_POSTGRES_URL` is not set.
    pub fn create(tag: &str) -> Option<PgDatabase> {
        let Ok(server) = std::env::var("MUSTER_TEST_POSTGRES_URL") else {
            eprintln!("skipped: MUSTER_TEST_POSTGRES_URL is not set (no PostgreSQL to test with)");
            return None;
        };
        let name = format!("muster_{tag}_{}_{}", std::process::id(), rand_suffix());
        pg_admin(&server, &format!("CREATE DATABASE {name}"));
        Some(PgDatabase {
            url: replace_database(&server, &name),
            server,
            name,
        })
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        pg_admin(
            &self.server,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

fn rand_suffix() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    u64::from(t.subsec_nanos()) ^ t.as_secs()
}

fn pg_admin(server: &str, sql: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let pool = sqlx::PgPool::connect(server)
            .await
            .expect("connect to MUSTER_TEST_POSTGRES_URL");
        sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
            .execute(&pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        pool.close().await;
    });
}

/// `url` with its database (the path) replaced by `name`.
pub fn replace_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let start = base.find("://").map(|i| i + 3).unwrap_or(0);
    let end = base[start..]
        .find('/')
        .map(|i| start + i)
        .unwrap_or(base.len());
    format!("{}/{name}{query}", &base[..end])
}

/// Makes a small Linux image under `root`: os-release, hostname, a dpkg
/// status file with `packages` (name, version, status) and unit files.
pub fn linux_image(root: &Path, hostname: &str, packages: &[(&str, &str, &str)], units: &[&str]) {
    let w = |p: &str, text: &str| {
        let p = root.join(p);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    };
    w("etc/hostname", &format!("{hostname}\n"));
    w(
        "etc/os-release",
        "NAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n",
    );
    let status: String = packages
        .iter()
        .map(|(n, v, s)| {
            format!("Package: {n}\nStatus: {s}\nVersion: {v}\nArchitecture: amd64\n\n")
        })
        .collect();
    w("var/lib/dpkg/status", &status);
    for u in units {
        w(
            &format!("lib/systemd/system/{u}"),
            "[Service]\nExecStart=/bin/true\n",
        );
    }
}

/// `muster-agent run --once` for the agent in `state` on the image `root`.
/// `muster-agent run` (the service loop, or once with `--once` in
/// `extra`) on the image `root`, its log going to `log`.
pub fn agent_run(state: &Path, root: &Path, extra: &[&str], log: Stdio) -> std::process::Child {
    cmd("muster-agent")
        .arg("run")
        .args(extra)
        .arg("--state-dir")
        .arg(state)
        .arg("--root")
        .arg(root)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start muster-agent")
}

pub fn agent_once(state: &Path, root: &Path) -> Output {
    run(cmd("muster-agent")
        .args(["run", "--once", "--state-dir"])
        .arg(state)
        .arg("--root")
        .arg(root))
}

/// An agent's state folder's `state.json`, parsed.
pub fn agent_progress(state: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(state.join("state.json")).expect("state.json"))
        .expect("json")
}

//! `muster-collector backup` and `restore`, end to end: a backup taken
//! while a real collector serves holds the fleet and brings it back, into
//! the same folder or a new one; bad backups and a serving collector are
//! refused with a clear error, and the database stays as it was.

use muster_tests::*;
use std::path::Path;

fn backup(data: &Path, out: &Path) -> std::process::Command {
    let mut c = cmd("muster-collector");
    c.args(["backup", "--format", "json", "--data-dir"])
        .arg(data)
        .arg("--out")
        .arg(out);
    c
}

fn restore(data: &Path, from: &Path) -> std::process::Command {
    let mut c = cmd("muster-collector");
    c.args(["restore", "--data-dir"])
        .arg(data)
        .arg("--from")
        .arg(from);
    c
}

/// The hostnames stored in the SQLite file `file`.
fn hostnames_in(file: &Path) -> Vec<String> {
    column(file, "SELECT hostname FROM hosts ORDER BY hostname")
}

fn names(hosts: &[serde_json::Value]) -> Vec<String> {
    hosts
        .iter()
        .map(|h| h["hostname"].as_str().unwrap().to_string())
        .collect()
}

/// A backup taken while the collector serves holds the host; a restore is
/// refused while it serves; once stopped, the restore takes the fleet back
/// to the backup (a host enrolled since is gone, the replaced database is
/// kept whole), and the agent goes on reporting. The same backup restored
/// into a new collector's folder shows the host there.
#[test]
fn a_backup_taken_while_serving_brings_the_fleet_back() {
    let mut c = Collector::start();
    let (state, root) = c.agent_with_image("backed-up", &[("bash", "5.2", "install ok installed")]);
    assert!(agent_once(&state, &root).status.success());

    let out = c.dir.join("fleet.db");
    let v: serde_json::Value = serde_json::from_str(&ok(&mut backup(&c.data(), &out))).unwrap();
    assert_eq!(v["hosts"], 1, "{v}");
    assert!(v["schema_version"].as_i64().unwrap() >= 8, "{v}");
    assert_eq!(
        v["bytes"].as_u64().unwrap(),
        std::fs::metadata(&out).unwrap().len()
    );
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the fleet's data is not for everyone");
    }
    assert_eq!(hostnames_in(&out), ["backed-up"]);
    // No temporary file is left beside it.
    let beside: Vec<_> = std::fs::read_dir(&c.dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.contains("partial"))
        .collect();
    assert!(beside.is_empty(), "{beside:?}");

    // The people's form says the same.
    let text = ok(cmd("muster-collector")
        .args(["backup", "--data-dir"])
        .arg(c.data())
        .arg("--out")
        .arg(c.dir.join("fleet-2.db")));
    assert!(
        text.contains("backup written") && text.contains("1 hosts"),
        "{text}"
    );

    let err = fails(&mut backup(&c.data(), &out));
    assert!(err.contains("exists; refusing to overwrite"), "{err}");

    let err = fails(&mut restore(&c.data(), &out));
    assert!(
        err.contains("a running collector (pid") && err.contains("stop the collector first"),
        "{err}"
    );
    assert!(!c.data().join("muster.db.before-restore").exists());

    // A host that arrives after the backup.
    let later = c.dir.join("agent-later");
    c.enroll(&later);
    let later_root = c.dir.join("img-later");
    linux_image(&later_root, "after-backup", &[], &[]);
    assert!(agent_once(&later, &later_root).status.success());
    assert_eq!(c.hosts().len(), 2);

    assert!(c.terminate().success());
    let said = ok(&mut restore(&c.data(), &out));
    assert!(said.contains("1 hosts"), "{said}");
    assert!(said.contains("muster.db.before-restore"), "{said}");
    c.restart();
    assert_eq!(names(&c.hosts()), ["backed-up"]);
    let kept = c.data().join("muster.db.before-restore");
    assert_eq!(hostnames_in(&kept), ["after-backup", "backed-up"]);
    // The restored collector has the same CA: the agent reports on.
    let out_agent = agent_once(&state, &root);
    assert!(
        out_agent.status.success(),
        "{}",
        String::from_utf8_lossy(&out_agent.stderr)
    );
    assert_eq!(c.hosts().len(), 1);

    // Another machine: a new collector folder, the backup restored into
    // it before it first serves.
    let fresh = Collector::start_with(|data| {
        let said = ok(&mut restore(data, &out));
        assert!(said.contains("1 hosts"), "{said}");
    });
    assert_eq!(names(&fresh.hosts()), ["backed-up"]);
}

/// Bad backups: each refused with an error that names the file and what is
/// wrong with it; the database is not touched and the collector starts on
/// it as before.
#[test]
fn bad_backups_are_refused_and_nothing_is_lost() {
    let mut c = Collector::start();
    let (state, root) = c.agent_with_image("kept", &[("bash", "5.2", "install ok installed")]);
    assert!(agent_once(&state, &root).status.success());
    let good = c.dir.join("good.db");
    ok(&mut backup(&c.data(), &good));
    assert!(c.terminate().success());
    // A backup of a stopped collector works too.
    let stopped = c.dir.join("stopped.db");
    ok(&mut backup(&c.data(), &stopped));
    assert_eq!(hostnames_in(&stopped), ["kept"]);

    let db = c.data().join("muster.db");
    let original = std::fs::read(&db).unwrap();
    let good_bytes = std::fs::read(&good).unwrap();
    let bad = |name: &str, bytes: &[u8]| {
        let p = c.dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };

    let truncated = bad("truncated.db", &good_bytes[..good_bytes.len() / 2]);
    let cut_header = bad("cut-header.db", &good_bytes[..10]);
    let mut garbled = good_bytes.clone();
    let page = u16::from_be_bytes([garbled[16], garbled[17]]) as usize;
    for b in &mut garbled[page..page * 2] {
        *b = 0xA5;
    }
    let garbled = bad("garbled.db", &garbled);
    let other = c.dir.join("other.db");
    sql(&other, &["CREATE TABLE notes (text TEXT)"]);
    let newer = c.dir.join("newer.db");
    std::fs::copy(&good, &newer).unwrap();
    sql(
        &newer,
        &[
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
           VALUES (9999, 'from the future', TRUE, x'00', 0)",
        ],
    );
    let live = c.dir.join("live.db");
    std::fs::copy(&good, &live).unwrap();
    std::fs::write(c.dir.join("live.db-wal"), b"log").unwrap();

    let cases: Vec<(std::path::PathBuf, &str)> = vec![
        (c.dir.join("nowhere.db"), "does not exist"),
        (
            bad("notes.txt", b"not a database at all\n"),
            "is not an SQLite database",
        ),
        (bad("empty.db", b""), "is not an SQLite database"),
        (truncated, "is truncated"),
        (cut_header, "is truncated"),
        (garbled, "is damaged"),
        (
            other,
            "not a Muster collector's (it has no _sqlx_migrations table)",
        ),
        (
            newer,
            "has schema version 9999, newer than this muster-collector knows",
        ),
        (live, "it is a live database, not a backup"),
    ];
    for (file, expected) in &cases {
        let err = fails(&mut restore(&c.data(), file));
        assert!(
            err.contains(expected) && err.contains(&file.display().to_string()),
            "{}: expected {expected:?}, got: {err}",
            file.display()
        );
        assert!(std::fs::read(&db).unwrap() == original, "{err}");
        for leftover in ["muster.db.before-restore", "muster.db.restoring"] {
            assert!(!c.data().join(leftover).exists(), "{leftover} after {err}");
        }
    }

    // An earlier restore's copy is never overwritten.
    std::fs::write(c.data().join("muster.db.before-restore"), b"precious").unwrap();
    let err = fails(&mut restore(&c.data(), &good));
    assert!(err.contains("exists from an earlier restore"), "{err}");
    assert_eq!(
        std::fs::read(c.data().join("muster.db.before-restore")).unwrap(),
        b"precious"
    );
    std::fs::remove_file(c.data().join("muster.db.before-restore")).unwrap();

    let err = fails(&mut backup(&c.data(), &c.dir.join("no/such/folder/x.db")));
    assert!(err.contains("no/such/folder"), "{err}");

    c.restart();
    assert_eq!(names(&c.hosts()), ["kept"]);
}

/// A collector on PostgreSQL: backup and restore say to use PostgreSQL's
/// tools, before connecting anywhere.
#[test]
fn backup_and_restore_point_to_the_postgresql_tools() {
    let dir = TempDir::new("pg-backup");
    let data = dir.join("c");
    ok(cmd("muster-collector")
        .args(["init", "--server-name", "localhost", "--data-dir"])
        .arg(&data));
    let cfg = data.join("collector.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        format!("{text}\ndatabase = \"postgres://muster:secret@127.0.0.1:1/muster\"\n"),
    )
    .unwrap();
    let err = fails(&mut backup(&data, &dir.join("x.db")));
    assert!(
        err.contains("is in PostgreSQL") && err.contains("pg_dump"),
        "{err}"
    );
    assert!(!err.contains("secret"), "the password is not shown: {err}");
    let err = fails(&mut restore(&data, &dir.join("x.db")));
    assert!(err.contains("pg_restore"), "{err}");
}

//! Tests of the hive reader: against the `regf` crate on real hives, on
//! hives that crate writes, on hand-built odd shapes, and on damage.

use super::*;
use proptest::prelude::*;
use regf::DataType;
use regf::writer::HiveBuilder;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

const NO_CELL: u32 = 0xFFFF_FFFF;
const CACHE_LIMIT: usize = MAX_CACHED_BLOCKS * BLOCK_SIZE as usize;

/// Path of a fixture, read in place; `None` (with a message) when absent.
fn fixture(name: &str) -> Option<PathBuf> {
    crate::sources::fixture(&format!("windows-registry/{name}"))
}

/// A temporary file, removed on drop.
struct Temp(PathBuf);

impl Temp {
    fn new(bytes: &[u8]) -> Temp {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("regf-reader-{}-{n}", std::process::id()));
        std::fs::write(&p, bytes).unwrap();
        Temp(p)
    }
    fn open(&self) -> Result<Hive, HiveError> {
        Hive::open(&self.0)
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn utf16z(s: &str) -> Vec<u8> {
    s.encode_utf16()
        .chain([0])
        .flat_map(u16::to_le_bytes)
        .collect()
}

fn multi(parts: &[&str]) -> Vec<u8> {
    let mut out: Vec<u8> = parts.iter().flat_map(|p| utf16z(p)).collect();
    out.extend([0, 0]);
    out
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// Visits each key reachable from the root once (at most `budget` keys),
/// reading its values and looking one subkey and one value up by name.
fn walk(hive: &Hive, budget: usize, f: &mut dyn FnMut(&Key)) -> usize {
    let Ok(root) = hive.root() else { return 0 };
    let mut seen = HashSet::new();
    let mut stack = vec![root];
    while let Some(key) = stack.pop() {
        if seen.len() >= budget || !seen.insert(key.cell_offset()) {
            continue;
        }
        f(&key);
        if let Some(v) = key.values().unwrap_or_default().first() {
            let _ = key.value(&v.name.to_lowercase());
        }
        if let Ok(subkeys) = key.subkeys() {
            if let Some(s) = subkeys.last() {
                let _ = key.subkey(&s.name().to_uppercase());
            }
            stack.extend(subkeys.into_iter().rev());
        }
    }
    seen.len()
}

/// Compares the whole tree below `mine` with regf's view of it.
fn compare(path: &str, mine: &Key, theirs: &regf::hive::RegistryKey, keys: &mut usize) {
    *keys += 1;
    assert_eq!(mine.name(), theirs.name(), "key name at {path}");
    let ours: Vec<(String, u32, Vec<u8>)> = mine
        .values()
        .unwrap()
        .into_iter()
        .map(|v| (v.name, v.kind, v.data))
        .collect();
    let other: Vec<(String, u32, Vec<u8>)> = theirs
        .values()
        .unwrap()
        .iter()
        .map(|v| (v.name(), v.raw_data_type(), v.raw_data().unwrap()))
        .collect();
    assert_eq!(ours.len(), other.len(), "value count at {path}");
    for (a, b) in ours.iter().zip(&other) {
        assert!(
            a == b,
            "value {:?} at {path}: ours {:?}/{} bytes, regf {:?}/{} bytes",
            a.0,
            a.1,
            a.2.len(),
            b.1,
            b.2.len()
        );
    }
    if let Some((name, kind, data)) = ours.last() {
        let v = mine.value(&name.to_uppercase()).unwrap().unwrap();
        assert_eq!((v.kind, &v.data), (*kind, data), "value lookup at {path}");
    }
    let subs = mine.subkeys().unwrap();
    let theirs_subs = theirs.subkeys().unwrap();
    let names: Vec<&str> = subs.iter().map(|k| k.name()).collect();
    let other_names: Vec<String> = theirs_subs.iter().map(|k| k.name()).collect();
    assert_eq!(names, other_names, "subkeys of {path}");
    if let Some(last) = subs.last() {
        let found = mine.subkey(&last.name().to_lowercase()).unwrap().unwrap();
        assert_eq!(
            found.cell_offset(),
            last.cell_offset(),
            "subkey lookup at {path}"
        );
    }
    for (a, b) in subs.iter().zip(&theirs_subs) {
        compare(&format!("{path}\\{}", a.name()), a, b, keys);
    }
}

fn cross_check_file(path: &Path) -> usize {
    let mine = Hive::open(path).unwrap();
    let theirs = regf::RegistryHive::from_file(path).unwrap();
    let mut keys = 0;
    compare(
        "",
        &mine.root().unwrap(),
        &theirs.root_key().unwrap(),
        &mut keys,
    );
    keys
}

fn cross_check_fixture(name: &str) {
    if let Some(p) = fixture(name) {
        let keys = cross_check_file(&p);
        eprintln!("{name}: {keys} keys identical to regf");
    }
}

#[test]
fn cross_check_system() {
    cross_check_fixture("regipy_SYSTEM");
}

#[test]
fn cross_check_system_2_dirty() {
    cross_check_fixture("regipy_SYSTEM_2");
}

#[test]
fn cross_check_software_delta() {
    cross_check_fixture("scancode_Software_Delta");
}

#[test]
fn cross_check_ntuser_software_partial() {
    cross_check_fixture("regipy_ntuser_software_partial");
}

#[test]
fn cross_check_amcache() {
    cross_check_fixture("dfirartifactmuseum_Amcache.hve");
}

fn string(key: &Key, name: &str) -> String {
    key.value(name).unwrap().unwrap().string().unwrap()
}

fn dword(key: &Key, name: &str) -> u32 {
    key.value(name).unwrap().unwrap().dword().unwrap()
}

#[test]
fn facts_system() {
    let Some(p) = fixture("regipy_SYSTEM") else {
        return;
    };
    let hive = Hive::open(&p).unwrap();
    assert_eq!(
        hive.root().unwrap().name(),
        "CMI-CreateHive{F10156BE-0E87-4EFB-969E-5DA29D131144}"
    );
    let top: Vec<String> = hive
        .root()
        .unwrap()
        .subkeys()
        .unwrap()
        .iter()
        .map(|k| k.name().to_string())
        .collect();
    assert_eq!(
        top,
        [
            "ControlSet001",
            "ControlSet002",
            "MountedDevices",
            "RNG",
            "Select",
            "Setup",
            "Software",
            "WPA"
        ]
    );
    let select = hive.open_key("Select").unwrap().unwrap();
    let current = dword(&select, "Current");
    assert_eq!((current, dword(&select, "LastKnownGood")), (1, 2));
    let cs = format!("ControlSet{current:03}");
    let cn = hive
        .open_key(&format!("{cs}\\Control\\ComputerName\\ComputerName"))
        .unwrap()
        .unwrap();
    assert_eq!(string(&cn, "ComputerName"), "WKS-WIN732BITA");
    let services = hive.open_key("controlset001\\SERVICES").unwrap().unwrap();
    assert_eq!(services.name(), "services"); // stored in lower case in this hive
    assert_eq!(services.subkeys().unwrap().len(), 467);
    let two = hive
        .open_key("\\ControlSet002\\Services\\")
        .unwrap()
        .unwrap();
    assert_eq!(two.subkeys().unwrap().len(), 466);
    let mcshield = services.subkey("mcshield").unwrap().unwrap();
    assert_eq!(string(&mcshield, "DisplayName"), "McAfee McShield");
    assert_eq!(
        (dword(&mcshield, "start"), dword(&mcshield, "TYPE")),
        (2, 16)
    );
    let image = mcshield.value("ImagePath").unwrap().unwrap();
    assert_eq!(image.kind, 2);
    assert_eq!(
        image.string().unwrap(),
        r#""C:\Program Files\Common Files\McAfee\SystemCore\\mcshield.exe""#
    );
    assert_eq!(
        mcshield
            .value("DependOnService")
            .unwrap()
            .unwrap()
            .strings()
            .unwrap(),
        ["mfevtp"]
    );
    let hidk = services.subkey("MFEHIDK").unwrap().unwrap();
    assert_eq!((dword(&hidk, "Start"), dword(&hidk, "Type")), (0, 1));
    assert_eq!(string(&hidk, "ImagePath"), r"system32\drivers\mfehidk.sys");
    // 50892 bytes: stored as big data ("db") in this 1.5 hive.
    assert_eq!(hidk.value("VTPCerts").unwrap().unwrap().data.len(), 50_892);
    for name in [
        "McAfeeFramework",
        "McTaskManager",
        "enterceptAgent",
        "mfefire",
        "mfevtp",
        "mfewfpk",
        "HipShieldK",
    ] {
        assert!(services.subkey(name).unwrap().is_some(), "{name}");
    }
    let defend = services.subkey("WinDefend").unwrap().unwrap();
    assert_eq!(dword(&defend, "Start"), 3);
    assert_eq!(
        string(&defend, "ImagePath"),
        r"%SystemRoot%\System32\svchost.exe -k secsvcs"
    );
    let env = hive
        .open_key(r"ControlSet001\Control\Session Manager\Environment")
        .unwrap()
        .unwrap();
    assert_eq!(string(&env, "processor_architecture"), "x86");
    let order = hive
        .open_key(r"ControlSet001\Control\ServiceGroupOrder")
        .unwrap()
        .unwrap();
    assert_eq!(
        order.value("List").unwrap().unwrap().strings().unwrap()[..2],
        ["System Reserved", "EMS"]
    );
    assert!(
        hive.open_key(r"ControlSet001\Services\NoSuchService")
            .unwrap()
            .is_none()
    );
    assert!(hive.open_key(r"NoSuchKey\Services").unwrap().is_none());
    assert!(mcshield.value("NoSuchValue").unwrap().is_none());
    assert_eq!(
        hive.open_key("").unwrap().unwrap().name(),
        hive.root().unwrap().name()
    );
}

#[test]
fn facts_other_fixtures() {
    if let Some(p) = fixture("regipy_SYSTEM_2") {
        let hive = Hive::open(&p).unwrap();
        let wd = hive
            .open_key(r"ControlSet001\Services\WinDefend")
            .unwrap()
            .unwrap();
        assert_eq!(
            string(&wd, "ImagePath"),
            r#""%ProgramFiles%\Windows Defender\MsMpEng.exe""#
        );
        let boot = hive
            .open_key(r"ControlSet001\Services\WdBoot")
            .unwrap()
            .unwrap();
        // The stored string really ends with a line feed.
        assert_eq!(
            string(&boot, "SignaturesVersion"),
            "1.260 (1) (1.155.266.0) (1.1.9700.0)\n"
        );
    }
    if let Some(p) = fixture("scancode_Software_Delta") {
        let hive = Hive::open(&p).unwrap();
        let un = hive
            .open_key(r"Microsoft\Windows\CurrentVersion\Uninstall")
            .unwrap()
            .unwrap();
        assert_eq!(un.subkeys().unwrap().len(), 7);
        let py = un
            .subkey("{fbb6299d-cb58-4177-b6a0-63bfb1c8c3ae}")
            .unwrap()
            .unwrap();
        assert_eq!(
            string(&py, "DisplayName"),
            "Python 3.9.5 Core Interpreter (64-bit)"
        );
        assert_eq!(dword(&py, "EstimatedSize"), 4404);
        assert_eq!(py.value("UninstallString").unwrap().unwrap().kind, 2);
    }
    if let Some(p) = fixture("regipy_ntuser_software_partial") {
        let hive = Hive::open(&p).unwrap();
        let gk = hive
            .open_key(r"Microsoft\Windows\CurrentVersion\Uninstall\gitkraken")
            .unwrap()
            .unwrap();
        assert_eq!(
            (
                string(&gk, "DisplayVersion").as_str(),
                dword(&gk, "EstimatedSize")
            ),
            ("5.0.4", 119_278)
        );
    }
    if let Some(p) = fixture("dfirartifactmuseum_Amcache.hve") {
        let hive = Hive::open(&p).unwrap();
        let apps = hive
            .open_key(r"Root\InventoryApplication")
            .unwrap()
            .unwrap();
        assert_eq!(apps.subkeys().unwrap().len(), 90);
        let zip = apps
            .subkey("00003942b4a5b0d77eaf8e5449c4887179bc0000ffff")
            .unwrap()
            .unwrap();
        assert_eq!(string(&zip, "Name"), "7-Zip 21.07 (x64)");
    }
}

#[test]
fn cache_stays_bounded_on_full_walk() {
    let Some(p) = fixture("regipy_SYSTEM") else {
        return;
    };
    let hive = Hive::open(&p).unwrap();
    let mut max = 0;
    let keys = walk(&hive, usize::MAX, &mut |_| {
        max = max.max(hive.cached_bytes())
    });
    assert!(keys > 10_000, "{keys} keys");
    assert!(max <= CACHE_LIMIT, "cache held {max} bytes");
    assert!(
        max > CACHE_LIMIT / 2,
        "an 11 MB hive should fill the cache ({max})"
    );
}

/// A hive made by regf's writer holding the cases the format has.
fn built_hive(minor: u32, subkeys: usize) -> Vec<u8> {
    let mut b = HiveBuilder::new_with_version("ROOT", minor).unwrap();
    let root = b.root_offset();
    let many = b.add_key(root, "Many").unwrap();
    for i in 0..subkeys {
        b.add_key(many, &format!("k{i:04}")).unwrap();
    }
    let uni = b.add_key(root, "Ünïcode").unwrap();
    let cjk = b.add_key(uni, "注册表").unwrap();
    b.add_value(cjk, "名前", DataType::String, &utf16z("値"))
        .unwrap();
    let v = b.add_key(root, "Values").unwrap();
    b.add_value(v, "", DataType::String, &utf16z("default!"))
        .unwrap();
    b.add_value(v, "Small", DataType::Dword, &0x1234_5678u32.to_le_bytes())
        .unwrap();
    b.add_value(v, "BE", DataType::DwordBigEndian, &[0, 0, 1, 2])
        .unwrap();
    b.add_value(v, "Q", DataType::Qword, &u64::MAX.to_le_bytes())
        .unwrap();
    b.add_value(v, "Big", DataType::Binary, &pattern(40_000))
        .unwrap();
    b.add_value(
        v,
        "Path",
        DataType::ExpandString,
        &utf16z(r"%SystemRoot%\x"),
    )
    .unwrap();
    b.add_value(v, "Multi", DataType::MultiString, &multi(&["a", "bc"]))
        .unwrap();
    b.add_value(v, "Empty", DataType::Binary, &[]).unwrap();
    b.add_value(v, "Ärger", DataType::Dword, &[1, 0, 0, 0])
        .unwrap();
    b.to_bytes().unwrap()
}

#[test]
fn built_hives_all_features() {
    for minor in [3, 5, 6] {
        let t = Temp::new(&built_hive(minor, 1200));
        let hive = t.open().unwrap();
        assert_eq!(hive.root().unwrap().name(), "ROOT");
        let many = hive.open_key("many").unwrap().unwrap();
        let names: Vec<String> = many
            .subkeys()
            .unwrap()
            .iter()
            .map(|k| k.name().to_string())
            .collect();
        let expected: Vec<String> = (0..1200).map(|i| format!("k{i:04}")).collect();
        assert_eq!(names, expected, "1.{minor}");
        assert_eq!(many.subkey("K0999").unwrap().unwrap().name(), "k0999");
        // The writer splits 1200 subkeys into an "ri" of lf (1.3) or lh lists.
        let leaf: &[u8] = if minor == 3 { b"lf" } else { b"lh" };
        let (_, ri) = hive.record(many.subkey_list, 8, b"ri", "ri").unwrap();
        hive.record(le32(&ri, 4), 4, leaf, "leaf").unwrap();
        let cjk = hive.open_key("üNÏCODE\\注册表").unwrap().unwrap();
        assert_eq!(cjk.name(), "注册表");
        assert_eq!(string(&cjk, "名前"), "値");
        let v = hive.open_key("Values").unwrap().unwrap();
        assert_eq!(string(&v, ""), "default!");
        assert_eq!(v.value("").unwrap().unwrap().name, "");
        assert_eq!(dword(&v, "small"), 0x1234_5678);
        assert_eq!(dword(&v, "be"), 0x0102);
        assert_eq!(v.value("q").unwrap().unwrap().data, u64::MAX.to_le_bytes());
        assert_eq!(v.value("BIG").unwrap().unwrap().data, pattern(40_000));
        let big = v.value_offsets().unwrap()[4];
        let big = hive.raw_value(big).unwrap();
        assert_eq!(big.value.name, "Big");
        let db = hive.record(big.data_off, 8, b"db", "big data");
        assert_eq!(db.is_ok(), minor >= 4, "1.{minor} big data as \"db\"");
        let path = v.value("Path").unwrap().unwrap();
        assert_eq!(
            (path.kind, path.string().unwrap().as_str()),
            (2, r"%SystemRoot%\x")
        );
        assert_eq!(
            v.value("Multi").unwrap().unwrap().strings().unwrap(),
            ["a", "bc"]
        );
        assert_eq!(v.value("Empty").unwrap().unwrap().data, b"");
        assert_eq!(dword(&v, "äRGER"), 1);
        assert_eq!(v.values().unwrap().len(), 9);
        assert_eq!(cross_check_file(&t.0), 1200 + 5);
    }
}

/// A hand-made hive (one hive bin, cells appended in order) for shapes
/// regf's writer does not make: `li`, nested `ri`, loops and bad sizes.
struct Raw(Vec<u8>);

impl Raw {
    fn new() -> Raw {
        let mut bin = b"hbin".to_vec();
        bin.resize(32, 0);
        Raw(bin)
    }
    fn cell(&mut self, body: &[u8]) -> u32 {
        let off = self.0.len();
        let size = (body.len() + 4).div_ceil(8) * 8;
        self.0.extend((-(size as i32)).to_le_bytes());
        self.0.extend(body);
        self.0.resize(off + size, 0);
        off as u32
    }
    fn put(&mut self, cell: u32, at: usize, v: u32) {
        let p = cell as usize + 4 + at;
        self.0[p..p + 4].copy_from_slice(&v.to_le_bytes());
    }
    fn nk(&mut self, name: &str, subkeys: (u32, u32), values: (u32, u32)) -> u32 {
        let mut b = vec![0u8; NK_FIXED as usize];
        b[..4].copy_from_slice(&[b'n', b'k', 0x20, 0]);
        b[0x48..0x4A].copy_from_slice(&(name.len() as u16).to_le_bytes());
        b.extend(name.bytes());
        let c = self.cell(&b);
        for (at, v) in [
            (0x14, subkeys.0),
            (0x1C, subkeys.1),
            (0x20, NO_CELL),
            (0x24, values.0),
            (0x28, values.1),
        ] {
            self.put(c, at, v);
        }
        c
    }
    fn vk(&mut self, name: &str, kind: u32, size: u32, data: u32) -> u32 {
        let mut b = vec![0u8; VK_FIXED as usize];
        b[..4].copy_from_slice(&[b'v', b'k', name.len() as u8, 0]);
        b[0x10] = 1;
        b.extend(name.bytes());
        let c = self.cell(&b);
        for (at, v) in [(0x04, size), (0x08, data), (0x0C, kind)] {
            self.put(c, at, v);
        }
        c
    }
    fn list(&mut self, sig: &[u8; 2], entries: &[u32]) -> u32 {
        let mut b = sig.to_vec();
        b.extend((entries.len() as u16).to_le_bytes());
        for e in entries {
            b.extend(e.to_le_bytes());
            if sig == b"lf" || sig == b"lh" {
                b.extend([0; 4]);
            }
        }
        self.cell(&b)
    }
    fn u32s(&mut self, entries: &[u32]) -> u32 {
        self.cell(
            &entries
                .iter()
                .flat_map(|e| e.to_le_bytes())
                .collect::<Vec<_>>(),
        )
    }
    fn file(&self, root: u32, minor: u32) -> Vec<u8> {
        let mut bins = self.0.clone();
        let size = bins.len().div_ceil(4096) * 4096;
        bins.extend(((size - bins.len()) as i32).to_le_bytes());
        bins.resize(size, 0);
        bins[8..12].copy_from_slice(&(size as u32).to_le_bytes());
        let mut base = vec![0u8; 4096];
        base[..4].copy_from_slice(b"regf");
        for (at, v) in [
            (4, 1),
            (8, 1),
            (0x14, 1),
            (0x18, minor),
            (0x20, 1),
            (0x24, root),
            (0x28, size as u32),
        ] {
            base[at..at + 4].copy_from_slice(&v.to_le_bytes());
        }
        base.extend(bins);
        base
    }
    fn hive(&self, root: u32) -> (Temp, Hive) {
        let t = Temp::new(&self.file(root, 5));
        let h = t.open().unwrap();
        (t, h)
    }
}

fn names(keys: &[Key]) -> Vec<String> {
    keys.iter().map(|k| k.name().to_string()).collect()
}

#[test]
fn raw_li_and_nested_ri_and_values() {
    let mut r = Raw::new();
    let [a, b, c, d] = ["a", "b", "c", "d"].map(|n| r.nk(n, (0, NO_CELL), (0, NO_CELL)));
    let li = r.list(b"li", &[a]);
    let lf = r.list(b"lf", &[b]);
    let inner = r.list(b"ri", &[li, lf]);
    let lh = r.list(b"lh", &[c]);
    let li2 = r.list(b"li", &[d]);
    let deep = r.list(b"ri", &[li2]);
    let deeper = r.list(b"ri", &[deep]);
    let top = r.list(b"ri", &[inner, lh, deeper]);
    let data = r.cell(&utf16z("hello"));
    let vals = [
        r.vk("", 1, 12, data),
        r.vk("Inline", 4, DATA_INLINE | 4, 7),
        r.vk("Short", 3, DATA_INLINE | 2, 0x0302),
        r.vk("Broken", 1, 12, 0x7FFF_0000),
    ];
    let vlist = r.u32s(&vals);
    let root = r.nk("R", (4, top), (4, vlist));
    let (_t, h) = r.hive(root);
    let k = h.root().unwrap();
    assert_eq!(names(&k.subkeys().unwrap()), ["a", "b", "c", "d"]);
    assert_eq!(h.open_key("D").unwrap().unwrap().name(), "d");
    // The value whose data offset is outside the hive is left out of values()...
    let got: Vec<String> = k.values().unwrap().into_iter().map(|v| v.name).collect();
    assert_eq!(got, ["", "Inline", "Short"]);
    assert_eq!(string(&k, ""), "hello");
    assert_eq!(dword(&k, "inline"), 7);
    assert_eq!(k.value("short").unwrap().unwrap().data, [2, 3]);
    // ...and is an error when asked for by name.
    let e = k.value("broken").unwrap_err();
    assert!(e.to_string().contains("outside the hive-bins data"), "{e}");
    assert_eq!(e.cell_offset(), Some(0x7FFF_0000));
}

#[test]
fn raw_loops_and_depth_limits() {
    let mut r = Raw::new();
    let a = r.nk("a", (0, NO_CELL), (0, NO_CELL));
    let leaf = r.list(b"li", &[a]);
    let self_ri = r.list(b"ri", &[leaf, 0]);
    r.put(self_ri, 8, self_ri); // second entry points at the list itself
    let looped = r.nk("looped", (2, self_ri), (0, NO_CELL));
    let mut nested = leaf;
    for _ in 0..5 {
        nested = r.list(b"ri", &[nested]);
    }
    let too_deep = r.nk("deep", (1, nested), (0, NO_CELL));
    let (mut four, mut chain) = (leaf, Vec::new());
    for _ in 0..4 {
        four = r.list(b"ri", &[four]);
        chain.push(four);
    }
    let four_deep = r.nk("four", (1, four), (0, NO_CELL));
    // A key that lists itself and its parent as subkeys.
    let cyc_list = r.list(b"lh", &[0, 0]);
    let cyclic = r.nk("cyclic", (2, cyc_list), (0, NO_CELL));
    let top = r.list(b"lf", &[looped, too_deep, four_deep, cyclic]);
    let root = r.nk("R", (4, top), (0, NO_CELL));
    r.put(cyc_list, 4, cyclic);
    r.put(cyc_list, 12, root);
    let (_t, h) = r.hive(root);
    let e = h
        .open_key("looped")
        .unwrap()
        .unwrap()
        .subkeys()
        .unwrap_err();
    assert!(e.to_string().contains("loop"), "{e}");
    let e = h.open_key("deep").unwrap().unwrap().subkeys().unwrap_err();
    assert!(e.to_string().contains("nested deeper than 4"), "{e}");
    assert_eq!(
        names(&h.open_key("four").unwrap().unwrap().subkeys().unwrap()),
        ["a"]
    );
    assert!(
        h.open_key(r"cyclic\cyclic\R\cyclic\CYCLIC")
            .unwrap()
            .is_some()
    );
    assert_eq!(walk(&h, 1000, &mut |_| ()), 6); // R, looped, deep, four, a, cyclic
}

#[test]
fn raw_limits_and_bad_cells() {
    let mut r = Raw::new();
    let good = r.nk("good", (0, NO_CELL), (0, NO_CELL));
    let bad_vk = r.vk("not a key", 4, DATA_INLINE | 4, 1);
    let tiny = r.cell(&[]);
    let list = r.list(b"lf", &[bad_vk, good, 0x7FFF_FFF8, 3, tiny]);
    let mixed = r.nk("mixed", (5, list), (0, NO_CELL));
    let big_list = r.u32s(&[0; 16]);
    let subkey_limit = r.nk("subkeys", (MAX_SUBKEYS + 1, big_list), (0, NO_CELL));
    let value_limit = r.nk("values", (0, NO_CELL), (MAX_VALUES + 1, big_list));
    let huge = r.vk("Huge", 3, MAX_VALUE_DATA + 1, big_list);
    let inline5 = r.vk("Inline5", 4, DATA_INLINE | 5, 0);
    let short_cell = r.vk("Short", 3, 100, big_list);
    let vlist = r.u32s(&[huge, inline5, short_cell, good]);
    let bad_values = r.nk("badvalues", (0, NO_CELL), (4, vlist));
    let far_list = r.nk("farlist", (1, 0x7FFF_FFF8), (1, 0x10));
    let top = r.list(
        b"lh",
        &[mixed, subkey_limit, value_limit, bad_values, far_list],
    );
    let root = r.nk("R", (5, top), (0, NO_CELL));
    r.0[tiny as usize..tiny as usize + 4].copy_from_slice(&i32::MIN.to_le_bytes());
    let (_t, h) = r.hive(root);
    let key = |p: &str| h.open_key(p).unwrap().unwrap();
    assert_eq!(names(&key("mixed").subkeys().unwrap()), ["good"]);
    let e = key("subkeys").subkeys().unwrap_err().to_string();
    assert!(e.contains("100001 subkeys (limit 100000)"), "{e}");
    let e = key("values").values().unwrap_err().to_string();
    assert!(e.contains("10001 values (limit 10000)"), "{e}");
    assert!(key("badvalues").values().unwrap().is_empty());
    let e = key("badvalues").value("huge").unwrap_err().to_string();
    assert!(e.contains("exceeds the 1048576-byte limit"), "{e}");
    let e = key("badvalues").value("inline5").unwrap_err().to_string();
    assert!(e.contains("inline data length 5"), "{e}");
    let e = key("badvalues").value("short").unwrap_err().to_string();
    assert!(e.contains("needs 100 bytes"), "{e}");
    let e = key("farlist").subkeys().unwrap_err().to_string();
    assert!(
        e.contains("outside the hive-bins data") && e.contains("0x7ffffff8"),
        "{e}"
    );
    assert!(key("farlist").values().is_err());
}

fn open_err(bytes: &[u8]) -> String {
    Temp::new(bytes).open().unwrap_err().to_string()
}

#[test]
fn open_rejects_bad_files() {
    let good = built_hive(6, 3);
    let patched = |at: usize, v: &[u8]| {
        let mut b = good.clone();
        b[at..at + v.len()].copy_from_slice(v);
        b
    };
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            Vec::new(),
            "file is 0 bytes, shorter than the 4096-byte base block",
        ),
        (
            good[..4095].to_vec(),
            "shorter than the 4096-byte base block",
        ),
        (
            vec![0x5A; 9000],
            "signature at offset 0 is \"ZZZZ\" instead of \"regf\"",
        ),
        (patched(0, b"regx"), "instead of \"regf\""),
        (
            good[..8192].to_vec(),
            "file is truncated: hive-bins data size at offset 0x28",
        ),
        (patched(0x28, &[0, 0, 0, 0x80]), "file is truncated"),
        (patched(0x28, &[1, 2, 0, 0]), "is not a multiple of 4096"),
        (
            patched(0x24, &[0, 0, 0, 1]),
            "root cell offset 0x1000000 at offset 0x24 lies outside",
        ),
        (
            patched(0x24, &[0x21, 0, 0, 0]),
            "key node: cell offset is misaligned",
        ),
        (
            patched(0x24, &[0x20, 0, 0, 0]),
            "key node: signature \"sk\" instead of \"nk\"",
        ),
        (
            patched(0x1C, &[1]),
            "file type 1 at offset 0x1c is not a primary hive",
        ),
        (patched(0x14, &[2]), "unsupported hive version 2.6"),
        (
            patched(4096, b"hbim"),
            "first hive bin at file offset 0x1000 has signature \"hbim\"",
        ),
    ];
    for (bytes, want) in cases {
        let e = open_err(&bytes);
        assert!(e.contains(want), "{e:?} should contain {want:?}");
    }
    let e = Hive::open(Path::new("/nonexistent/hive"))
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("/nonexistent/hive: cannot open"), "{e}");
    let e = open_err(&patched(0x24, &[0x20, 0, 0, 0]));
    assert!(e.ends_with("(cell offset 0x20, file offset 0x1020)"), "{e}");
}

#[test]
fn value_decoding() {
    let v = |kind, data: &[u8]| Value {
        name: String::new(),
        kind,
        data: data.to_vec(),
    };
    assert_eq!(v(1, &utf16z("ab")).string().as_deref(), Some("ab"));
    assert_eq!(v(2, b"a\0b\0\0\0junk").string().as_deref(), Some("ab"));
    assert_eq!(v(1, b"a\0b").string().as_deref(), Some("a"));
    assert_eq!(
        v(1, &[0x00, 0xD8, b'x', 0]).string().as_deref(),
        Some("\u{FFFD}x")
    );
    assert_eq!(v(3, &utf16z("ab")).string(), None);
    assert_eq!(v(7, &utf16z("ab")).string(), None);
    assert_eq!(v(4, &[1, 2, 3, 4, 5]).dword(), Some(0x0403_0201));
    assert_eq!(v(5, &[1, 2, 3, 4]).dword(), Some(0x0102_0304));
    assert_eq!(v(4, &[1, 2, 3]).dword(), None);
    assert_eq!(v(11, &[1, 2, 3, 4]).dword(), None);
    assert_eq!(v(7, &multi(&["x", "yz"])).strings().unwrap(), ["x", "yz"]);
    assert_eq!(v(7, &utf16z("only")).strings().unwrap(), ["only"]);
    assert_eq!(v(7, b"n\0o\0").strings().unwrap(), ["no"]);
    assert!(v(7, &[]).strings().unwrap().is_empty());
    assert_eq!(v(1, &[]).strings(), None);
    assert!(names_equal("straße", "STRAßE") && names_equal("Ünïcode", "üNÏCODE"));
    assert!(!names_equal("a", "ab") && !names_equal("ss", "ß"));
}

/// Opens `bytes` and, if that works, walks it with a bounded budget.
fn open_and_walk(bytes: &[u8]) -> Result<(), TestCaseError> {
    let t = Temp::new(bytes);
    if let Ok(hive) = t.open() {
        let _ = hive.open_key(r"Many\k0003");
        walk(&hive, 2000, &mut |k| {
            for v in k.values().unwrap_or_default() {
                let _ = (v.string(), v.dword(), v.strings());
            }
        });
        prop_assert!(hive.cached_bytes() <= CACHE_LIMIT);
        prop_assert!(hive.reads() < 5_000_000, "{} reads", hive.reads());
    }
    Ok(())
}

/// A small hive built by regf's writer (with an `ri` list and big data)
/// and the file offsets of its allocated cells.
fn small_hive() -> &'static (Vec<u8>, Vec<usize>) {
    static HIVE: OnceLock<(Vec<u8>, Vec<usize>)> = OnceLock::new();
    HIVE.get_or_init(|| {
        let bytes = built_hive(5, 520);
        let (mut cells, mut bin) = (Vec::new(), 4096);
        while bytes.get(bin..bin + 4) == Some(b"hbin") {
            let end = bin + le32(&bytes, bin + 8) as usize;
            let mut at = bin + 32;
            while at < end {
                let size = le32(&bytes, at) as i32;
                if size < 0 {
                    cells.push(at);
                }
                at += size.unsigned_abs() as usize;
            }
            bin = end;
        }
        assert!(cells.len() > 1000);
        // Leave out the 520 leaf keys under "Many" so edits hit the rest.
        let leaf = |&c: &usize| {
            bytes.get(c + 4..c + 6) == Some(b"nk")
                && le32(&bytes, c + 4 + 0x14) == 0
                && le32(&bytes, c + 4 + 0x24) == 0
        };
        let hot: Vec<usize> = cells.iter().copied().filter(|c| !leaf(c)).collect();
        (bytes, hot)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(
        mut bytes in prop::collection::vec(any::<u8>(), 0..10_000),
        regf in any::<bool>(),
    ) {
        if regf && bytes.len() >= 4 {
            bytes[..4].copy_from_slice(b"regf");
        }
        open_and_walk(&bytes)?;
    }

    /// A valid base block, then random hive bins: each word is random, a
    /// small number, or (half of them) the offset of one of the records
    /// (cell size and signature) placed at random, which point at each
    /// other; the root key is the first record.
    #[test]
    fn random_bins_behind_a_valid_header_never_panic(
        words in prop::collection::vec((0u8..6, any::<u32>()), 3 * 1024),
        blocks in 1usize..=3,
        records in prop::collection::vec((any::<usize>(), 0usize..10, 1usize..64), 1..100),
    ) {
        let size = blocks * 4096;
        let marks: Vec<usize> =
            records.iter().map(|r| 0x20 + ((r.0 % (size - 0x100)) & !7)).collect();
        let mut bins = Vec::with_capacity(size);
        for &(kind, v) in &words[..size / 4] {
            let w = match kind {
                0 => v,
                1 => v % 24,
                2 => (v % size as u32) & !7,
                _ => marks[v as usize % marks.len()] as u32,
            };
            bins.extend(w.to_le_bytes());
        }
        let sigs: [&[u8; 2]; 10] =
            [b"nk", b"vk", b"lf", b"lh", b"li", b"ri", b"db", b"nk", b"nk", b"vk"];
        let kinds: Vec<(usize, &[u8; 2], usize)> = records
            .iter()
            .zip(&marks)
            .enumerate()
            .map(|(i, (r, &at))| if i == 0 { (at, sigs[0], 32) } else { (at, sigs[r.1], r.2) })
            .collect();
        // Replaces the word at `at` by the offset of a record of one of the `wanted` kinds.
        let link = |bins: &mut Vec<u8>, at: usize, wanted: &[&[u8; 2]]| {
            let choices: Vec<usize> =
                kinds.iter().filter(|k| wanted.contains(&k.1)).map(|k| k.0).collect();
            if !choices.is_empty() {
                let pick = choices[le32(bins, at) as usize % choices.len()] as u32;
                bins[at..at + 4].copy_from_slice(&pick.to_le_bytes());
            }
        };
        let lists: [&[u8; 2]; 4] = [b"lf", b"lh", b"li", b"ri"];
        for &(at, sig, len) in kinds.iter().rev() {
            bins[at..at + 4].copy_from_slice(&(-8 * len as i32).to_le_bytes());
            bins[at + 4..at + 6].copy_from_slice(sig);
            // Name length, or the entry count of a list: small.
            let name_len = if sig == b"nk" { at + 4 + 0x48 } else { at + 4 + 2 };
            bins[name_len..name_len + 2].copy_from_slice(&[(len % 8) as u8, 0]);
            if sig == b"nk" {
                bins[at + 0x18..at + 0x1C].copy_from_slice(&(len as u32 % 5).to_le_bytes());
                bins[at + 0x28..at + 0x2C].copy_from_slice(&(len as u32 % 3).to_le_bytes());
                link(&mut bins, at + 0x20, &lists);
            } else if lists.contains(&sig) {
                let stride = if sig == b"lf" || sig == b"lh" { 8 } else { 4 };
                let targets: &[&[u8; 2]] = if sig == b"ri" { &lists } else { &[b"nk"] };
                for e in 0..len % 8 {
                    link(&mut bins, at + 8 + stride * e, targets);
                }
            }
        }
        bins[..4].copy_from_slice(b"hbin");
        let mut file = small_hive().0[..4096].to_vec();
        file[0x24..0x28].copy_from_slice(&(marks[0] as u32).to_le_bytes());
        file[0x28..0x2C].copy_from_slice(&(size as u32).to_le_bytes());
        file.extend(bins);
        open_and_walk(&file)?;
    }

    /// A real hive with bytes overwritten: anywhere, inside the headers of
    /// cells, or as offset fields re-pointed at other cells (loops).
    #[test]
    fn damaged_hive_never_panics_or_hangs(
        edits in prop::collection::vec(
            (0usize..3, any::<usize>(), any::<usize>(), any::<u8>()),
            1..48,
        ),
    ) {
        let (original, cells) = small_hive();
        let mut bytes = original.clone();
        let len = bytes.len();
        for (kind, a, b, byte) in edits {
            let cell = cells[a % cells.len()];
            match kind {
                0 => bytes[a % len] = byte,
                1 => bytes[(cell + b % 0x58).min(len - 1)] = byte,
                _ => {
                    let at = (cell + 4 + 4 * (b % 20)).min(len - 4);
                    let target = (cells[b % cells.len()] - 4096) as u32;
                    bytes[at..at + 4].copy_from_slice(&target.to_le_bytes());
                }
            }
        }
        open_and_walk(&bytes)?;
    }
}

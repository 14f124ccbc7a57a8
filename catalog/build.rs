//! Compiles every file under `products/` and `policies/` into the crate, so
//! adding a vendor file needs no code change.
use sha2::{Digest, Sha256};
use std::fmt::Write;

fn main() {
    let mut out = String::new();
    let mut digest = Sha256::new();
    for dir in ["products", "policies"] {
        println!("cargo:rerun-if-changed={dir}");
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("cannot read catalog/{dir}: {e}"))
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".toml"))
            .collect();
        files.sort();
        let _ = writeln!(
            out,
            "const BUILTIN_{}: &[(&str, &str)] = &[",
            dir.to_uppercase()
        );
        for f in files {
            let text = std::fs::read(format!("{dir}/{f}"))
                .unwrap_or_else(|e| panic!("cannot read catalog/{dir}/{f}: {e}"));
            // The same bytes as `model::files_digest` hashes at run time.
            digest.update(format!("{dir}/{f}").as_bytes());
            digest.update([0]);
            digest.update(&text);
            digest.update([0]);
            let _ = writeln!(
                out,
                "    (\"{dir}/{f}\", include_str!(concat!(env!(\"CARGO_MANIFEST_DIR\"), \"/{dir}/{f}\"))),"
            );
        }
        out.push_str("];\n");
    }
    let _ = writeln!(
        out,
        "const BUILTIN_DIGEST: &str = \"{}\";",
        hex::encode(digest.finalize())
    );
    let dest = std::path::Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("builtin.rs");
    std::fs::write(dest, out).expect("write builtin.rs");
}

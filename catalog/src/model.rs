//! The catalog's data model and how vendor files are read into it.

use crate::inventory::ItemKind;
use crate::policy::Policy;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

/// What a product is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Category {
    /// Antivirus / anti-malware.
    Antivirus,
    /// Endpoint detection and response.
    Edr,
    /// Host intrusion detection.
    Hids,
    /// Host firewall.
    Firewall,
    /// Vulnerability scanner agent.
    VulnerabilityAgent,
    /// Data loss prevention.
    Dlp,
    /// VPN client.
    Vpn,
    /// Password manager.
    PasswordManager,
    /// Parental control.
    ParentalControl,
    /// Management agents and anything else.
    Other,
}

impl Category {
    /// The data-file name.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Antivirus => "antivirus",
            Category::Edr => "edr",
            Category::Hids => "hids",
            Category::Firewall => "firewall",
            Category::VulnerabilityAgent => "vulnerability-agent",
            Category::Dlp => "dlp",
            Category::Vpn => "vpn",
            Category::PasswordManager => "password-manager",
            Category::ParentalControl => "parental-control",
            Category::Other => "other",
        }
    }
}

/// The state a detection proves, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Only leftovers remain: an uninstall that did not finish.
    Remnant,
    /// A package or registration is present.
    Installed,
    /// A process, loaded module or active service is seen.
    Running,
}

impl State {
    /// The wire and JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Remnant => "remnant",
            State::Installed => "installed",
            State::Running => "running",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "remnant" => Some(State::Remnant),
            "installed" => Some(State::Installed),
            "running" => Some(State::Running),
            _ => None,
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How an indicator's value is compared with an inventory item's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MatchMode {
    /// Byte for byte.
    #[default]
    Exact,
    /// Equal without regard to ASCII case.
    CaseInsensitive,
    /// A shell glob (`*`, `?`, `[...]`), case-sensitive.
    Glob,
}

/// One fact that betrays a product.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Indicator {
    /// What kind of inventory item it matches.
    pub kind: ItemKind,
    /// The name to match.
    pub value: String,
    /// How to match.
    #[serde(default, rename = "match")]
    pub mode: MatchMode,
    /// The strongest state this indicator can prove.
    pub proves: State,
    /// The platform the fact holds on: `linux`, `windows`, `macos`.
    pub platform: String,
    /// The public source of the fact.
    pub source: String,
}

/// A product and the indicators that recognise it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Product {
    /// Stable id, `vendor.product`, e.g. `kaspersky.endpoint-security-linux`.
    pub id: String,
    /// The product's name as the vendor writes it.
    pub name: String,
    /// What it is for.
    pub category: Category,
    /// `linux`, `windows`, `macos`.
    pub platforms: Vec<String>,
    /// The facts that recognise it.
    #[serde(default)]
    pub indicators: Vec<Indicator>,
    /// Filled from the vendor file.
    #[serde(skip_deserializing)]
    pub vendor: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VendorFile {
    vendor: String,
    #[serde(default)]
    products: Vec<Product>,
}

/// A problem in a catalog file; every problem is reported, not only the first.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {message}")]
pub struct LoadError {
    /// The file's name.
    pub file: String,
    /// What is wrong, and where.
    pub message: String,
}

/// All problems found while loading a catalog.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid catalog: {}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
pub struct LoadErrors(pub Vec<LoadError>);

/// The catalog: products, policies, a version and a content digest.
#[derive(Debug, Clone)]
pub struct Catalog {
    /// Products, sorted by id.
    pub products: Vec<Product>,
    /// Policies, sorted by id.
    pub policies: Vec<Policy>,
    /// `builtin-<digest prefix>`: changes whenever the content does.
    pub version: String,
    /// Lowercase hex SHA-256 over every file's name and content.
    pub digest: String,
}

const BUILTIN_PRODUCTS: &[(&str, &str)] = &[
    (
        "products/clamav.toml",
        include_str!("../products/clamav.toml"),
    ),
    (
        "products/kaspersky.toml",
        include_str!("../products/kaspersky.toml"),
    ),
];

const BUILTIN_POLICIES: &[(&str, &str)] = &[(
    "policies/bod-17-01.toml",
    include_str!("../policies/bod-17-01.toml"),
)];

impl Catalog {
    /// The catalog compiled into this binary.
    pub fn builtin() -> Catalog {
        // The built-in files are checked by this crate's tests, so a failure
        // here is a build defect, not a user error.
        Catalog::from_files(BUILTIN_PRODUCTS, BUILTIN_POLICIES)
            .expect("the built-in catalog is valid")
    }

    /// Reads a catalog from vendor files and policy files (name, TOML text).
    pub fn from_files(
        products: &[(&str, &str)],
        policies: &[(&str, &str)],
    ) -> Result<Catalog, LoadErrors> {
        let mut errors = Vec::new();
        let mut all = Vec::new();
        let mut h = Sha256::new();
        for (file, text) in products {
            h.update(file.as_bytes());
            h.update([0]);
            h.update(text.as_bytes());
            h.update([0]);
            match toml::from_str::<VendorFile>(text) {
                Ok(vf) => {
                    for mut p in vf.products {
                        p.vendor = vf.vendor.clone();
                        check_product(file, &p, &mut errors);
                        all.push(p);
                    }
                }
                Err(e) => errors.push(LoadError {
                    file: file.to_string(),
                    message: e.to_string().trim().to_string(),
                }),
            }
        }
        let mut pols = Vec::new();
        for (file, text) in policies {
            h.update(file.as_bytes());
            h.update([0]);
            h.update(text.as_bytes());
            h.update([0]);
            match Policy::parse(text) {
                Ok(p) => pols.push(p),
                Err(message) => errors.push(LoadError {
                    file: file.to_string(),
                    message,
                }),
            }
        }
        all.sort_by(|a, b| a.id.cmp(&b.id));
        for w in all.windows(2) {
            if w[0].id == w[1].id {
                errors.push(LoadError {
                    file: "catalog".into(),
                    message: format!("product id {:?} is defined twice", w[0].id),
                });
            }
        }
        pols.sort_by(|a, b| a.id.cmp(&b.id));
        if !errors.is_empty() {
            return Err(LoadErrors(errors));
        }
        let digest = hex::encode(h.finalize());
        Ok(Catalog {
            version: format!("builtin-{}", &digest[..12]),
            digest,
            products: all,
            policies: pols,
        })
    }

    /// The product with this id.
    pub fn product(&self, id: &str) -> Option<&Product> {
        self.products
            .binary_search_by(|p| p.id.as_str().cmp(id))
            .ok()
            .map(|i| &self.products[i])
    }

    /// The ids of the policies that ban this product.
    pub fn banned_by(&self, product: &Product) -> Vec<String> {
        self.policies
            .iter()
            .filter(|p| p.bans(product))
            .map(|p| p.id.clone())
            .collect()
    }
}

fn check_product(file: &str, p: &Product, errors: &mut Vec<LoadError>) {
    let mut err = |message: String| {
        errors.push(LoadError {
            file: file.to_string(),
            message,
        })
    };
    let valid_id = p.id.contains('.')
        && p.id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    if !valid_id {
        err(format!(
            "product id {:?} must be `vendor.product` in lowercase letters, digits and dashes",
            p.id
        ));
    }
    if p.indicators.is_empty() {
        err(format!("product {:?} has no indicators", p.id));
    }
    for ind in &p.indicators {
        if ind.value.trim().is_empty() {
            err(format!(
                "product {:?}: an indicator has an empty value",
                p.id
            ));
        }
        if ind.source.trim().is_empty() {
            err(format!(
                "product {:?}: indicator {} {:?} names no source",
                p.id,
                ind.kind.as_str(),
                ind.value
            ));
        }
        if ind.mode == MatchMode::Glob
            && let Err(e) = globset::Glob::new(&ind.value)
        {
            err(format!("product {:?}: bad glob {:?}: {e}", p.id, ind.value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalog_loads() {
        let c = Catalog::builtin();
        assert!(c.product("kaspersky.endpoint-security-linux").is_some());
        assert!(c.product("clamav.clamav").is_some());
        assert!(c.policies.iter().any(|p| p.id == "bod-17-01"));
        assert!(c.version.starts_with("builtin-"));
    }

    #[test]
    fn every_problem_is_reported_with_its_file() {
        let bad = r#"
vendor = "X"
[[products]]
id = "Bad Id"
name = "x"
category = "antivirus"
platforms = ["linux"]
[[products.indicators]]
kind = "package"
value = ""
proves = "installed"
source = ""
"#;
        let unknown = "vendor = \"Y\"\nfrobnicate = 1\n";
        let err = Catalog::from_files(&[("a.toml", bad), ("b.toml", unknown)], &[]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("a.toml"), "{text}");
        assert!(text.contains("Bad Id"), "{text}");
        assert!(text.contains("empty value"), "{text}");
        assert!(text.contains("no source"), "{text}");
        assert!(text.contains("b.toml"), "{text}");
        assert!(text.contains("frobnicate"), "{text}");
    }
}

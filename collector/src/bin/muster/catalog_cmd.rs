//! `muster catalog check|list|show`: the catalog, read locally.

use anyhow::{Result, bail};
use clap::{Subcommand, ValueEnum};
use muster_catalog::{Catalog, LoadErrors};
use serde_json::json;
use std::path::PathBuf;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(Subcommand)]
pub enum CatalogCmd {
    /// Validate the built-in catalog and, given DIR, an operator's catalog folder; every problem with file and line
    #[command(after_help = "Example:\n  muster catalog check /etc/muster/catalog")]
    Check {
        /// A folder of TOML vendor files and policies to check with the built-in catalog
        dir: Option<PathBuf>,
    },
    /// List products (one line each)
    #[command(
        after_help = "Example:\n  muster catalog list --vendor Kaspersky\n  muster catalog list --format json"
    )]
    List {
        /// Only this vendor (case-insensitive)
        #[arg(long)]
        vendor: Option<String>,
        /// Only this category, e.g. edr
        #[arg(long)]
        category: Option<String>,
        /// Also read this folder of operator catalog files
        #[arg(long, env = "MUSTER_CATALOG_DIR")]
        catalog_dir: Option<PathBuf>,
        /// table or json
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Show one product with every indicator and its source
    #[command(after_help = "Example:\n  muster catalog show kaspersky.endpoint-security-linux")]
    Show {
        /// Product id (from `muster catalog list`)
        id: String,
        /// Also read this folder of operator catalog files
        #[arg(long, env = "MUSTER_CATALOG_DIR")]
        catalog_dir: Option<PathBuf>,
        /// table or json
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
}

fn load(dir: Option<&PathBuf>) -> Result<Catalog, LoadErrors> {
    match dir {
        Some(d) => Catalog::with_dir(d),
        None => Ok(Catalog::builtin()),
    }
}

fn table() -> comfy_table::Table {
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(comfy_table::ContentArrangement::Dynamic)
        .set_width(100);
    t
}

pub fn run(cmd: CatalogCmd) -> Result<()> {
    match cmd {
        CatalogCmd::Check { dir } => match load(dir.as_ref()) {
            Ok(c) => {
                let indicators: usize = c.products.iter().map(|p| p.indicators.len()).sum();
                println!(
                    "catalog {}: ok — {} vendors, {} products, {} indicators, {} policies",
                    c.version,
                    c.vendors().len(),
                    c.products.len(),
                    indicators,
                    c.policies.len()
                );
                Ok(())
            }
            Err(errors) => {
                for e in &errors.0 {
                    eprintln!("{e}");
                }
                bail!("{} problem(s) in the catalog", errors.0.len())
            }
        },
        CatalogCmd::List {
            vendor,
            category,
            catalog_dir,
            format,
        } => {
            let c = load(catalog_dir.as_ref())?;
            let products: Vec<_> = c
                .products
                .iter()
                .filter(|p| {
                    vendor
                        .as_ref()
                        .is_none_or(|v| p.vendor.eq_ignore_ascii_case(v))
                })
                .filter(|p| category.as_ref().is_none_or(|k| p.category.as_str() == k))
                .collect();
            if format == Format::Json {
                let out = muster_collector::api::views::catalog_json(&c, products.iter().copied());
                println!("{}", serde_json::to_string_pretty(&out)?);
                return Ok(());
            }
            let mut t = table();
            t.set_header(["id", "vendor", "category", "platforms", "ind."]);
            for p in &products {
                let plats: Vec<&str> = p.platforms.iter().map(|x| x.as_str()).collect();
                t.add_row([
                    p.id.clone(),
                    p.vendor.clone(),
                    p.category.as_str().to_string(),
                    plats.join(","),
                    p.indicators.len().to_string(),
                ]);
            }
            println!("{t}\n{} product(s), catalog {}", products.len(), c.version);
            Ok(())
        }
        CatalogCmd::Show {
            id,
            catalog_dir,
            format,
        } => {
            let c = load(catalog_dir.as_ref())?;
            let Some(p) = c.product(&id) else {
                bail!("no product {id:?} in the catalog (see muster catalog list)");
            };
            if format == Format::Json {
                let mut v = serde_json::to_value(p)?;
                v["banned_by"] = json!(c.banned_by(p));
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            println!("{} — {} ({})", p.id, p.name, p.vendor);
            println!("category: {}", p.category.as_str());
            let plats: Vec<&str> = p.platforms.iter().map(|x| x.as_str()).collect();
            println!("platforms: {}", plats.join(", "));
            println!("defined at: {}", p.defined_at);
            let banned = c.banned_by(p);
            if !banned.is_empty() {
                println!("banned by: {}", banned.join(", "));
            }
            // One indicator per line and its source on the next, unwrapped,
            // so URLs stay whole and can be copied.
            println!("indicators ({}):", p.indicators.len());
            for i in &p.indicators {
                println!(
                    "  {:<22} {} ({}, {}, proves {})",
                    i.kind.as_str(),
                    i.value,
                    i.platform.as_str(),
                    i.mode.as_str(),
                    i.proves.as_str()
                );
                println!("  {:<22} source: {}", "", i.source);
            }
            Ok(())
        }
    }
}

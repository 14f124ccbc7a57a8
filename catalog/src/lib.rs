//! Muster's catalog: the products it recognises, the policies that ban or
//! require them, and the engine that turns an [`Inventory`] into
//! [`Detection`]s with evidence.
//!
//! Pure: no I/O beyond the data files compiled in or handed to it.
#![forbid(unsafe_code)]

pub mod evaluate;
pub mod glob;
pub mod inventory;
pub mod model;
pub mod policy;
pub mod snapshot;

pub use evaluate::{Detection, Evidence, evaluate};
pub use inventory::{HostFacts, Inventory, Item, ItemKind, Platform, Presence, Section};
pub use model::{
    Catalog, Category, Indicator, LoadError, LoadErrors, MatchMode, Product, State, read_dir_files,
};
pub use policy::{Policy, Verdict, Violation};

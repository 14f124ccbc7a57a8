//! Muster's wire schema (`muster.v1`) and the conversions between its
//! messages and the domain types of `muster-catalog`. Protobuf types stop
//! here: the agent's and collector's logic use domain types. [`channel`]
//! opens the client end of the transport, the same for agents and operators.
#![forbid(unsafe_code)]

/// Generated from `proto/muster/v1/muster.proto`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("muster.v1");
}

pub mod busy;
pub mod channel;
mod convert;

pub use convert::{
    InvalidSection, detection_from_wire, detection_to_wire, facts_from_wire, facts_to_wire,
    item_from_wire, item_to_wire, section_from_wire, section_to_wire,
};

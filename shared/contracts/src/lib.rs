//! Orderflow's event contracts: what goes over the bus, and nothing else.
//!
//! Every EventBridge event Orderflow publishes has `detail-type` equal to the event's name
//! ([`Event::NAME`]), `source` naming the publishing service ([`Event::SOURCE`]), and a `detail` that is
//! an [`Envelope`]: `metadata` (ids, versions, timing, provenance) plus `data` (the event itself).
//!
//! Published structs are never edited in place: a new schema version gets a new struct shape and an
//! upcaster ([`Event::upcast_step`]) that lifts the previous version's JSON to it, so a consumer always
//! reads the current version whatever the producer sent. JSON Schemas of every envelope are generated
//! from these types into `events-samples/schemas/` (see [`schemas`]).

pub mod canonical;
mod envelope;
mod error;
pub mod events;
pub mod schemas;
mod trace;

pub use envelope::{Envelope, Metadata, RawEnvelope};
pub use error::ContractError;
pub use events::*;
#[doc(hidden)]
pub use serde as __serde;
pub use trace::TraceContext;

use serde::{de::DeserializeOwned, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

/// One event type of the Orderflow bus.
pub trait Event: Serialize + DeserializeOwned + schemars::JsonSchema + Send + Sync + 'static {
    /// EventBridge `detail-type`: the past-tense name of what happened.
    const NAME: &'static str;
    /// EventBridge `source`: the service that publishes it.
    const SOURCE: &'static str;
    /// The schema version this struct is. Producers always write it.
    const SCHEMA_VERSION: u32;
    /// The oldest version consumers can still read (through [`Event::upcast_step`]).
    const MIN_SCHEMA_VERSION: u32 = Self::SCHEMA_VERSION;

    /// Lifts the JSON of version `from` to version `from + 1`. Only called for
    /// `MIN_SCHEMA_VERSION <= from < SCHEMA_VERSION`.
    fn upcast_step(from: u32, data: Value) -> Result<Value, ContractError> {
        let _ = data;
        Err(ContractError::UnsupportedSchemaVersion {
            event: Self::NAME,
            found: from,
            supported: (Self::MIN_SCHEMA_VERSION, Self::SCHEMA_VERSION),
        })
    }

    /// Business rules that serde's types alone cannot express (e.g. a quantity of at least 1).
    fn validate(&self) -> Result<(), ContractError> {
        Ok(())
    }
}

/// Reads the `data` of an envelope written at `schema_version` as the current version of `E`:
/// upcast step by step, decode, validate. Every error here is permanent: retrying cannot fix it.
///
/// The current version is decoded straight from the raw JSON text; only older versions go through a
/// `serde_json::Value` for their upcasters (the direct path is what keeps the harness fast).
pub fn decode_data<E: Event>(schema_version: u32, data: &RawValue) -> Result<E, ContractError> {
    if schema_version < E::MIN_SCHEMA_VERSION || schema_version > E::SCHEMA_VERSION {
        return Err(ContractError::UnsupportedSchemaVersion {
            event: E::NAME,
            found: schema_version,
            supported: (E::MIN_SCHEMA_VERSION, E::SCHEMA_VERSION),
        });
    }
    let malformed =
        |source: serde_json::Error| ContractError::Malformed { event: E::NAME.to_string(), reason: source.to_string() };
    let event: E = if schema_version == E::SCHEMA_VERSION {
        serde_json::from_str(data.get()).map_err(malformed)?
    } else {
        let mut value: Value = serde_json::from_str(data.get()).map_err(malformed)?;
        for from in schema_version..E::SCHEMA_VERSION {
            value = E::upcast_step(from, value)?;
        }
        serde_json::from_value(value).map_err(malformed)?
    };
    event.validate()?;
    Ok(event)
}

/// What a consumer accepts: one [`Event`], or an enum of several (see [`inbound!`]).
pub trait Inbound: Sized + Send + 'static {
    /// The `detail-type`s this consumer understands; anything else is a permanent failure.
    const DETAIL_TYPES: &'static [&'static str];
    /// The `source`s of those events (its rule in `infra/template.yaml` must match exactly these).
    const SOURCES: &'static [&'static str];
    /// Decodes the envelope's `data` for the given `detail-type` and schema version.
    fn decode(detail_type: &str, schema_version: u32, data: &RawValue) -> Result<Self, ContractError>;
    /// The event's name, for logs.
    fn name(&self) -> &'static str;
    /// The schema version `detail_type` is read at without upcasting (its current one), if this
    /// accepts that detail type.
    fn current_version(detail_type: &str) -> Option<u32>;
    /// Reads the current version of `detail_type` straight off `deserializer` and validates it: the
    /// one-pass path of the harness (an error here sends the record down [`Inbound::decode`], which
    /// says what is wrong). `detail_type` must be one [`Inbound::current_version`] accepts.
    fn deserialize_current<'de, D: serde::Deserializer<'de>>(
        detail_type: &str,
        deserializer: D,
    ) -> Result<Self, D::Error>;
}

impl<E: Event> Inbound for E {
    const DETAIL_TYPES: &'static [&'static str] = &[E::NAME];
    const SOURCES: &'static [&'static str] = &[E::SOURCE];
    fn decode(detail_type: &str, schema_version: u32, data: &RawValue) -> Result<Self, ContractError> {
        if detail_type != E::NAME {
            return Err(ContractError::UnknownDetailType(detail_type.to_string()));
        }
        decode_data::<E>(schema_version, data)
    }
    fn name(&self) -> &'static str {
        E::NAME
    }
    fn current_version(detail_type: &str) -> Option<u32> {
        (detail_type == E::NAME).then_some(E::SCHEMA_VERSION)
    }
    fn deserialize_current<'de, D: serde::Deserializer<'de>>(
        detail_type: &str,
        deserializer: D,
    ) -> Result<Self, D::Error> {
        if detail_type != E::NAME {
            return Err(serde::de::Error::custom("another detail type"));
        }
        let event = E::deserialize(deserializer)?;
        event.validate().map_err(serde::de::Error::custom)?;
        Ok(event)
    }
}

/// Declares an enum of the events one consumer accepts and implements [`Inbound`] for it:
///
/// ```
/// orderflow_contracts::inbound! {
///     /// What the order-status consumer listens to.
///     pub enum StatusInput {
///         Shipped(orderflow_contracts::ShippingLabelCreated),
///         Declined(orderflow_contracts::PaymentDeclined),
///     }
/// }
/// ```
#[macro_export]
macro_rules! inbound {
    ($(#[$meta:meta])* $vis:vis enum $name:ident { $($variant:ident($ty:ty)),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        $vis enum $name { $($variant($ty)),+ }

        impl $crate::Inbound for $name {
            const DETAIL_TYPES: &'static [&'static str] = &[$(<$ty as $crate::Event>::NAME),+];
            const SOURCES: &'static [&'static str] = &[$(<$ty as $crate::Event>::SOURCE),+];
            fn decode(
                detail_type: &str,
                schema_version: u32,
                data: &serde_json::value::RawValue,
            ) -> Result<Self, $crate::ContractError> {
                $(
                    if detail_type == <$ty as $crate::Event>::NAME {
                        return $crate::decode_data::<$ty>(schema_version, data).map($name::$variant);
                    }
                )+
                Err($crate::ContractError::UnknownDetailType(detail_type.to_string()))
            }
            fn name(&self) -> &'static str {
                match self { $($name::$variant(_) => <$ty as $crate::Event>::NAME),+ }
            }
            fn current_version(detail_type: &str) -> Option<u32> {
                $(
                    if detail_type == <$ty as $crate::Event>::NAME {
                        return Some(<$ty as $crate::Event>::SCHEMA_VERSION);
                    }
                )+
                None
            }
            fn deserialize_current<'de, D: $crate::__serde::Deserializer<'de>>(
                detail_type: &str,
                deserializer: D,
            ) -> Result<Self, D::Error> {
                $(
                    if detail_type == <$ty as $crate::Event>::NAME {
                        return <$ty as $crate::Inbound>::deserialize_current(detail_type, deserializer).map($name::$variant);
                    }
                )+
                Err($crate::__serde::de::Error::custom("another detail type"))
            }
        }
    };
}

/// Declares [`AnyEvent`] and its per-variant accessors from one list.
macro_rules! any_event {
    ($($variant:ident => |$e:ident| $order_id:expr),+ $(,)?) => {
        inbound! {
            /// Every event of the bus: for consumers that take them all (webhook fan-out, the data lake).
            pub enum AnyEvent { $($variant($variant)),+ }
        }

        impl AnyEvent {
            /// The EventBridge `source` of this event.
            pub fn source(&self) -> &'static str {
                match self { $(AnyEvent::$variant(_) => $variant::SOURCE),+ }
            }

            /// The order the event is about (every event but `StockReceived` is about one).
            pub fn order_id(&self) -> Option<&str> {
                match self { $(AnyEvent::$variant($e) => $order_id),+ }
            }

            /// The version of its data's schema (events are upcast to it when decoded).
            pub fn schema_version(&self) -> u32 {
                match self { $(AnyEvent::$variant(_) => $variant::SCHEMA_VERSION),+ }
            }

            /// The event's data as JSON (the current schema version).
            pub fn data(&self) -> Value {
                let value = match self { $(AnyEvent::$variant(e) => serde_json::to_value(e)),+ };
                value.expect("events serialise")
            }
        }
    };
}

any_event! {
    OrderPlaced => |e| Some(&e.order_id),
    OrderBilled => |e| Some(&e.order_id),
    PaymentDeclined => |e| Some(&e.order_id),
    ShippingLabelCreated => |e| Some(&e.order_id),
    StockAllocationFailed => |e| Some(&e.order_id),
    OrderStatusChanged => |e| Some(&e.order.order_id),
    OrderCancelled => |e| Some(&e.order_id),
    PaymentRefunded => |e| Some(&e.order_id),
    StockReceived => |_e| None,
    StockReleased => |e| Some(&e.order_id),
}

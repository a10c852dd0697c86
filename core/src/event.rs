//! The event as the core's stages see it: decoded, validated, borrowing its strings from the raw record where it
//! can (a JSON string with escapes is unescaped into an owned `Cow`).
//!
//! This is the contract between the decoder (`decode.rs`, raw bytes -> `EventRef`), the feature state
//! (`features.rs`, `EventRef` -> a feature row) and the link graph and label store. It mirrors
//! `stream/events.py` field for field: a field that is optional there is an `Option` here, with the same
//! meaning (`None`: absent or JSON null). Values are already checked as `stream.events` checks them (ranges,
//! lengths, finiteness); `ts` and `account_created_ts` are epoch seconds (float), as in Python.

use std::borrow::Cow;

/// Which of the three event types a record is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    Order = 0,
    Login = 1,
    Label = 2,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Order => "order",
            Kind::Login => "login",
            Kind::Label => "label",
        }
    }
}

pub type Str<'a> = Cow<'a, str>;

/// One decoded event. Fields that do not belong to its `kind` are `None` / default.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EventRef<'a> {
    pub kind: Option<Kind>,
    pub event_id: Str<'a>,
    pub ts: f64,
    /// Pass-through features (`features` object), in the record's key order; finite values only.
    pub features: Vec<(Str<'a>, f64)>,
    pub label: Option<u8>,
    pub scenario: Option<Str<'a>>,
    // orders and logins
    pub user_id: Str<'a>,
    pub device_id: Option<Str<'a>>,
    pub ip: Option<Str<'a>>,
    pub country: Option<Str<'a>>,
    // orders
    pub order_id: Str<'a>,
    pub amount: f64,
    pub currency: Str<'a>,
    pub merchant_id: Str<'a>,
    pub payment_id: Option<Str<'a>>,
    pub address_id: Option<Str<'a>>,
    pub account_created_ts: Option<f64>,
    pub items: Option<i64>,
    pub promo_code: Option<Str<'a>>,
    // logins
    pub success: bool,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    pub user_agent: Option<Str<'a>>,
    pub method: Option<Str<'a>>,
    // labels
    pub ref_event_id: Str<'a>,
    pub source: Option<Str<'a>>,
}

impl<'a> EventRef<'a> {
    /// The card an evaluation window groups a scored event under (Python's `e.user_id or e.event_id`).
    pub fn card_key(&self) -> String {
        if self.user_id.is_empty() { self.event_id.to_string() } else { self.user_id.to_string() }
    }

    pub fn kind(&self) -> Kind {
        self.kind.expect("a decoded event has a kind")
    }
}

/// A feature row: the values of one event's features, by column of a [`Schema`]. `NaN` means "absent" (the
/// Python engine's dict has no such key); a present feature is never `NaN` (inputs are finite, and every
/// computed feature is defined).
pub type Row = Vec<f64>;

/// The growing list of feature names of one event type, in the order the Python engine's dicts list them
/// (detectors that depend on key order, such as the z-score's registration order, read it from here).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Schema {
    pub names: Vec<String>,
    #[serde(skip)]
    index: std::collections::HashMap<String, usize>,
}

impl Schema {
    /// The column of `name`, appended at the end if new.
    pub fn column(&mut self, name: &str) -> usize {
        if self.index.len() != self.names.len() {
            self.reindex();
        }
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        self.names.push(name.to_owned());
        self.index.insert(name.to_owned(), self.names.len() - 1);
        self.names.len() - 1
    }

    /// The column of `name`, if the schema has it.
    pub fn get(&self, name: &str) -> Option<usize> {
        if self.index.len() == self.names.len() {
            self.index.get(name).copied()
        } else {
            self.names.iter().position(|n| n == name)
        }
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Rebuild the name -> column index (after deserialising).
    pub fn reindex(&mut self) {
        self.index = self.names.iter().enumerate().map(|(i, n)| (n.clone(), i)).collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_appends_new_names_and_keeps_order() {
        let mut s = Schema::default();
        assert_eq!(s.column("b"), 0);
        assert_eq!(s.column("a"), 1);
        assert_eq!(s.column("b"), 0);
        assert_eq!(s.names, vec!["b", "a"]);
        let bytes = bincode::serialize(&s).unwrap();
        let back: Schema = bincode::deserialize(&bytes).unwrap();
        assert_eq!(back.get("a"), Some(1));
    }
}

//! The record decoder: raw JSON bytes -> [`EventRef`], exactly as `stream.events.decode` decides.
//!
//! [`decode`] has three outcomes. `Ok(event)`: the record is an event, and every field holds the value Python
//! would give it (floats bit for bit). `Err(Refused::Invalid(_))`: Python refuses the record, and
//! [`Invalid`] carries the same field and reason as its `InvalidEvent` (the dead-letter reason). And
//! `Err(Refused::Fallback)`: the record is outside the shapes this fast path reproduces exactly, so the caller
//! decodes it with Python's `stream.events.decode` instead. The fast path is exact by construction: it decides
//! only where it reproduces Python's rule, and falls back wherever Python's behaviour is intricate:
//!
//! - any JSON that orjson refuses (the reason would quote orjson's error text), bytes that are not UTF-8,
//!   numbers that overflow a double, nesting deeper than [`MAX_DEPTH`];
//! - timestamp text other than `YYYY-MM-DD[T ]HH:MM:SS[.f{1,6}]` with an optional `Z` or `±HH:MM` offset, and any
//!   non-ASCII timestamp text (Python's `strip()` and `fromisoformat` accept many more forms);
//! - a reason that would quote a non-ASCII string, or a list or object nested deeper than [`MAX_REPR_DEPTH`]
//!   (Python's `repr`).
//!
//! What orjson does and this module mirrors: `-0` is the integer 0; an integer outside [-2^63, 2^64) becomes a
//! float (correctly rounded, like every number here: `str::parse::<f64>`); a float that rounds to zero is 0.0;
//! of duplicate keys the last value wins, at the first key's position; JSON null is an absent field.
//!
//! `tests/core/test_decode_differential.py` checks all of this against Python on the simulator's streams, the
//! fuzz generator's broken records and generated objects near the schema.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use crate::event::{EventRef, Kind, Str};

/// Longest string accepted in any field, in characters (`stream.events.MAX_STRING`).
pub const MAX_STRING: usize = 1024;
/// Largest record accepted, in bytes (`stream.events.MAX_RECORD_BYTES`).
pub const MAX_RECORD_BYTES: usize = 64 * 1024;
/// Most pass-through features one event may carry (`stream.events.MAX_FEATURES`).
pub const MAX_FEATURES: usize = 512;
/// Timestamps are accepted in [`TS_MIN`, `TS_MAX`) epoch seconds (`stream.events.TS_MIN`, `TS_MAX`).
pub const TS_MIN: f64 = 0.0;
pub const TS_MAX: f64 = 7258118400.0;
const TS_RANGE: &str = "1970-01-01T00:00:00Z to 2200-01-01T00:00:00Z (exclusive)";
/// Deepest nesting decoded here (the record's object is level 1). orjson refuses more than 1024 levels, with an
/// error text this module does not reproduce; between the two, records fall back.
pub const MAX_DEPTH: usize = 1000;
/// Deepest list or object whose Python `repr` this module writes into a reason (Python's own `repr` can hit
/// its recursion limit; a reason never needs more than a few levels).
pub const MAX_REPR_DEPTH: usize = 100;

/// Why Python refuses a record: its `InvalidEvent(field, problem)`, whose message is `"{field}: {reason}"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    pub field: String,
    pub reason: String,
}

impl Invalid {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

/// A record [`decode`] does not turn into an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refused {
    /// Python refuses it for this reason.
    Invalid(Invalid),
    /// Outside the fast path: decode it with Python's `stream.events.decode`.
    Fallback,
}

impl From<Invalid> for Refused {
    fn from(i: Invalid) -> Self {
        Refused::Invalid(i)
    }
}

type Out<T> = Result<T, Refused>;

fn invalid<T>(field: impl Into<String>, reason: impl Into<String>) -> Out<T> {
    Err(Refused::Invalid(Invalid::new(field, reason)))
}

/// Decode one record. See the module documentation for the three outcomes.
pub fn decode(raw: &[u8]) -> Result<EventRef<'_>, Refused> {
    if raw.len() > MAX_RECORD_BYTES {
        return invalid(
            "$",
            format!(
                "record is larger than {MAX_RECORD_BYTES} bytes ({})",
                raw.len()
            ),
        );
    }
    let text = std::str::from_utf8(raw).map_err(|_| Refused::Fallback)?;
    let rec = parse_record(text)?;
    validate(rec)
}

// --- phase 1: JSON -> the values of the known fields ----------------------------------------------------------

/// A JSON string, with what the checks need to know about it.
#[derive(Clone, Debug)]
pub(crate) struct JStr<'a> {
    pub(crate) s: Cow<'a, str>,
    /// Only ASCII characters (so its length in characters is its length in bytes).
    pub(crate) ascii: bool,
    /// Holds a character in U+0000..U+001F or U+007F (`stream.events._CONTROL`).
    pub(crate) ctrl: bool,
}

impl JStr<'_> {
    fn chars(&self) -> usize {
        if self.ascii {
            self.s.len()
        } else {
            self.s.chars().count()
        }
    }
}

/// A JSON value other than null (null is `None`: absent). Lists and objects keep their span in the record, for
/// the rare reason that quotes their `repr`.
#[derive(Clone, Debug)]
pub(crate) enum Val<'a> {
    Bool(bool),
    /// An integer as orjson gives it: within [-2^63, 2^64).
    Int(i128),
    Float(f64),
    Str(JStr<'a>),
    List(usize, usize),
    Dict(usize, usize),
}

/// Python's `type(value).__name__` for a JSON value (`stream.events._tname`).
fn tname(v: &Option<Val<'_>>) -> &'static str {
    v.as_ref().map_or("null", tname_of)
}

fn tname_of(v: &Val<'_>) -> &'static str {
    match v {
        Val::Bool(_) => "bool",
        Val::Int(_) => "int",
        Val::Float(_) => "float",
        Val::Str(_) => "str",
        Val::List(..) => "list",
        Val::Dict(..) => "dict",
    }
}

/// The fields any event type reads, in one table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum F {
    Type,
    EventId,
    Ts,
    Features,
    Label,
    Scenario,
    UserId,
    DeviceId,
    Ip,
    Country,
    OrderId,
    Amount,
    Currency,
    MerchantId,
    PaymentId,
    AddressId,
    AccountCreatedTs,
    Items,
    PromoCode,
    Success,
    Lat,
    Lon,
    UserAgent,
    Method,
    RefEventId,
    Source,
}

pub(crate) const N_FIELDS: usize = 26;

const NAMES: [&str; N_FIELDS] = [
    "type",
    "event_id",
    "ts",
    "features",
    "label",
    "scenario",
    "user_id",
    "device_id",
    "ip",
    "country",
    "order_id",
    "amount",
    "currency",
    "merchant_id",
    "payment_id",
    "address_id",
    "account_created_ts",
    "items",
    "promo_code",
    "success",
    "lat",
    "lon",
    "user_agent",
    "method",
    "ref_event_id",
    "source",
];

impl F {
    fn name(self) -> &'static str {
        NAMES[self as usize]
    }

    pub(crate) fn of(key: &str) -> Option<F> {
        Some(match key {
            "type" => F::Type,
            "event_id" => F::EventId,
            "ts" => F::Ts,
            "features" => F::Features,
            "label" => F::Label,
            "scenario" => F::Scenario,
            "user_id" => F::UserId,
            "device_id" => F::DeviceId,
            "ip" => F::Ip,
            "country" => F::Country,
            "order_id" => F::OrderId,
            "amount" => F::Amount,
            "currency" => F::Currency,
            "merchant_id" => F::MerchantId,
            "payment_id" => F::PaymentId,
            "address_id" => F::AddressId,
            "account_created_ts" => F::AccountCreatedTs,
            "items" => F::Items,
            "promo_code" => F::PromoCode,
            "success" => F::Success,
            "lat" => F::Lat,
            "lon" => F::Lon,
            "user_agent" => F::UserAgent,
            "method" => F::Method,
            "ref_event_id" => F::RefEventId,
            "source" => F::Source,
            _ => return None,
        })
    }
}

/// What phase 1 keeps of a record: the last value of each known field, and the entries of the last `features`
/// object (deduplicated as a Python dict is).
pub(crate) struct Record<'a> {
    pub(crate) src: &'a str,
    pub(crate) slots: [Option<Val<'a>>; N_FIELDS],
    pub(crate) features: Vec<(JStr<'a>, Option<Val<'a>>)>,
}

struct Parser<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
}

const FB: Refused = Refused::Fallback;

#[inline]
fn hex4(b: &[u8], i: usize) -> Out<u32> {
    let h = b.get(i..i + 4).ok_or(FB)?;
    let mut v = 0u32;
    for &c in h {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => return Err(FB),
        };
        v = v * 16 + d as u32;
    }
    Ok(v)
}

impl<'a> Parser<'a> {
    fn new(s: &'a str) -> Self {
        Parser {
            s,
            b: s.as_bytes(),
            i: 0,
        }
    }

    /// The current byte, or 0 at the end (0 is never valid where a token is expected, so it fails like the end).
    #[inline]
    fn peek(&self) -> u8 {
        self.b.get(self.i).copied().unwrap_or(0)
    }

    #[inline]
    fn ws(&mut self) {
        while matches!(self.peek(), b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    #[inline]
    fn expect(&mut self, c: u8) -> Out<()> {
        if self.peek() == c {
            self.i += 1;
            Ok(())
        } else {
            Err(FB)
        }
    }

    fn literal(&mut self, lit: &[u8]) -> Out<()> {
        if self.b[self.i..].starts_with(lit) {
            self.i += lit.len();
            Ok(())
        } else {
            Err(FB)
        }
    }

    /// A string, at its opening quote. Borrowed from the record unless it has escapes.
    fn string(&mut self) -> Out<JStr<'a>> {
        let b = self.b;
        let start = self.i + 1;
        let mut i = start;
        let mut ascii = true;
        let mut ctrl = false;
        loop {
            let c = b.get(i).copied().ok_or(FB)?;
            if c == b'"' {
                self.i = i + 1;
                return Ok(JStr {
                    s: Cow::Borrowed(&self.s[start..i]),
                    ascii,
                    ctrl,
                });
            }
            if c == b'\\' {
                break;
            }
            if c < 0x20 {
                return Err(FB); // a raw control character: invalid JSON
            }
            if c >= 0x7f {
                if c == 0x7f {
                    ctrl = true;
                } else {
                    ascii = false;
                }
            }
            i += 1;
        }
        let mut out = String::with_capacity(i - start + 16);
        out.push_str(&self.s[start..i]);
        loop {
            let c = b.get(i).copied().ok_or(FB)?;
            match c {
                b'"' => {
                    self.i = i + 1;
                    return Ok(JStr {
                        s: Cow::Owned(out),
                        ascii,
                        ctrl,
                    });
                }
                b'\\' => {
                    let e = b.get(i + 1).copied().ok_or(FB)?;
                    i += 2;
                    let ch = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = hex4(b, i)?;
                            i += 4;
                            if (0xD800..0xDC00).contains(&hi) {
                                if b.get(i) != Some(&b'\\') || b.get(i + 1) != Some(&b'u') {
                                    return Err(FB); // a lone high surrogate: orjson refuses it
                                }
                                let lo = hex4(b, i + 2)?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return Err(FB);
                                }
                                i += 6;
                                char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))
                                    .ok_or(FB)?
                            } else if (0xDC00..0xE000).contains(&hi) {
                                return Err(FB);
                            } else {
                                char::from_u32(hi).ok_or(FB)?
                            }
                        }
                        _ => return Err(FB),
                    };
                    let cp = ch as u32;
                    if cp < 0x20 || cp == 0x7f {
                        ctrl = true;
                    } else if cp >= 0x80 {
                        ascii = false;
                    }
                    out.push(ch);
                }
                c if c < 0x20 => return Err(FB),
                _ => {
                    let run = i;
                    while let Some(&c) = b.get(i) {
                        if c == b'"' || c == b'\\' || c < 0x20 {
                            break;
                        }
                        if c == 0x7f {
                            ctrl = true;
                        } else if c > 0x7f {
                            ascii = false;
                        }
                        i += 1;
                    }
                    out.push_str(&self.s[run..i]);
                }
            }
        }
    }

    /// A number, as orjson reads it: an integer in [-2^63, 2^64) is an int, anything else a float (correctly
    /// rounded); a float that overflows is refused (orjson: "number is infinity when parsed as double").
    fn number(&mut self) -> Out<Val<'a>> {
        let b = self.b;
        let start = self.i;
        let mut i = start;
        let neg = b.get(i) == Some(&b'-');
        if neg {
            i += 1;
        }
        let int_start = i;
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => {
                while matches!(b.get(i), Some(b'0'..=b'9')) {
                    i += 1;
                }
            }
            _ => return Err(FB),
        }
        let int_end = i;
        let mut float = false;
        if b.get(i) == Some(&b'.') {
            i += 1;
            let d = i;
            while matches!(b.get(i), Some(b'0'..=b'9')) {
                i += 1;
            }
            if i == d {
                return Err(FB);
            }
            float = true;
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            let d = i;
            while matches!(b.get(i), Some(b'0'..=b'9')) {
                i += 1;
            }
            if i == d {
                return Err(FB);
            }
            float = true;
        }
        self.i = i;
        if !float && int_end - int_start <= 20 {
            let mut m: u128 = 0;
            for &d in &b[int_start..int_end] {
                m = m * 10 + (d - b'0') as u128;
            }
            let v = if neg { -(m as i128) } else { m as i128 };
            if (-(1i128 << 63)..(1i128 << 64)).contains(&v) {
                return Ok(Val::Int(v));
            }
        }
        let f: f64 = self.s[start..i].parse().map_err(|_| FB)?;
        if !f.is_finite() {
            return Err(FB);
        }
        Ok(Val::Float(f))
    }

    /// Any value; containers are checked and skipped, their span kept. `depth` is the level a container here has.
    fn value(&mut self, depth: usize) -> Out<Option<Val<'a>>> {
        match self.peek() {
            b'"' => Ok(Some(Val::Str(self.string()?))),
            b'-' | b'0'..=b'9' => Ok(Some(self.number()?)),
            b't' => self.literal(b"true").map(|_| Some(Val::Bool(true))),
            b'f' => self.literal(b"false").map(|_| Some(Val::Bool(false))),
            b'n' => self.literal(b"null").map(|_| None),
            c @ (b'[' | b'{') => {
                let start = self.i;
                self.skip_container(depth)?;
                Ok(Some(if c == b'[' {
                    Val::List(start, self.i)
                } else {
                    Val::Dict(start, self.i)
                }))
            }
            _ => Err(FB),
        }
    }

    fn scalar(&mut self) -> Out<()> {
        match self.peek() {
            b'"' => self.string().map(|_| ()),
            b'-' | b'0'..=b'9' => self.number().map(|_| ()),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => Err(FB),
        }
    }

    /// `"key" :` and the whitespace after it.
    fn key_colon(&mut self) -> Out<()> {
        if self.peek() != b'"' {
            return Err(FB);
        }
        self.string()?;
        self.ws();
        self.expect(b':')?;
        self.ws();
        Ok(())
    }

    /// Check and skip a list or object (at its opening bracket) without recursion.
    fn skip_container(&mut self, depth: usize) -> Out<()> {
        let mut stack: Vec<bool> = Vec::new(); // is an object
        let mut at_value = true;
        loop {
            if at_value {
                match self.peek() {
                    c @ (b'[' | b'{') => {
                        let is_obj = c == b'{';
                        self.i += 1;
                        stack.push(is_obj);
                        if depth + stack.len() - 1 > MAX_DEPTH {
                            return Err(FB);
                        }
                        self.ws();
                        if self.peek() == if is_obj { b'}' } else { b']' } {
                            self.i += 1;
                            stack.pop();
                            at_value = false;
                        } else if is_obj {
                            self.key_colon()?;
                        }
                    }
                    _ => {
                        self.scalar()?;
                        at_value = false;
                    }
                }
            } else {
                let Some(&is_obj) = stack.last() else {
                    return Ok(());
                };
                self.ws();
                match self.peek() {
                    b',' => {
                        self.i += 1;
                        self.ws();
                        if is_obj {
                            self.key_colon()?;
                        }
                        at_value = true;
                    }
                    b'}' if is_obj => {
                        self.i += 1;
                        stack.pop();
                    }
                    b']' if !is_obj => {
                        self.i += 1;
                        stack.pop();
                    }
                    _ => return Err(FB),
                }
            }
        }
    }

    /// The entries of the `features` object (at its `{`), into `out`: as a Python dict holds them, the last value
    /// of a duplicate key at the position of its first occurrence.
    fn features(&mut self, out: &mut Vec<(JStr<'a>, Option<Val<'a>>)>) -> Out<()> {
        out.clear();
        let mut index: Option<HashMap<Cow<'a, str>, usize>> = None;
        self.i += 1;
        self.ws();
        if self.peek() == b'}' {
            self.i += 1;
            return Ok(());
        }
        loop {
            if self.peek() != b'"' {
                return Err(FB);
            }
            let key = self.string()?;
            self.ws();
            self.expect(b':')?;
            self.ws();
            let val = self.value(3)?;
            let found = match &index {
                Some(ix) => ix.get(&key.s).copied(),
                None => out.iter().position(|(k, _)| k.s == key.s),
            };
            match found {
                Some(at) => out[at].1 = val,
                None => {
                    if let Some(ix) = &mut index {
                        ix.insert(key.s.clone(), out.len());
                    }
                    out.push((key, val));
                    if index.is_none() && out.len() > 16 {
                        index = Some(
                            out.iter()
                                .enumerate()
                                .map(|(n, (k, _))| (k.s.clone(), n))
                                .collect(),
                        );
                    }
                }
            }
            self.ws();
            match self.peek() {
                b',' => {
                    self.i += 1;
                    self.ws();
                }
                b'}' => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return Err(FB),
            }
        }
    }
}

const NONE: Option<Val<'static>> = None;

fn parse_record(text: &str) -> Out<Record<'_>> {
    let mut p = Parser::new(text);
    let mut rec = Record {
        src: text,
        slots: [NONE; N_FIELDS],
        features: Vec::new(),
    };
    p.ws();
    if p.peek() != b'{' {
        let v = p.value(1)?;
        p.ws();
        if p.i != p.b.len() {
            return Err(FB);
        }
        return invalid("$", format!("must be a JSON object, not {}", tname(&v)));
    }
    p.i += 1;
    p.ws();
    if p.peek() == b'}' {
        p.i += 1;
    } else {
        loop {
            if p.peek() != b'"' {
                return Err(FB);
            }
            let key = p.string()?;
            p.ws();
            p.expect(b':')?;
            p.ws();
            match F::of(&key.s) {
                Some(F::Features) if p.peek() == b'{' => {
                    let start = p.i;
                    p.features(&mut rec.features)?;
                    rec.slots[F::Features as usize] = Some(Val::Dict(start, p.i));
                }
                Some(f) => rec.slots[f as usize] = p.value(2)?,
                None => {
                    p.value(2)?;
                }
            }
            p.ws();
            match p.peek() {
                b',' => {
                    p.i += 1;
                    p.ws();
                }
                b'}' => {
                    p.i += 1;
                    break;
                }
                _ => return Err(FB),
            }
        }
    }
    p.ws();
    if p.i != p.b.len() {
        return Err(FB);
    }
    Ok(rec)
}

// --- phase 2: the checks of stream/events.py, in its order ----------------------------------------------------

pub(crate) fn validate(mut rec: Record<'_>) -> Result<EventRef<'_>, Refused> {
    let src = rec.src;
    let kind = match rec.slots[F::Type as usize].take() {
        None => return invalid("type", "is missing"),
        Some(Val::Str(s)) if s.s == "order" => Kind::Order,
        Some(Val::Str(s)) if s.s == "login" => Kind::Login,
        Some(Val::Str(s)) if s.s == "label" => Kind::Label,
        Some(v) => {
            let text = py_str(src, &v)?;
            let shown = py_repr_str(prefix(&text, 40)).ok_or(FB)?;
            return invalid(
                "type",
                format!("must be one of order, login, label, not {shown}"),
            );
        }
    };
    let slots = &mut rec.slots;
    let mut ev = EventRef {
        kind: Some(kind),
        ..Default::default()
    };
    ev.event_id = check_str(F::EventId, required(slots, F::EventId)?)?;
    ev.ts = parse_ts(F::Ts.name(), &required(slots, F::Ts)?)?;
    match kind {
        Kind::Order => {
            ev.user_id = check_str(F::UserId, required(slots, F::UserId)?)?;
            ev.order_id = check_str(F::OrderId, required(slots, F::OrderId)?)?;
            ev.amount = check_nonneg(F::Amount, &required(slots, F::Amount)?)?;
            ev.currency = check_str(F::Currency, required(slots, F::Currency)?)?;
            ev.merchant_id = check_str(F::MerchantId, required(slots, F::MerchantId)?)?;
        }
        Kind::Login => {
            ev.user_id = check_str(F::UserId, required(slots, F::UserId)?)?;
            ev.success = check_bool(F::Success, &required(slots, F::Success)?)?;
        }
        Kind::Label => {
            ev.ref_event_id = check_str(F::RefEventId, required(slots, F::RefEventId)?)?;
            ev.label = Some(check_label(src, &required(slots, F::Label)?)?);
        }
    }
    // the optional fields common to all three (label: a second, identical check for labels)
    if let Some(v) = slots[F::Features as usize].take() {
        ev.features = check_features(v, std::mem::take(&mut rec.features))?;
    }
    let slots = &mut rec.slots;
    if let Some(v) = slots[F::Label as usize].take() {
        if kind != Kind::Label {
            ev.label = Some(check_label(src, &v)?);
        }
    }
    ev.scenario = opt_str(slots, F::Scenario)?;
    match kind {
        Kind::Order => {
            ev.device_id = opt_str(slots, F::DeviceId)?;
            ev.ip = opt_str(slots, F::Ip)?;
            ev.payment_id = opt_str(slots, F::PaymentId)?;
            ev.address_id = opt_str(slots, F::AddressId)?;
            if let Some(v) = slots[F::AccountCreatedTs as usize].take() {
                ev.account_created_ts = Some(parse_ts(F::AccountCreatedTs.name(), &v)?);
            }
            if let Some(v) = slots[F::Items as usize].take() {
                ev.items = Some(check_int(F::Items, &v)?);
            }
            ev.promo_code = opt_str(slots, F::PromoCode)?;
            ev.country = opt_str(slots, F::Country)?;
        }
        Kind::Login => {
            ev.device_id = opt_str(slots, F::DeviceId)?;
            ev.ip = opt_str(slots, F::Ip)?;
            ev.country = opt_str(slots, F::Country)?;
            if let Some(v) = slots[F::Lat as usize].take() {
                ev.lat = Some(check_range(F::Lat, &v, 90.0, "must be within [-90, 90]")?);
            }
            if let Some(v) = slots[F::Lon as usize].take() {
                ev.lon = Some(check_range(
                    F::Lon,
                    &v,
                    180.0,
                    "must be within [-180, 180]",
                )?);
            }
            ev.user_agent = opt_str(slots, F::UserAgent)?;
            ev.method = opt_str(slots, F::Method)?;
        }
        Kind::Label => {
            ev.source = opt_str(slots, F::Source)?;
        }
    }
    Ok(ev)
}

fn required<'a>(slots: &mut [Option<Val<'a>>; N_FIELDS], f: F) -> Out<Val<'a>> {
    match slots[f as usize].take() {
        Some(v) => Ok(v),
        None => invalid(f.name(), "is missing"),
    }
}

fn opt_str<'a>(slots: &mut [Option<Val<'a>>; N_FIELDS], f: F) -> Out<Option<Str<'a>>> {
    match slots[f as usize].take() {
        Some(v) => check_str(f, v).map(Some),
        None => Ok(None),
    }
}

/// `stream.events._str`.
fn check_str(f: F, v: Val<'_>) -> Out<Str<'_>> {
    match v {
        Val::Str(js) => {
            if js.s.is_empty() {
                return invalid(f.name(), "must not be empty");
            }
            let n = js.chars();
            if n > MAX_STRING {
                return invalid(
                    f.name(),
                    format!("is longer than {MAX_STRING} characters ({n})"),
                );
            }
            if js.ctrl {
                return invalid(f.name(), "contains a control character");
            }
            Ok(js.s)
        }
        Val::Int(i) => Ok(Cow::Owned(i.to_string())),
        other => invalid(
            f.name(),
            format!("must be a string, not {}", tname_of(&other)),
        ),
    }
}

/// `float(value)` for an int or float, else the type name for the reason (`stream.events._num`).
#[inline]
fn num(v: &Val<'_>) -> Result<f64, &'static str> {
    match v {
        Val::Int(i) => Ok(*i as f64), // round half to even, as Python's float(int)
        Val::Float(x) => Ok(*x),
        other => Err(tname_of(other)),
    }
}

fn check_num(f: F, v: &Val<'_>) -> Out<f64> {
    num(v).or_else(|t| invalid(f.name(), format!("must be a number, not {t}")))
}

fn check_nonneg(f: F, v: &Val<'_>) -> Out<f64> {
    let x = check_num(f, v)?;
    if x < 0.0 {
        return invalid(f.name(), "must be >= 0");
    }
    Ok(x)
}

fn check_range(f: F, v: &Val<'_>, bound: f64, reason: &str) -> Out<f64> {
    let x = check_num(f, v)?;
    if !(-bound..=bound).contains(&x) {
        return invalid(f.name(), reason);
    }
    Ok(x)
}

/// `stream.events._int`: a float with no fractional part counts as an integer.
fn check_int(f: F, v: &Val<'_>) -> Out<i64> {
    const TOO_LARGE: f64 = 9223372036854775808.0; // 2**63
    match *v {
        Val::Int(i) => {
            if i < 0 {
                invalid(f.name(), "must be >= 0")
            } else if i >= 1i128 << 63 {
                invalid(f.name(), "is too large")
            } else {
                Ok(i as i64)
            }
        }
        Val::Float(x) if x.fract() == 0.0 => {
            if x < 0.0 {
                invalid(f.name(), "must be >= 0")
            } else if x >= TOO_LARGE {
                invalid(f.name(), "is too large")
            } else {
                Ok(x as i64) // exact: an integral float below 2**63 (-0.0 gives 0, as int(-0.0))
            }
        }
        ref other => invalid(
            f.name(),
            format!("must be an integer, not {}", tname_of(other)),
        ),
    }
}

/// `stream.events._bool`: true, false, 1, 0 (not 1.0).
fn check_bool(f: F, v: &Val<'_>) -> Out<bool> {
    match *v {
        Val::Bool(b) => Ok(b),
        Val::Int(0) => Ok(false),
        Val::Int(1) => Ok(true),
        ref other => invalid(
            f.name(),
            format!("must be true or false, not {}", tname_of(other)),
        ),
    }
}

/// `stream.events._label`: true, false, 0, 1, 0.0, 1.0.
fn check_label(src: &str, v: &Val<'_>) -> Out<u8> {
    match *v {
        Val::Bool(b) => Ok(b as u8),
        Val::Int(i @ (0 | 1)) => Ok(i as u8),
        Val::Float(x) if x == 0.0 || x == 1.0 => Ok(x as u8),
        ref other => {
            let mut reason = format!("must be 0 or 1, not {}", py_repr(src, other)?);
            reason.truncate(120); // ASCII: py_repr falls back on anything else
            invalid(F::Label.name(), reason)
        }
    }
}

/// `stream.events._features`: the slow path's checks, in the dict's order (its fast path accepts only what
/// these accept, with the same values).
fn check_features<'a>(
    v: Val<'a>,
    entries: Vec<(JStr<'a>, Option<Val<'a>>)>,
) -> Out<Vec<(Str<'a>, f64)>> {
    if !matches!(v, Val::Dict(..)) {
        return invalid(
            "features",
            format!("must be an object of numbers, not {}", tname_of(&v)),
        );
    }
    if entries.len() > MAX_FEATURES {
        return invalid("features", format!("has more than {MAX_FEATURES} entries"));
    }
    let mut out = Vec::with_capacity(entries.len());
    for (k, v) in entries {
        let n = k.chars();
        if n == 0 || n > 128 {
            return invalid(
                format!("features.{}", prefix(&k.s, 20)),
                "feature name must be 1 to 128 characters",
            );
        }
        let x = match &v {
            Some(v) => num(v),
            None => Err("null"),
        };
        match x {
            Ok(x) => out.push((k.s, x)),
            Err(t) => {
                return invalid(
                    format!("features.{}", k.s),
                    format!("must be a number, not {t}"),
                )
            }
        }
    }
    Ok(out)
}

/// `stream.events.parse_ts`: epoch seconds from epoch milliseconds or ISO-8601 text.
fn parse_ts(name: &str, v: &Val<'_>) -> Out<f64> {
    let (ts, shown) = match v {
        Val::Bool(_) => {
            return invalid(
                name,
                "must be ISO-8601 text or epoch milliseconds, not a boolean",
            )
        }
        Val::Int(i) => {
            let ts = *i as f64 / 1000.0;
            if (TS_MIN..TS_MAX).contains(&ts) {
                return Ok(ts);
            }
            (ts, format!("{i} ms"))
        }
        Val::Float(x) => {
            let ts = x / 1000.0;
            if (TS_MIN..TS_MAX).contains(&ts) {
                return Ok(ts);
            }
            (ts, format!("{} ms", py_float_repr(*x)))
        }
        Val::Str(js) => {
            if js.chars() > 64 {
                return invalid(name, "is too long for a timestamp");
            }
            if js.ctrl {
                return invalid(name, "contains a control character");
            }
            if !js.ascii {
                return Err(FB); // str.strip() and fromisoformat on non-ASCII text: left to Python
            }
            let value: &str = &js.s;
            let shown = || py_repr_str(prefix(value, 40)).ok_or(FB);
            let ts = match iso_micros(value.trim_matches(' ')) {
                Iso::Micros(us) if us.abs() < 1 << 53 => us as f64 / 1e6, // both exact: one correctly rounded division
                Iso::Micros(_) => f64::INFINITY, // years beyond 2255 or before 1685
                Iso::Bad => {
                    return invalid(name, format!("is not an ISO-8601 timestamp: {}", shown()?))
                }
                Iso::Unknown => return Err(FB),
            };
            if (TS_MIN..TS_MAX).contains(&ts) {
                return Ok(ts);
            }
            (ts, shown()?)
        }
        Val::List(..) => {
            return invalid(
                name,
                "must be ISO-8601 text or epoch milliseconds, not list",
            )
        }
        Val::Dict(..) => {
            return invalid(
                name,
                "must be ISO-8601 text or epoch milliseconds, not dict",
            )
        }
    };
    let _ = ts;
    invalid(
        name,
        format!("is out of range: {shown} is not in {TS_RANGE}"),
    )
}

/// What Python's `datetime.fromisoformat` does with a timestamp's text (after `strip()`, ASCII).
#[derive(Debug, PartialEq, Eq)]
enum Iso {
    /// It parses; microseconds since the epoch, UTC (`(dt - epoch)` in microseconds, exactly).
    Micros(i64),
    /// It raises ValueError.
    Bad,
    /// Another form than the ones handled here: ask Python.
    Unknown,
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// Days from 1970-01-01 to the proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// `YYYY-MM-DDTHH:MM:SS[.f{1,6}][Z|z|±HH:MM]`, as `parse_ts` hands it to `datetime.fromisoformat` (a final `Z`
/// becomes `+00:00`; no offset means UTC). Other forms are [`Iso::Unknown`], except text that does not start
/// with a four-digit year, which Python always refuses (CPython's `parse_isoformat_date` reads it first).
fn iso_micros(t: &str) -> Iso {
    let b = t.as_bytes();
    if b.len() < 4 || !b[..4].iter().all(u8::is_ascii_digit) {
        return Iso::Bad;
    }
    let (body, zulu) = match b.last() {
        Some(b'Z' | b'z') => (&b[..b.len() - 1], true),
        _ => (b, false),
    };
    let digits = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = body.get(r)?;
        s.iter()
            .all(u8::is_ascii_digit)
            .then(|| s.iter().fold(0i64, |a, &c| a * 10 + (c - b'0') as i64))
    };
    if body.len() < 19
        || body[4] != b'-'
        || body[7] != b'-'
        || (body[10] != b'T' && body[10] != b' ') // fromisoformat takes any one separator (ISO's T, SQL's space)
        || body[13] != b':'
        || body[16] != b':'
    {
        return Iso::Unknown;
    }
    let (Some(y), Some(mo), Some(d), Some(h), Some(mi), Some(s)) = (
        digits(0..4),
        digits(5..7),
        digits(8..10),
        digits(11..13),
        digits(14..16),
        digits(17..19),
    ) else {
        return Iso::Unknown;
    };
    let mut i = 19;
    let mut micros = 0i64;
    if body.get(i) == Some(&b'.') {
        let start = i + 1;
        let mut j = start;
        while j < body.len() && body[j].is_ascii_digit() {
            j += 1;
        }
        let n = j - start;
        if n == 0 || n > 6 {
            return Iso::Unknown; // Python accepts "." alone and truncates beyond 6 digits: left to it
        }
        micros = digits(start..j).unwrap_or(0) * 10i64.pow((6 - n) as u32);
        i = j;
    }
    let offset = if zulu {
        if i != body.len() {
            return Iso::Unknown;
        }
        0
    } else if i == body.len() {
        0
    } else if body.len() == i + 6 && matches!(body[i], b'+' | b'-') && body[i + 3] == b':' {
        let (Some(oh), Some(om)) = (digits(i + 1..i + 3), digits(i + 4..i + 6)) else {
            return Iso::Unknown;
        };
        if oh > 23 || om > 59 {
            return Iso::Unknown; // Python refuses ±24:00 and folds minutes >= 60 into hours: left to it
        }
        let off = oh * 3600 + om * 60;
        if body[i] == b'-' {
            -off
        } else {
            off
        }
    } else {
        return Iso::Unknown;
    };
    if h == 24 {
        return Iso::Unknown; // some Python versions read T24:00 as the next midnight
    }
    if y < 1
        || !(1..=12).contains(&mo)
        || d < 1
        || d > days_in_month(y, mo)
        || h > 23
        || mi > 59
        || s > 59
    {
        return Iso::Bad;
    }
    let secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s - offset;
    Iso::Micros(secs * 1_000_000 + micros)
}

// --- Python's str() and repr() of the values a reason quotes --------------------------------------------------

/// The first `n` characters of `s` (Python's `s[:n]`).
fn prefix(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((at, _)) => &s[..at],
        None => s,
    }
}

/// Python's `repr(float)` (shortest text that reads back to the same double; exponent form outside 1e-4..1e16).
pub fn py_float_repr(x: f64) -> String {
    if x == 0.0 {
        return if x.is_sign_negative() { "-0.0" } else { "0.0" }.to_owned();
    }
    if !x.is_finite() {
        return if x.is_nan() {
            "nan"
        } else if x > 0.0 {
            "inf"
        } else {
            "-inf"
        }
        .to_owned();
    }
    // The shortest digit count that reads back to x, then those many digits correctly rounded from x's exact
    // value: where two shortest strings read back (x exactly halfway between them, such as 2^49 + 0.25), Python
    // writes the nearer one, ties to even ("562949953421312.2"), while `{:e}` alone may pick the other (".3").
    let shortest = format!("{x:e}");
    let n_digits = shortest.split_once('e').expect("exponent form").0.chars().filter(char::is_ascii_digit).count();
    let sci = format!("{x:.*e}", n_digits - 1); // "d.ddde-x"
    let (mant, exp) = sci.split_once('e').expect("exponent form");
    let exp: i32 = exp.parse().expect("exponent");
    let (sign, mant) = match mant.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mant),
    };
    let digits: String = mant.chars().filter(|c| *c != '.').collect();
    let n = digits.len() as i32;
    let decpt = exp + 1;
    let body = if -4 < decpt && decpt <= 16 {
        if decpt <= 0 {
            format!("0.{}{digits}", "0".repeat((-decpt) as usize))
        } else if decpt >= n {
            format!("{digits}{}.0", "0".repeat((decpt - n) as usize))
        } else {
            format!(
                "{}.{}",
                &digits[..decpt as usize],
                &digits[decpt as usize..]
            )
        }
    } else {
        let rest = if n > 1 {
            format!(".{}", &digits[1..])
        } else {
            String::new()
        };
        format!(
            "{}{rest}e{}{:02}",
            &digits[..1],
            if exp < 0 { '-' } else { '+' },
            exp.abs()
        )
    };
    format!("{sign}{body}")
}

/// Python's `repr(str)` for ASCII text; `None` for other text (Python keeps the printable characters of other
/// scripts and escapes the rest by rules not reproduced here).
pub fn py_repr_str(s: &str) -> Option<String> {
    if !s.is_ascii() {
        return None;
    }
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    Some(out)
}

/// Python's `repr()` of a decoded JSON value (`None` for null), or Fallback where it is not reproduced.
fn py_repr(src: &str, v: &Val<'_>) -> Out<String> {
    Ok(match v {
        Val::Bool(true) => "True".to_owned(),
        Val::Bool(false) => "False".to_owned(),
        Val::Int(i) => i.to_string(),
        Val::Float(x) => py_float_repr(*x),
        Val::Str(s) => py_repr_str(&s.s).ok_or(FB)?,
        Val::List(a, b) | Val::Dict(a, b) => {
            let mut p = Parser::new(&src[..*b]);
            p.i = *a;
            repr_container(&mut p, 1)?
        }
    })
}

/// Python's `str()` of a decoded JSON value.
fn py_str(src: &str, v: &Val<'_>) -> Out<String> {
    match v {
        Val::Str(s) => Ok(s.s.to_string()),
        other => py_repr(src, other),
    }
}

/// `repr()` of the list or dict at the parser's position (valid JSON, already checked).
fn repr_container(p: &mut Parser<'_>, depth: usize) -> Out<String> {
    if depth > MAX_REPR_DEPTH {
        return Err(FB);
    }
    let is_obj = p.peek() == b'{';
    p.i += 1;
    p.ws();
    let close = if is_obj { b'}' } else { b']' };
    let mut items: Vec<(String, String)> = Vec::new(); // (key, repr of the item)
    if p.peek() == close {
        p.i += 1;
    } else {
        loop {
            let key = if is_obj {
                let k = p.string()?;
                p.ws();
                p.expect(b':')?;
                p.ws();
                Some(k.s.into_owned())
            } else {
                None
            };
            let r = match p.peek() {
                b'[' | b'{' => repr_container(p, depth + 1)?,
                _ => match p.value(depth + 1)? {
                    None => "None".to_owned(),
                    Some(v) => py_repr(p.s, &v)?,
                },
            };
            match key {
                Some(k) => {
                    let shown = format!("{}: {r}", py_repr_str(&k).ok_or(FB)?);
                    match items.iter_mut().find(|(k2, _)| *k2 == k) {
                        Some(slot) => slot.1 = shown, // a dict keeps the last value at the first position
                        None => items.push((k, shown)),
                    }
                }
                None => items.push((String::new(), r)),
            }
            p.ws();
            match p.peek() {
                b',' => {
                    p.i += 1;
                    p.ws();
                }
                c if c == close => {
                    p.i += 1;
                    break;
                }
                _ => return Err(FB),
            }
        }
    }
    let inner: Vec<&str> = items.iter().map(|(_, r)| r.as_str()).collect();
    Ok(if is_obj {
        format!("{{{}}}", inner.join(", "))
    } else {
        format!("[{}]", inner.join(", "))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decode a record kept for the rest of the test (leaked: tests only).
    fn dec(s: impl AsRef<str>) -> Result<EventRef<'static>, Refused> {
        let s: &'static str = Box::leak(s.as_ref().to_owned().into_boxed_str());
        decode(s.as_bytes())
    }

    fn reason(s: &str) -> String {
        match dec(s) {
            Err(Refused::Invalid(i)) => i.to_string(),
            other => panic!("{s}: expected Invalid, got {other:?}"),
        }
    }

    const LOGIN: &str = r#"{"type":"login","event_id":"e1","ts":"2024-05-01T12:00:00Z","user_id":"u1","success":false"#;

    fn login_with(extra: &str) -> String {
        format!("{LOGIN}{extra}}}")
    }

    #[test]
    fn decodes_the_docstring_example() {
        let e = dec(&login_with("")).unwrap();
        assert_eq!(e.kind(), Kind::Login);
        assert_eq!(e.user_id, "u1");
        assert!(!e.success);
        assert_eq!(e.ts, 1714564800.0);
        assert!(
            matches!(e.event_id, Cow::Borrowed(_)),
            "unescaped strings borrow from the record"
        );
    }

    #[test]
    fn iso_forms_the_project_writes() {
        assert_eq!(
            iso_micros("2024-05-01T12:00:00"),
            Iso::Micros(1714564800_000000)
        );
        assert_eq!(
            iso_micros("2024-05-01T12:00:00Z"),
            Iso::Micros(1714564800_000000)
        );
        assert_eq!(
            iso_micros("2024-03-01T00:00:07.529Z"),
            Iso::Micros(1709251207_529000)
        );
        assert_eq!(
            iso_micros("2024-03-01T00:00:07.5+00:00"),
            Iso::Micros(1709251207_500000)
        );
        assert_eq!(
            iso_micros("2024-01-01T00:00:00.123456+05:30"),
            Iso::Micros(1704047400_123456)
        );
        assert_eq!(
            iso_micros("2024-01-01T00:00:00-23:59"),
            Iso::Micros(1704153540_000000)
        );
        assert_eq!(iso_micros("1970-01-01T00:00:00Z"), Iso::Micros(0));
        assert_eq!(
            iso_micros("2200-01-01T00:00:00Z"),
            Iso::Micros(7258118400_000000)
        );
        assert_eq!(
            iso_micros("0001-01-01T00:00:00+01:00"),
            Iso::Micros(-62135600400_000000)
        );
        assert_eq!(
            iso_micros("2000-02-29T00:00:00"),
            Iso::Micros(951782400_000000)
        );
    }

    #[test]
    fn iso_values_python_refuses_and_forms_left_to_python() {
        // fromisoformat (3.11) takes any one separator; the space is decoded here, as T
        assert_eq!(iso_micros("2024-01-01 00:00:01.5"), iso_micros("2024-01-01T00:00:01.5"));
        assert!(matches!(iso_micros("2024-01-01 00:00:01"), Iso::Micros(_)));
        for bad in [
            "",
            "yesterday",
            "+00:00",
            "1e3",
            "123Z",
            "-2024-01-01T00:00:00",
            "2024-13-01T00:00:00",
            "2024-02-30T00:00:00",
            "1900-02-29T00:00:00",
            "2024-01-01T25:00:00",
            "0000-01-01T00:00:00Z",
            "2024-01-01T00:60:00",
            "2024-01-01T00:00:60",
        ] {
            assert_eq!(iso_micros(bad), Iso::Bad, "{bad}");
        }
        for unknown in [
            "2024",
            "2024-01-01",
            "2024-01-01t00:00:00",
            "2024-01-01T00:00",
            "2024-01-01T00:00:00.",
            "2024-01-01T00:00:00.1234567",
            "2024-01-01T00:00:00+0000",
            "2024-01-01T00:00:00+00",
            "2024-01-01T00:00:00+24:00",
            "2024-01-01T00:00:00+00:60",
            "2024-01-01T24:00:00",
            "20240101T000000",
            "2024-01-01T00:00:00+01:00Z",
            "2024-01-01T00:00:00,5",
        ] {
            assert_eq!(iso_micros(unknown), Iso::Unknown, "{unknown}");
        }
    }

    #[test]
    fn timestamps_convert_as_python_does() {
        let ts = |t: &str| {
            dec(&format!(
                r#"{{"type":"label","event_id":"e","ts":{t},"ref_event_id":"r","label":1}}"#
            ))
        };
        assert_eq!(ts("1714564800123").unwrap().ts, 1714564800.123);
        assert_eq!(ts("1714564800123.5").unwrap().ts, 1714564800123.5 / 1000.0);
        assert_eq!(
            ts(r#""2024-03-01T00:00:07.529Z""#).unwrap().ts,
            1709251207.529
        );
        assert_eq!(
            ts(r#"" 2024-03-01T00:00:07.529Z ""#).unwrap().ts,
            1709251207.529
        );
        assert_eq!(ts("0").unwrap().ts, 0.0);
        assert_eq!(ts("-0.0").unwrap().ts, -0.0);
        let r = "ts: is out of range: -1000 ms is not in 1970-01-01T00:00:00Z to 2200-01-01T00:00:00Z (exclusive)";
        assert_eq!(
            ts("-1000").unwrap_err(),
            Refused::Invalid(Invalid::new("ts", &r[4..]))
        );
        match ts("1e20") {
            Err(Refused::Invalid(i)) => {
                assert!(i.reason.starts_with("is out of range: 1e+20 ms"), "{i}")
            }
            other => panic!("{other:?}"),
        }
        match ts(r#""2200-01-01T00:00:00Z""#) {
            Err(Refused::Invalid(i)) => assert!(i
                .reason
                .starts_with("is out of range: '2200-01-01T00:00:00Z'")),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            ts(r#""2199-12-31T23:59:59.999999Z""#).unwrap().ts,
            7258118399.999999
        );
        assert_eq!(ts(r#""2024-01-01""#).unwrap_err(), Refused::Fallback);
        assert_eq!(
            ts(r#""2024-01-01T00:00:00Zé""#).unwrap_err(),
            Refused::Fallback
        );
        assert_eq!(
            ts("true").unwrap_err(),
            Refused::Invalid(Invalid::new(
                "ts",
                "must be ISO-8601 text or epoch milliseconds, not a boolean"
            ))
        );
        assert_eq!(
            ts(r#""yester'day""#).unwrap_err(),
            Refused::Invalid(Invalid::new(
                "ts",
                "is not an ISO-8601 timestamp: \"yester'day\""
            ))
        );
    }

    #[test]
    fn numbers_as_orjson_reads_them() {
        let v = |t: &str| Parser::new(t).number().map(|v| format!("{v:?}"));
        assert_eq!(v("-0").unwrap(), "Int(0)");
        assert_eq!(
            v("18446744073709551615").unwrap(),
            "Int(18446744073709551615)"
        );
        assert_eq!(
            v("18446744073709551616").unwrap(),
            "Float(1.8446744073709552e19)"
        );
        assert_eq!(
            v("-9223372036854775808").unwrap(),
            "Int(-9223372036854775808)"
        );
        assert_eq!(
            v("-9223372036854775809").unwrap(),
            "Float(-9.223372036854776e18)"
        );
        assert_eq!(v("1e-400").unwrap(), "Float(0.0)");
        assert_eq!(v("2.4703282292062328e-324").unwrap(), "Float(5e-324)");
        assert_eq!(v("2.4703282292062327e-324").unwrap(), "Float(0.0)");
        assert_eq!(v("1e400"), Err(FB));
        assert_eq!(v(&format!("1{}", "0".repeat(400))), Err(FB));
        assert_eq!(v("1."), Err(FB));
        assert_eq!(v("-"), Err(FB));
        assert_eq!(v("1e+"), Err(FB));
        // the checks on them
        let amount = |t: &str| {
            dec(&format!(
                r#"{{"type":"order","event_id":"e","ts":0,"user_id":"u","order_id":"o","amount":{t},"currency":"EUR","merchant_id":"m","items":{t}}}"#
            ))
        };
        let e = amount("2.0").unwrap();
        assert_eq!((e.amount, e.items), (2.0, Some(2)));
        let e = amount("-0.0").unwrap();
        assert!(e.amount == 0.0 && e.amount.is_sign_negative() && e.items == Some(0));
        assert_eq!(
            amount("9223372036854775808").unwrap_err(),
            Refused::Invalid(Invalid::new("items", "is too large"))
        );
        assert_eq!(
            amount("9.3e18").unwrap_err(),
            Refused::Invalid(Invalid::new("items", "is too large"))
        );
        assert_eq!(
            amount("2.5").unwrap_err(),
            Refused::Invalid(Invalid::new("items", "must be an integer, not float"))
        );
        assert_eq!(
            amount("-1").unwrap_err(),
            Refused::Invalid(Invalid::new("amount", "must be >= 0"))
        );
        assert_eq!(
            amount("9007199254740993").unwrap().amount,
            9007199254740992.0
        );
        assert_eq!(
            reason(&login_with(r#","success":1.0"#)),
            "success: must be true or false, not float"
        );
        assert!(dec(&login_with(r#","success":1"#)).unwrap().success);
    }

    #[test]
    fn python_float_repr() {
        for (x, s) in [
            (1e20, "1e+20"),
            (-1e20, "-1e+20"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-5, "1.5e-05"),
            (5e-324, "5e-324"),
            (1e308, "1e+308"),
            (2.5, "2.5"),
            (-0.0, "-0.0"),
            (123456789.125, "123456789.125"),
            (1.2345678901234568e+29, "1.2345678901234568e+29"),
            (0.1, "0.1"),
            (100.0, "100.0"),
            (562949953421312.25, "562949953421312.2"), // halfway between two shortest strings: the even one
            (562949953421312.75, "562949953421312.8"),
            (0.3, "0.3"),
            (2.0f64.powi(60), "1.152921504606847e+18"),
        ] {
            assert_eq!(py_float_repr(x), s);
        }
    }

    #[test]
    fn reasons_quote_values_as_python_repr_does() {
        assert_eq!(
            reason(&login_with(
                r#","label":[1, {"a": null, "b": true, "a": "x"}]"#
            )),
            "label: must be 0 or 1, not [1, {'a': 'x', 'b': True}]"
        );
        assert_eq!(
            reason(&login_with(r#","label":"it's""#)),
            "label: must be 0 or 1, not \"it's\""
        );
        assert_eq!(
            reason(r#"{"type":"login\u0000"}"#),
            "type: must be one of order, login, label, not 'login\\x00'"
        );
        assert_eq!(
            reason(r#"{"type":["a"]}"#),
            "type: must be one of order, login, label, not \"['a']\""
        );
        assert_eq!(reason(r#"{"type":null}"#), "type: is missing");
        assert_eq!(reason("[1, 2]"), "$: must be a JSON object, not list");
        assert_eq!(reason(" null "), "$: must be a JSON object, not null");
        assert_eq!(dec(r#"{"type":"é"}"#).unwrap_err(), Refused::Fallback);
    }

    #[test]
    fn strings_and_features() {
        assert_eq!(
            reason(&login_with(r#","device_id":"a\u007f""#)),
            "device_id: contains a control character"
        );
        assert_eq!(
            reason(&login_with(r#","device_id":"""#)),
            "device_id: must not be empty"
        );
        let long = "é".repeat(1025);
        assert_eq!(
            reason(&login_with(&format!(r#","device_id":"{long}""#))),
            "device_id: is longer than 1024 characters (1025)"
        );
        let e = dec(&login_with(r#","device_id":"d\u00e9\ud83d\ude00","ip":42"#)).unwrap();
        assert_eq!(e.device_id.as_deref(), Some("dé😀"));
        assert_eq!(e.ip.as_deref(), Some("42"));
        let e = dec(&login_with(r#","features":{"a":1,"b":2.5,"a":-0.0}"#)).unwrap();
        assert_eq!(
            e.features,
            vec![(Cow::Borrowed("a"), -0.0), (Cow::Borrowed("b"), 2.5)]
        );
        assert_eq!(
            reason(&login_with(r#","features":{"a":1,"":2}"#)),
            "features.: feature name must be 1 to 128 characters"
        );
        assert_eq!(
            reason(&login_with(r#","features":{"z":"high"}"#)),
            "features.z: must be a number, not str"
        );
        assert_eq!(
            reason(&login_with(r#","features":{"z":null}"#)),
            "features.z: must be a number, not null"
        );
        assert_eq!(
            reason(&login_with(r#","features":[]"#)),
            "features: must be an object of numbers, not list"
        );
    }

    #[test]
    fn invalid_json_falls_back_and_depth_is_bounded() {
        for bad in [
            "",
            " ",
            "{",
            r#"{"a":1,}"#,
            "{}x",
            r#"{"a":"\ud800"}"#,
            r#"{"a":01}"#,
            r#"{"a":NaN}"#,
            "\u{feff}{}",
            r#"{"a":"x	"}"#,
            r#"{"a":[1,]}"#,
            r#"{"a":{"b"}}"#,
            r#"{"a":[}"#,
        ] {
            assert_eq!(dec(bad).unwrap_err(), Refused::Fallback, "{bad:?}");
        }
        assert_eq!(decode(b"{\"a\":\"\xff\"}").unwrap_err(), Refused::Fallback);
        let nest = |d: usize| format!(r#"{LOGIN},"x":{}{}}}"#, "[".repeat(d), "]".repeat(d));
        assert!(dec(&nest(MAX_DEPTH - 1)).is_ok());
        assert_eq!(dec(&nest(MAX_DEPTH)).unwrap_err(), Refused::Fallback);
        let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(MAX_RECORD_BYTES));
        assert_eq!(
            reason(&big),
            format!("$: record is larger than 65536 bytes ({})", big.len())
        );
    }
}

//! Per-entity event-time sliding-window features: the port of `stream/features.py`'s `FeatureExtractor`.
//!
//! The Python module is the reference and says what every feature means; this one computes the same numbers
//! with the same float operations in the same order (so the rows are bit-identical, which
//! `tests/core/test_features_differential.py` checks), and the same key order:
//!
//! - A [`Schema`] per event type: an order's starts with every engine order name (in the Python dict's order),
//!   a login's with every login name, and pass-through names are appended as they first appear. A column an
//!   event has no key for is `NaN` in its row: an optional order field's columns (device, IP, payment, address,
//!   country, items, account creation time) until some order carried the field, as Python leaves those keys out,
//!   and the pass-through names the event does not carry.
//! - So the Python dict of an event is, in order: the engine columns that are not `NaN`, then the pass-through
//!   columns in the event's own key order ([`FeatureState::pass_columns`]), which is the schema's order whenever
//!   the events list their features in one order (a CSV export, say).
//!
//! The state (entity tables in last-seen order, bucket rings, distinct sets, memories) serialises with serde;
//! [`FeatureState::to_bytes`] / [`FeatureState::from_bytes`] give a checkpoint from which a copy continues exactly.

pub mod ring;
pub mod sets;
pub mod small;
pub mod table;

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::event::{EventRef, Kind, Row, Schema};
use ring::{py_floordiv, Windows};
use sets::{Key, Recent};
use table::Table;

pub const BUCKETS: f64 = 12.0;
pub const DAY: f64 = 86400.0;
pub const LOGIN_WINDOWS: [f64; 2] = [60.0, 3600.0];
pub const PROMO_WINDOWS: [f64; 2] = [3600.0, 86400.0];
pub const FRESH: f64 = 3600.0;
pub const LOGIN_USERS_WINDOW: f64 = 3600.0;

const EW_ALPHA: f64 = 0.1;
const Z_MIN_ORDERS: f64 = 3.0;
const Z_MIN_STD: f64 = 0.1;
const Z_CLIP: f64 = 10.0;
const MIN_TRAVEL_S: f64 = 60.0;
const VELOCITY_CAP: f64 = 20000.0;
const EARTH_KM: f64 = 6371.0088;

/// Optional order fields, bit i = field i (`_ORDER_OPTIONAL`).
pub const ORDER_OPTIONAL: [&str; 7] =
    ["device_id", "ip", "payment_id", "address_id", "country", "items", "account_created_ts"];
const ALL_OPTIONAL: u8 = (1 << ORDER_OPTIONAL.len()) - 1;
const KNOWN: [(&str, &str); 5] =
    [("devices", "device"), ("ips", "ip"), ("countries", "country"), ("payments", "payment"), ("addresses", "address")];

/// Python's `max(a, b)`: `b` only if it is greater.
#[inline]
fn py_max(a: f64, b: f64) -> f64 {
    if b > a {
        b
    } else {
        a
    }
}

/// Python's `min(a, b)`: `b` only if it is smaller.
#[inline]
fn py_min(a: f64, b: f64) -> f64 {
    if b < a {
        b
    } else {
        a
    }
}

#[inline]
fn flag(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

// ---------------------------------------------------------------------------------------------------------------
// parameters and names

/// The constructor parameters of `FeatureExtractor`, with its defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Params {
    /// Seconds; any order, duplicates allowed (sorted and deduplicated by [`FeatureState::new`]).
    pub windows: Vec<f64>,
    pub idle_ttl: f64,
    pub max_distinct: usize,
    pub max_known: usize,
    pub expire_every: u64,
    pub passthrough: bool,
    pub max_entities: usize,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            windows: vec![60.0, 3600.0, 86400.0],
            idle_ttl: 30.0 * 86400.0,
            max_distinct: 64,
            max_known: 32,
            expire_every: 4096,
            passthrough: true,
            max_entities: 1_000_000,
        }
    }
}

/// How a window is written in feature names: `60 -> "1m"`, `3600 -> "1h"`, `86400 -> "24h"`, `30 -> "30s"`,
/// `1.5 -> "1.5s"` (`window_name` of the Python module, including its `%g` for fractions).
pub fn window_name(seconds: f64) -> String {
    if seconds % 3600.0 == 0.0 {
        return format!("{:.0}h", py_floordiv(seconds, 3600.0));
    }
    if seconds % 60.0 == 0.0 {
        return format!("{:.0}m", py_floordiv(seconds, 60.0));
    }
    if seconds == seconds.trunc() {
        return format!("{seconds:.0}s");
    }
    format!("{}s", format_g(seconds))
}

/// C's / Python's `%g` (precision 6).
fn format_g(x: f64) -> String {
    const P: i32 = 6;
    if x == 0.0 {
        return if x.is_sign_negative() { "-0".into() } else { "0".into() };
    }
    let sci = format!("{:.*e}", (P - 1) as usize, x);
    let (mant, exp) = sci.split_once('e').expect("exponent");
    let exp: i32 = exp.parse().expect("exponent");
    let strip = |s: &str| -> String {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_owned()
        } else {
            s.to_owned()
        }
    };
    if (-4..P).contains(&exp) {
        strip(&format!("{:.*}", (P - 1 - exp) as usize, x))
    } else {
        format!("{}e{}{:02}", strip(mant), if exp < 0 { '-' } else { '+' }, exp.abs())
    }
}

/// An order's feature names, in the order they are computed (`_order_names`).
pub fn order_names(wnames: &[String]) -> Vec<String> {
    let mut names: Vec<String> =
        ["order_amount", "order_log_amount", "order_items", "order_is_promo"].map(String::from).to_vec();
    for entity in ["user", "device", "ip", "payment", "address", "merchant"] {
        for w in wnames {
            names.push(format!("{entity}_orders_{w}"));
            names.push(format!("{entity}_amount_{w}"));
        }
    }
    for w in PROMO_WINDOWS {
        names.push(format!("promo_redemptions_{}", window_name(w)));
    }
    for (plural, one) in KNOWN {
        names.push(format!("user_{plural}_24h"));
        names.push(format!("user_new_{one}"));
        names.push(format!("user_fresh_{one}"));
    }
    names.extend(
        [
            "user_first_seen",
            "device_users_24h",
            "device_payments_24h",
            "device_new_accounts_24h",
            "device_promo_users_24h",
            "ip_users_24h",
            "ip_payments_24h",
            "payment_users_24h",
            "address_users_24h",
            "device_login_users_24h",
            "account_age_days",
            "user_seconds_since_last_login",
            "user_amount_z",
            "user_amount_ratio_max",
        ]
        .map(String::from),
    );
    names
}

/// A login's feature names, in the order they are computed (`_login_names`).
pub fn login_names() -> Vec<String> {
    let mut names = vec!["login_success".to_owned()];
    let last = window_name(LOGIN_WINDOWS[1]);
    for entity in ["user", "ip"] {
        for w in LOGIN_WINDOWS {
            names.push(format!("{entity}_logins_{}", window_name(w)));
            names.push(format!("{entity}_failed_logins_{}", window_name(w)));
        }
        names.push(format!("{entity}_failed_login_ratio_{last}"));
        if entity == "ip" {
            names.push(format!("ip_login_users_{}", window_name(LOGIN_USERS_WINDOW)));
        }
    }
    names.push("device_login_users_24h".into());
    names.extend(["login_distance_km", "login_velocity_kmh", "user_seconds_since_prev_login"].map(String::from));
    for (plural, one) in &KNOWN[..3] {
        names.push(format!("user_{plural}_24h"));
        names.push(format!("user_new_{one}"));
        names.push(format!("user_fresh_{one}"));
    }
    names.extend(["user_first_seen", "account_age_days", "user_seconds_since_last_login"].map(String::from));
    names
}

/// The bit of the optional order field an order feature describes, if any (`_optional_field`).
fn optional_field(name: &str) -> Option<u8> {
    for (i, (prefix, plural, one)) in [
        ("device_", "devices", "device"),
        ("ip_", "ips", "ip"),
        ("payment_", "payments", "payment"),
        ("address_", "addresses", "address"),
    ]
    .iter()
    .enumerate()
    {
        if name.starts_with(prefix)
            || name == format!("user_{plural}_24h")
            || name == format!("user_new_{one}")
            || name == format!("user_fresh_{one}")
        {
            return Some(i as u8);
        }
    }
    match name {
        "user_countries_24h" | "user_new_country" | "user_fresh_country" => Some(4),
        "order_items" => Some(5),
        "account_age_days" => Some(6),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------------------------
// records

/// Per known attribute, the value that was last new to the user and when it became known.
pub type FreshValues = [(Option<Key>, f64); 5];

/// A user: order windows, known-value memories (device, IP, country, payment, address) and history scalars.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub w: Windows,
    pub known: [Recent; 5],
    pub born: f64,
    pub mean: f64,
    pub var: f64,
    pub max: f64,
    pub last_ok: Option<f64>,
    pub last_login: Option<f64>,
    /// (lat, lon, time) of the last login with coordinates.
    pub geo: Option<(f64, f64, f64)>,
    pub logins: Option<Box<Windows>>,
    /// Per known attribute, the value that was last new to the user and when (`_U_FRESH`).
    pub fresh: Option<Box<FreshValues>>,
}

impl User {
    fn new(t: f64, windows: usize) -> Self {
        User {
            w: Windows::new(windows),
            known: Default::default(),
            born: t,
            mean: 0.0,
            var: 0.0,
            max: 0.0,
            last_ok: None,
            last_login: None,
            geo: None,
            logins: None,
            fresh: None,
        }
    }
}

/// A device: order windows and distinct users, payments, new accounts, promo users (orders), login users.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Device {
    pub w: Windows,
    pub sets: [Recent; 5],
}

const D_USERS: usize = 0;
const D_LOGIN_USERS: usize = 4;

/// An IP: order windows, distinct users and payments (orders), login windows and login users.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ip {
    pub w: Windows,
    pub users: Recent,
    pub payments: Recent,
    pub logins: Option<Box<Windows>>,
    pub login_users: Recent,
}

/// A payment instrument or an address: order windows and distinct users.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Shared {
    pub w: Windows,
    pub users: Recent,
}

// ---------------------------------------------------------------------------------------------------------------
// the state

/// What the parameters determine; rebuilt after deserialising.
#[derive(Clone, Debug, Default)]
struct Derived {
    widths: Vec<f64>,
    login_widths: [f64; 2],
    promo_widths: [f64; 2],
    horizon: f64,
    order_names: Vec<String>,
    login_names: Vec<String>,
    engine: HashSet<String>,
    /// Per optional bit, the order columns it activates.
    optional_cols: [Vec<usize>; 7],
}

/// The feature state of one partition: `FeatureExtractor` in Rust.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FeatureState {
    params: Params,
    seen: u8,
    now: f64,
    countdown: u64,
    users: Table<User>,
    devices: Table<Device>,
    ips: Table<Ip>,
    payments: Table<Shared>,
    addresses: Table<Shared>,
    merchants: Table<Windows>,
    promos: Table<Windows>,
    schemas: [Schema; 2],
    #[serde(skip)]
    d: Derived,
    /// The engine values of the event being transformed (Python's `out` list).
    #[serde(skip)]
    out: Vec<f64>,
    #[serde(skip)]
    bs: Vec<f64>,
    /// Columns of the last event's pass-through features, in its key order.
    #[serde(skip)]
    pass_cols: Vec<usize>,
    /// Per kind, the last pass-through names seen and their columns: the next event with the same names (the
    /// usual case) skips the name lookups.
    #[serde(skip)]
    pass_cache: [Vec<(String, usize)>; 2],
}

/// Which entity table, for [`FeatureState::memory`].
pub const TABLES: [&str; 7] = ["user", "device", "ip", "payment", "address", "merchant", "promo"];

impl FeatureState {
    /// Validate `params` as `FeatureExtractor.__init__` does (same conditions; the PyO3 wrapper raises Python's
    /// own messages) and start an empty state.
    pub fn new(mut params: Params) -> Result<Self, String> {
        if params.windows.is_empty() || !params.windows.iter().all(|w| w.is_finite() && *w > 0.0) {
            return Err(format!("windows must be positive finite seconds, not {:?}", params.windows));
        }
        params.windows.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
        params.windows.dedup();
        let names: Vec<String> = params.windows.iter().map(|&w| window_name(w)).collect();
        let unique: HashSet<&String> = names.iter().collect();
        if unique.len() != names.len() {
            return Err(format!("windows {:?} have clashing names {:?}", params.windows, names));
        }
        if !(params.idle_ttl > 0.0 && params.idle_ttl < f64::INFINITY) {
            return Err(format!("idle_ttl must be positive seconds, not {}", params.idle_ttl));
        }
        for (name, value) in [
            ("max_distinct", params.max_distinct as u64),
            ("max_known", params.max_known as u64),
            ("expire_every", params.expire_every),
            ("max_entities", params.max_entities as u64),
        ] {
            if value < 1 {
                return Err(format!("{name} must be an integer >= 1, not {value}"));
            }
        }
        let mut s = FeatureState {
            seen: 0,
            now: f64::NEG_INFINITY,
            countdown: params.expire_every,
            params,
            users: Table::default(),
            devices: Table::default(),
            ips: Table::default(),
            payments: Table::default(),
            addresses: Table::default(),
            merchants: Table::default(),
            promos: Table::default(),
            schemas: Default::default(),
            d: Derived::default(),
            out: Vec::new(),
            bs: Vec::new(),
            pass_cols: Vec::new(),
            pass_cache: Default::default(),
        };
        s.derive();
        for n in &s.d.order_names {
            s.schemas[0].column(n);
        }
        for n in &s.d.login_names {
            s.schemas[1].column(n);
        }
        Ok(s)
    }

    fn derive(&mut self) {
        let ws = &self.params.windows;
        let wnames: Vec<String> = ws.iter().map(|&w| window_name(w)).collect();
        let order_names = order_names(&wnames);
        let login_names = login_names();
        let mut optional_cols: [Vec<usize>; 7] = Default::default();
        for (i, n) in order_names.iter().enumerate() {
            if let Some(bit) = optional_field(n) {
                optional_cols[bit as usize].push(i);
            }
        }
        let last = ws[ws.len() - 1];
        self.d = Derived {
            widths: ws.iter().map(|w| w / BUCKETS).collect(),
            login_widths: LOGIN_WINDOWS.map(|w| w / BUCKETS),
            promo_widths: PROMO_WINDOWS.map(|w| w / BUCKETS),
            horizon: py_max(self.params.idle_ttl, py_max(last, DAY) * (BUCKETS + 1.0) / BUCKETS),
            engine: order_names.iter().chain(&login_names).cloned().collect(),
            order_names,
            login_names,
            optional_cols,
        };
        self.out = Vec::with_capacity(self.d.order_names.len().max(self.d.login_names.len()));
        self.bs = Vec::with_capacity(ws.len());
    }

    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The growing feature names of orders (`Kind::Order`) or logins (`Kind::Login`).
    pub fn schema(&self, kind: Kind) -> &Schema {
        &self.schemas[kind as usize]
    }

    /// How many leading columns of `kind`'s schema are engine features (the rest are pass-throughs).
    pub fn engine_len(&self, kind: Kind) -> usize {
        match kind {
            Kind::Order => self.d.order_names.len(),
            _ => self.d.login_names.len(),
        }
    }

    /// Every name the engine emits: an order's, then the login-only ones (`feature_names()`).
    pub fn feature_names(&self) -> Vec<String> {
        let mut seen = HashSet::new();
        self.d.order_names.iter().chain(&self.d.login_names).filter(|n| seen.insert(n.as_str())).cloned().collect()
    }

    /// The columns of the last transformed event's pass-through features, in the event's key order.
    pub fn pass_columns(&self) -> &[usize] {
        &self.pass_cols
    }

    /// The watermark: the newest event time seen (`-inf` before the first order or login).
    pub fn now(&self) -> f64 {
        self.now
    }

    /// Features of `ev` from the state before it, then fold `ev` in (`transform_one`).
    ///
    /// `row` is overwritten with one value per column of the returned kind's [`schema`](Self::schema) (`NaN`:
    /// no such key for this event); its allocation is reused, so the steady state allocates nothing but the
    /// records of new entities. A label returns `None`, clears `row` and changes nothing.
    pub fn transform(&mut self, ev: &EventRef<'_>, row: &mut Row) -> Option<Kind> {
        let kind = ev.kind();
        self.pass_cols.clear();
        if kind == Kind::Label {
            row.clear();
            return None;
        }
        let mut t = ev.ts;
        if t > self.now {
            self.now = t;
        } else {
            t = self.now; // late (or simultaneous): it happens at the watermark
        }
        row.clear();
        if kind == Kind::Order {
            self.order(ev, t);
            row.extend_from_slice(&self.out);
            if self.seen != ALL_OPTIONAL {
                for bit in 0..ORDER_OPTIONAL.len() {
                    if self.seen >> bit & 1 == 0 {
                        for &c in &self.d.optional_cols[bit] {
                            row[c] = f64::NAN;
                        }
                    }
                }
            }
        } else {
            self.login(ev, t);
            row.extend_from_slice(&self.out);
        }
        row.resize(self.schemas[kind as usize].len(), f64::NAN);
        if self.params.passthrough && !ev.features.is_empty() {
            self.pass_through(kind, ev, row);
        }
        self.countdown -= 1;
        if self.countdown == 0 {
            self.countdown = self.params.expire_every;
            self.expire();
        }
        Some(kind)
    }

    fn pass_through(&mut self, kind: Kind, ev: &EventRef<'_>, row: &mut Row) {
        let k = kind as usize;
        let feats = &ev.features;
        let cache = &self.pass_cache[k];
        if cache.len() == feats.len() && cache.iter().zip(feats).all(|(c, f)| c.0 == *f.0) {
            for ((_, col), (_, v)) in cache.iter().zip(feats) {
                row[*col] = *v;
                self.pass_cols.push(*col);
            }
            return;
        }
        let engine = &self.d.engine;
        let schema = &mut self.schemas[k];
        let clash = feats.iter().any(|(name, _)| engine.contains(&**name));
        let mut cache = Vec::with_capacity(feats.len());
        for (name, v) in feats {
            let col = if clash && engine.contains(&**name) {
                // ours wins: the upstream value moves to the first free in_..._<name>
                let mut new = format!("in_{name}");
                while engine.contains(&new)
                    || feats.iter().any(|(f, _)| **f == *new)
                    || self.pass_cols.iter().any(|&c| schema.names[c] == new)
                {
                    new.insert_str(0, "in_");
                }
                schema.column(&new)
            } else {
                schema.column(name)
            };
            if col >= row.len() {
                row.resize(col + 1, f64::NAN);
            }
            row[col] = *v;
            self.pass_cols.push(col);
            cache.push((name.to_string(), col));
        }
        self.pass_cache[k] = cache;
    }

    fn order(&mut self, e: &EventRef<'_>, t: f64) {
        let FeatureState {
            params, d, users, devices, ips, payments, addresses, merchants, promos, out, bs, seen, ..
        } = self;
        out.clear();
        let amount = e.amount;
        let uid: &str = &e.user_id;
        let device = e.device_id.as_deref();
        let ip = e.ip.as_deref();
        let payment = e.payment_id.as_deref();
        let address = e.address_id.as_deref();
        let promo = e.promo_code.as_deref();
        let country = e.country.as_deref();
        let log_amount = amount.ln_1p();
        out.push(amount);
        out.push(log_amount);
        out.push(match e.items {
            None => 0.0,
            Some(i) => i as f64,
        });
        out.push(flag(promo.is_some()));
        bs.clear();
        bs.extend(d.widths.iter().map(|&g| py_floordiv(t, g)));
        let nw = bs.len();

        // per-entity order counts and amounts over each window
        let (u, first) = users.touch(uid, t, || User::new(t, nw));
        let n_prev = u.w.n;
        u.w.roll(amount, bs, out);
        let zeros = |out: &mut Vec<f64>| out.extend(std::iter::repeat_n(0.0, 2 * nw));
        let mut dev = match device {
            None => {
                zeros(out);
                None
            }
            Some(k) => {
                let r = devices.touch(k, t, || Device { w: Windows::new(nw), sets: Default::default() }).0;
                r.w.roll(amount, bs, out);
                Some(r)
            }
        };
        let mut ipr = match ip {
            None => {
                zeros(out);
                None
            }
            Some(k) => {
                let r = ips.touch(k, t, || new_ip(nw)).0;
                r.w.roll(amount, bs, out);
                Some(r)
            }
        };
        let mut pay = match payment {
            None => {
                zeros(out);
                None
            }
            Some(k) => {
                let r = payments.touch(k, t, || Shared { w: Windows::new(nw), users: Recent::default() }).0;
                r.w.roll(amount, bs, out);
                Some(r)
            }
        };
        let mut adr = match address {
            None => {
                zeros(out);
                None
            }
            Some(k) => {
                let r = addresses.touch(k, t, || Shared { w: Windows::new(nw), users: Recent::default() }).0;
                r.w.roll(amount, bs, out);
                Some(r)
            }
        };
        merchants.touch(&e.merchant_id, t, || Windows::new(nw)).0.roll(amount, bs, out);
        match promo {
            None => {
                out.push(0.0);
                out.push(0.0);
            }
            Some(p) => {
                // redemption counts only: a promo record's sums are not features
                let pbs = d.promo_widths.map(|g| py_floordiv(t, g));
                let l = out.len();
                promos.touch(p, t, || Windows::new(PROMO_WINDOWS.len())).0.roll(amount, &pbs, out);
                out[l + 1] = out[l + 2];
                out.truncate(l + 2);
            }
        }

        // the user's known values: distinct in 24 h, novelty
        let day_cut = t - DAY;
        known(
            u,
            &[device, ip, country, payment, address],
            t,
            first,
            true,
            day_cut,
            t - params.idle_ttl,
            t - FRESH,
            params.max_known,
            out,
        );
        out.push(flag(first));

        // distinct users / payments per shared entity
        let created = match e.account_created_ts {
            None => u.born,
            Some(c) => {
                u.born = c;
                c
            }
        };
        let age = t - created;
        let age = if age > 0.0 { age / DAY } else { 0.0 };
        let cap = params.max_distinct;
        let new_account = if age >= 1.0 { None } else { Some(uid) };
        let promo_user = promo.map(|_| uid);
        if dev.is_none() && ipr.is_none() && pay.is_none() && adr.is_none() {
            out.extend([0.0; 9]);
        } else {
            match dev.as_mut() {
                None => out.extend([0.0; 4]),
                Some(r) => {
                    for (i, v) in [Some(uid), payment, new_account, promo_user].into_iter().enumerate() {
                        out.push(r.sets[D_USERS + i].distinct(v, t, day_cut, cap));
                    }
                }
            }
            match ipr.as_mut() {
                None => out.extend([0.0; 2]),
                Some(r) => {
                    out.push(r.users.distinct(Some(uid), t, day_cut, cap));
                    out.push(r.payments.distinct(payment, t, day_cut, cap));
                }
            }
            out.push(pay.as_mut().map_or(0.0, |r| r.users.distinct(Some(uid), t, day_cut, cap)));
            out.push(adr.as_mut().map_or(0.0, |r| r.users.distinct(Some(uid), t, day_cut, cap)));
            // read only: logins record it
            out.push(dev.as_mut().map_or(0.0, |r| r.sets[D_LOGIN_USERS].distinct(None, t, day_cut, cap)));
        }

        // the user's own history: account age, last login, amount against the user's earlier orders
        let horizon = d.horizon;
        let mean = u.mean;
        let var = u.var;
        #[allow(clippy::manual_clamp)] // Python's chained conditional, as written there
        let z = if n_prev >= Z_MIN_ORDERS {
            let z = (log_amount - mean) / py_max(var.sqrt(), Z_MIN_STD);
            if z > Z_CLIP {
                Z_CLIP
            } else if z < -Z_CLIP {
                -Z_CLIP
            } else {
                z
            }
        } else {
            0.0
        };
        let top = u.max;
        out.push(age);
        out.push(match u.last_ok {
            None => horizon,
            Some(l) => py_min(t - l, horizon),
        });
        out.push(z);
        out.push(if n_prev != 0.0 { (amount + 1.0) / (top + 1.0) } else { 1.0 });
        let alpha = py_max(EW_ALPHA, 1.0 / (n_prev + 1.0));
        let diff = log_amount - mean;
        let incr = alpha * diff;
        u.mean = mean + incr;
        u.var = (1.0 - alpha) * (var + diff * incr);
        if amount > top {
            u.max = amount;
        }

        if *seen != ALL_OPTIONAL {
            let have = (device.is_some() as u8)
                | (ip.is_some() as u8) << 1
                | (payment.is_some() as u8) << 2
                | (address.is_some() as u8) << 3
                | (country.is_some() as u8) << 4
                | (e.items.is_some() as u8) << 5
                | (e.account_created_ts.is_some() as u8) << 6;
            *seen |= have;
        }
    }

    fn login(&mut self, e: &EventRef<'_>, t: f64) {
        let FeatureState { params, d, users, devices, ips, out, .. } = self;
        out.clear();
        let uid: &str = &e.user_id;
        let ip = e.ip.as_deref();
        let ok = e.success;
        let failed = if ok { 0.0 } else { 1.0 };
        out.push(1.0 - failed);
        let bs = d.login_widths.map(|g| py_floordiv(t, g));
        let nw = bs.len();
        let nwo = d.widths.len();

        // attempts and failures per user and per IP; distinct users per IP
        let (u, first) = users.touch(uid, t, || User::new(t, nwo));
        let lr = u.logins.get_or_insert_with(|| Box::new(Windows::new(nw)));
        lr.roll(failed, &bs, out);
        ratio(out);
        match ip {
            None => out.extend(std::iter::repeat_n(0.0, 2 * nw + 2)),
            Some(k) => {
                let rec = ips.touch(k, t, || new_ip(nwo)).0;
                let lr = rec.logins.get_or_insert_with(|| Box::new(Windows::new(nw)));
                lr.roll(failed, &bs, out);
                ratio(out);
                out.push(rec.login_users.distinct(Some(uid), t, t - LOGIN_USERS_WINDOW, params.max_distinct));
            }
        }
        // distinct users on the device over a day
        let device = e.device_id.as_deref();
        match device {
            None => out.push(0.0),
            Some(k) => {
                let rec = devices.touch(k, t, || Device { w: Windows::new(nwo), sets: Default::default() }).0;
                out.push(rec.sets[D_LOGIN_USERS].distinct(Some(uid), t, t - DAY, params.max_distinct));
            }
        }

        // travel from the user's previous login with coordinates
        match (e.lat, e.lon) {
            (Some(lat), Some(lon)) => {
                match u.geo {
                    None => out.extend([0.0, 0.0]),
                    Some((plat, plon, geo_ts)) => {
                        let km = haversine_km(plat, plon, lat, lon);
                        let kmh = km * 3600.0 / py_max(t - geo_ts, MIN_TRAVEL_S);
                        out.push(km);
                        out.push(if kmh < VELOCITY_CAP { kmh } else { VELOCITY_CAP });
                    }
                }
                u.geo = Some((lat, lon, t));
            }
            _ => out.extend([0.0, 0.0]),
        }
        let horizon = d.horizon;
        out.push(match u.last_login {
            None => horizon,
            Some(p) => py_min(t - p, horizon),
        });
        u.last_login = Some(t);

        // novelty (a failed attempt teaches nothing), account age, last successful login
        known(
            u,
            &[device, ip, e.country.as_deref()],
            t,
            first,
            ok,
            t - DAY,
            t - params.idle_ttl,
            t - FRESH,
            params.max_known,
            out,
        );
        out.push(flag(first));
        let age = t - u.born;
        out.push(if age > 0.0 { age / DAY } else { 0.0 });
        out.push(match u.last_ok {
            None => horizon,
            Some(l) => py_min(t - l, horizon),
        });
        if ok {
            u.last_ok = Some(t);
        }
    }

    /// Drop the entities idle past the horizon, then the least recently seen past `max_entities` (`_expire`).
    fn expire(&mut self) {
        let cut = self.now - self.d.horizon;
        let cap = self.params.max_entities;
        self.users.expire(cut, cap);
        self.devices.expire(cut, cap);
        self.ips.expire(cut, cap);
        self.payments.expire(cut, cap);
        self.addresses.expire(cut, cap);
        self.merchants.expire(cut, cap);
        self.promos.expire(cut, cap);
    }

    /// Per table (`TABLES` order): entities tracked and an estimate of the bytes they hold (records, their heap,
    /// keys, index and slab, with the allocator's rounding).
    pub fn memory(&self) -> Vec<(&'static str, usize, usize)> {
        fn recent(r: &Recent) -> usize {
            r.heap_bytes()
        }
        fn boxed(w: &Option<Box<Windows>>) -> usize {
            w.as_ref().map_or(0, |w| std::mem::size_of::<Windows>() + w.heap_bytes())
        }
        fn sum<R>(t: &Table<R>, f: impl Fn(&R) -> usize) -> usize {
            t.overhead_bytes() + t.iter().map(|(_, _, r)| f(r)).sum::<usize>()
        }
        vec![
            (
                "user",
                self.users.len(),
                sum(&self.users, |u| {
                    u.w.heap_bytes()
                        + u.known.iter().map(recent).sum::<usize>()
                        + boxed(&u.logins)
                        + u.fresh.as_ref().map_or(0, |f| {
                            std::mem::size_of::<FreshValues>()
                                + f.iter().map(|(k, _)| k.as_ref().map_or(0, |k| k.heap_bytes())).sum::<usize>()
                        })
                }),
            ),
            (
                "device",
                self.devices.len(),
                sum(&self.devices, |r| r.w.heap_bytes() + r.sets.iter().map(recent).sum::<usize>()),
            ),
            (
                "ip",
                self.ips.len(),
                sum(&self.ips, |r| {
                    r.w.heap_bytes()
                        + recent(&r.users)
                        + recent(&r.payments)
                        + recent(&r.login_users)
                        + boxed(&r.logins)
                }),
            ),
            ("payment", self.payments.len(), sum(&self.payments, |r| r.w.heap_bytes() + recent(&r.users))),
            ("address", self.addresses.len(), sum(&self.addresses, |r| r.w.heap_bytes() + recent(&r.users))),
            ("merchant", self.merchants.len(), sum(&self.merchants, |r| r.heap_bytes())),
            ("promo", self.promos.len(), sum(&self.promos, |r| r.heap_bytes())),
        ]
    }

    /// The state as bytes (bincode), prefixed by [`crate::STATE_VERSION`].
    pub fn to_bytes(&self) -> Vec<u8> {
        bincode::serialize(&(crate::STATE_VERSION, self)).expect("the state serialises")
    }

    /// A state from [`to_bytes`](Self::to_bytes); it continues exactly where the original was.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        let (version, mut s): (u32, FeatureState) =
            bincode::deserialize(bytes).map_err(|e| format!("not a feature state: {e}"))?;
        if version != crate::STATE_VERSION {
            return Err(format!("feature state version {version}, this core reads {}", crate::STATE_VERSION));
        }
        s.derive();
        for schema in &mut s.schemas {
            schema.reindex();
        }
        Ok(s)
    }
}

fn new_ip(nw: usize) -> Ip {
    Ip {
        w: Windows::new(nw),
        users: Recent::default(),
        payments: Recent::default(),
        logins: None,
        login_users: Recent::default(),
    }
}

/// `out.append(out[-1] / out[-2] if out[-2] else 0.0)`: failed over attempts in the last window.
#[inline]
fn ratio(out: &mut Vec<f64>) {
    let n = out.len();
    let (a, f) = (out[n - 2], out[n - 1]);
    out.push(if a != 0.0 { f / a } else { 0.0 });
}

/// `_known`: per attribute, the user's distinct values since `day_cut`, whether the event's is new, whether
/// fresh; then (if `learn`) remember them.
#[allow(clippy::too_many_arguments)]
#[inline]
fn known(
    u: &mut User,
    values: &[Option<&str>],
    t: f64,
    mut first: bool,
    learn: bool,
    day_cut: f64,
    known_cut: f64,
    fresh_cut: f64,
    cap: usize,
    out: &mut Vec<f64>,
) {
    if u.known.iter().all(Recent::is_empty) {
        if values.iter().all(Option::is_none) {
            // nothing remembered, nothing to remember (a card-only stream)
            out.extend(std::iter::repeat_n(0.0, 3 * values.len()));
            return;
        }
        first = true; // nothing remembered yet (only failed attempts so far): as for a brand-new user
    }
    for (i, v) in values.iter().enumerate() {
        let h = &mut u.known[i];
        let mut new = false;
        if h.is_empty() {
            match v {
                None => out.extend([0.0; 3]),
                Some(v) => {
                    new = !first;
                    out.extend(if new { [0.0, 1.0, 1.0] } else { [0.0; 3] });
                    if learn {
                        h.learn(v, false, t, cap);
                    }
                }
            }
        } else {
            let n = h.count_since(day_cut);
            match v {
                None => out.extend([n, 0.0, 0.0]),
                Some(v) => {
                    let lt = h.get(v);
                    new = !first && lt.is_none_or(|lt| lt < known_cut);
                    if new {
                        out.extend([n, 1.0, 1.0]);
                    } else {
                        // fresh: the attribute's last new value, known since fresh_cut
                        let recent =
                            u.fresh.as_ref().is_some_and(|f| f[i].0.as_deref() == Some(*v) && f[i].1 >= fresh_cut);
                        out.extend([n, 0.0, flag(recent)]);
                    }
                    if learn {
                        h.learn(v, lt.is_some(), t, cap);
                    }
                }
            }
        }
        if new && learn {
            let f = u.fresh.get_or_insert_with(Box::default);
            f[i] = (v.map(Key::from), t);
        }
    }
}

/// Great-circle distance in km, with the Python reference's operations (`x ** 2` is libm's `pow`, as CPython's).
fn haversine_km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    const DEG: f64 = std::f64::consts::PI / 180.0; // math.radians
    let two = std::hint::black_box(2.0f64); // keep pow(x, 2.0) a libm call, as in CPython
    let p1 = lat1 * DEG;
    let p2 = lat2 * DEG;
    let a = ((p2 - p1) * 0.5).sin().powf(two) + p1.cos() * p2.cos() * (((lon2 - lon1) * DEG) * 0.5).sin().powf(two);
    2.0 * EARTH_KM * py_min(1.0, a.sqrt()).asin()
}

#[cfg(test)]
mod tests;

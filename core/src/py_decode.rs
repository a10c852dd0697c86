//! `stream._core.decode_many` / `decode_one`: the decoder of `decode.rs` for Python, one outcome per record.
//!
//! An outcome is a tuple: `(kind, fields)` for an event, where `kind` is `"order"`, `"login"` or `"label"` and
//! `fields` the keyword arguments of its class in `stream.events` (`ts` as float seconds; `features` a plain
//! dict; absent optional fields left out); `("invalid", field, reason)` for a record Python refuses with
//! `InvalidEvent(field, reason)`; `("fallback",)` for a record to decode with Python's `stream.events.decode`.
//! `stream.core_decode` turns outcomes into events and exceptions.

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};

use crate::decode::{decode, Refused};
use crate::event::{EventRef, Kind};

fn set_opt<'py, T: IntoPyObject<'py> + Copy>(
    d: &Bound<'py, PyDict>,
    key: &Bound<'py, pyo3::types::PyString>,
    v: Option<T>,
) -> PyResult<()> {
    match v {
        Some(v) => d.set_item(key, v),
        None => Ok(()),
    }
}

pub(crate) fn fields<'py>(py: Python<'py>, e: &EventRef<'_>) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item(intern!(py, "event_id"), &*e.event_id)?;
    d.set_item(intern!(py, "ts"), e.ts)?;
    if !e.features.is_empty() {
        let f = PyDict::new(py);
        for (k, v) in &e.features {
            f.set_item(&**k, *v)?;
        }
        d.set_item(intern!(py, "features"), f)?;
    }
    set_opt(&d, intern!(py, "label"), e.label)?;
    set_opt(&d, intern!(py, "scenario"), e.scenario.as_deref())?;
    match e.kind() {
        Kind::Order => {
            d.set_item(intern!(py, "user_id"), &*e.user_id)?;
            d.set_item(intern!(py, "order_id"), &*e.order_id)?;
            d.set_item(intern!(py, "amount"), e.amount)?;
            d.set_item(intern!(py, "currency"), &*e.currency)?;
            d.set_item(intern!(py, "merchant_id"), &*e.merchant_id)?;
            set_opt(&d, intern!(py, "device_id"), e.device_id.as_deref())?;
            set_opt(&d, intern!(py, "ip"), e.ip.as_deref())?;
            set_opt(&d, intern!(py, "payment_id"), e.payment_id.as_deref())?;
            set_opt(&d, intern!(py, "address_id"), e.address_id.as_deref())?;
            set_opt(&d, intern!(py, "account_created_ts"), e.account_created_ts)?;
            set_opt(&d, intern!(py, "items"), e.items)?;
            set_opt(&d, intern!(py, "promo_code"), e.promo_code.as_deref())?;
            set_opt(&d, intern!(py, "country"), e.country.as_deref())?;
        }
        Kind::Login => {
            d.set_item(intern!(py, "user_id"), &*e.user_id)?;
            d.set_item(intern!(py, "success"), e.success)?;
            set_opt(&d, intern!(py, "device_id"), e.device_id.as_deref())?;
            set_opt(&d, intern!(py, "ip"), e.ip.as_deref())?;
            set_opt(&d, intern!(py, "country"), e.country.as_deref())?;
            set_opt(&d, intern!(py, "lat"), e.lat)?;
            set_opt(&d, intern!(py, "lon"), e.lon)?;
            set_opt(&d, intern!(py, "user_agent"), e.user_agent.as_deref())?;
            set_opt(&d, intern!(py, "method"), e.method.as_deref())?;
        }
        Kind::Label => {
            d.set_item(intern!(py, "ref_event_id"), &*e.ref_event_id)?;
            set_opt(&d, intern!(py, "source"), e.source.as_deref())?;
        }
    }
    Ok(d)
}

fn outcome<'py>(py: Python<'py>, raw: &[u8]) -> PyResult<Bound<'py, PyTuple>> {
    match decode(raw) {
        Ok(e) => {
            let kind = match e.kind() {
                Kind::Order => intern!(py, "order"),
                Kind::Login => intern!(py, "login"),
                Kind::Label => intern!(py, "label"),
            };
            PyTuple::new(py, [kind.clone().into_any(), fields(py, &e)?.into_any()])
        }
        Err(Refused::Invalid(i)) => (intern!(py, "invalid"), i.field, i.reason).into_pyobject(py),
        Err(Refused::Fallback) => PyTuple::new(py, [intern!(py, "fallback")]),
    }
}

/// The outcome of decoding each record (bytes) of `records` (a list).
#[pyfunction]
pub fn decode_many<'py>(
    py: Python<'py>,
    records: &Bound<'py, PyList>,
) -> PyResult<Bound<'py, PyList>> {
    let out = PyList::empty(py);
    for item in records.iter() {
        let raw = item.cast::<PyBytes>()?;
        out.append(outcome(py, raw.as_bytes())?)?;
    }
    Ok(out)
}

/// The outcome of decoding one record.
#[pyfunction]
pub fn decode_one<'py>(
    py: Python<'py>,
    raw: &Bound<'py, PyBytes>,
) -> PyResult<Bound<'py, PyTuple>> {
    outcome(py, raw.as_bytes())
}

/// How many of `records` decode to an event, are invalid, fall back: the decoder alone, without building Python
/// objects (what a Rust caller pays; `bench/core_decode_bench.py` times it).
#[pyfunction]
pub fn decode_tally(records: &Bound<'_, PyList>) -> PyResult<(usize, usize, usize)> {
    let mut tally = (0, 0, 0);
    for item in records.iter() {
        match decode(item.cast::<PyBytes>()?.as_bytes()) {
            Ok(_) => tally.0 += 1,
            Err(Refused::Invalid(_)) => tally.1 += 1,
            Err(Refused::Fallback) => tally.2 += 1,
        }
    }
    Ok(tally)
}

/// What a merge needs of each record of `records` (a list of bytes or None), without building Python objects:
/// `(ts, status)`, two arrays: the event time in seconds (`stream.events.decode`'s `ts`, NaN when not decoded) and
/// a code, 0 order, 1 login, 2 label, 3 invalid, 4 left to Python (the compiled decoder's fallback), 5 no value
/// (a tombstone). The Kafka runtime orders records by it and hands the valid ones, still bytes, to
/// `CoreEngine.process_raw`, which decodes them again (about 1 µs a record).
#[pyfunction]
pub fn scan_raw<'py>(
    py: Python<'py>,
    records: &Bound<'py, PyList>,
) -> PyResult<(Bound<'py, numpy::PyArray1<f64>>, Bound<'py, numpy::PyArray1<u8>>)> {
    let n = records.len();
    let mut ts = Vec::with_capacity(n);
    let mut status = Vec::with_capacity(n);
    for item in records.iter() {
        if item.is_none() {
            ts.push(f64::NAN);
            status.push(5u8);
            continue;
        }
        match decode(item.cast::<PyBytes>()?.as_bytes()) {
            Ok(ev) => {
                ts.push(ev.ts);
                status.push(ev.kind() as u8);
            }
            Err(Refused::Invalid(_)) => {
                ts.push(f64::NAN);
                status.push(3);
            }
            Err(Refused::Fallback) => {
                ts.push(f64::NAN);
                status.push(4);
            }
        }
    }
    Ok((numpy::PyArray1::from_vec(py, ts), numpy::PyArray1::from_vec(py, status)))
}

/// :func:`scan_raw` plus what a replay's quality report reads of each record: `(ts, status, label, scenario,
/// scenarios, cards, fraud_ids)`, where `label` is the inline label (-1 when absent or not decoded), `scenario` an
/// index into `scenarios` (the distinct scenario names of this batch, in order of first appearance; -1 when
/// absent), `cards` an order's or login's card key for the evaluation window (its user id, its event id when
/// that is empty; None for other records), `fraud_ids` the event id of a scored record labelled 1 inline
/// (None otherwise), `event_ids` a scored record's event id and `users` its user id (None for other records, and
/// for an empty user id): what `replay --scores-out` writes of it.
#[pyfunction]
pub fn scan_meta<'py>(
    py: Python<'py>,
    records: &Bound<'py, PyList>,
) -> PyResult<Bound<'py, PyTuple>> {
    let n = records.len();
    let mut ts = Vec::with_capacity(n);
    let mut status = Vec::with_capacity(n);
    let mut label: Vec<i8> = Vec::with_capacity(n);
    let mut scen: Vec<i32> = Vec::with_capacity(n);
    let mut names: Vec<String> = Vec::new();
    let mut cards: Vec<Option<String>> = Vec::with_capacity(n);
    let mut fraud_ids: Vec<Option<String>> = Vec::with_capacity(n);
    let mut event_ids: Vec<Option<String>> = Vec::with_capacity(n);
    let mut users: Vec<Option<String>> = Vec::with_capacity(n);
    for item in records.iter() {
        if item.is_none() {
            ts.push(f64::NAN);
            status.push(5u8);
            label.push(-1);
            scen.push(-1);
            cards.push(None);
            fraud_ids.push(None);
            event_ids.push(None);
            users.push(None);
            continue;
        }
        match decode(item.cast::<PyBytes>()?.as_bytes()) {
            Ok(ev) => {
                let scored = ev.kind() != Kind::Label;
                cards.push(scored.then(|| ev.card_key()));
                fraud_ids.push((scored && ev.label == Some(1)).then(|| ev.event_id.to_string()));
                event_ids.push(scored.then(|| ev.event_id.to_string()));
                users.push((scored && !ev.user_id.is_empty()).then(|| ev.user_id.to_string()));
                ts.push(ev.ts);
                status.push(ev.kind() as u8);
                label.push(ev.label.map_or(-1, |l| l as i8));
                scen.push(match ev.scenario.as_deref() {
                    None => -1,
                    Some(s) => match names.iter().position(|x| x == s) {
                        Some(i) => i as i32,
                        None => {
                            names.push(s.to_string());
                            (names.len() - 1) as i32
                        }
                    },
                });
            }
            Err(r) => {
                ts.push(f64::NAN);
                status.push(if matches!(r, Refused::Invalid(_)) { 3 } else { 4 });
                label.push(-1);
                scen.push(-1);
                cards.push(None);
                fraud_ids.push(None);
                event_ids.push(None);
                users.push(None);
            }
        }
    }
    (
        numpy::PyArray1::from_vec(py, ts),
        numpy::PyArray1::from_vec(py, status),
        numpy::PyArray1::from_vec(py, label),
        numpy::PyArray1::from_vec(py, scen),
        names,
        cards,
        fraud_ids,
        event_ids,
        users,
    )
        .into_pyobject(py)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(scan_raw, m)?)?;
    m.add_function(wrap_pyfunction!(scan_meta, m)?)?;
    m.add_function(wrap_pyfunction!(decode_many, m)?)?;
    m.add_function(wrap_pyfunction!(decode_one, m)?)?;
    m.add_function(wrap_pyfunction!(decode_tally, m)?)?;
    Ok(())
}

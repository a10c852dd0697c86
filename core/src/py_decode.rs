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

fn fields<'py>(py: Python<'py>, e: &EventRef<'_>) -> PyResult<Bound<'py, PyDict>> {
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

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(decode_many, m)?)?;
    m.add_function(wrap_pyfunction!(decode_one, m)?)?;
    m.add_function(wrap_pyfunction!(decode_tally, m)?)?;
    Ok(())
}

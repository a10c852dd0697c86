//! `stream._core.FeatureCore`: the Python face of [`crate::features::FeatureState`], for the differential tests
//! against `stream.features.FeatureExtractor` and for benchmarks. The compiled engine calls the Rust API directly.
//!
//! Events are read from `stream.events.Order` / `Login` objects by attribute (any other object, a `Label`
//! included, gives `{}` and changes nothing, as in Python: the check is `type(e) is Order`, not `isinstance`).

use std::borrow::Cow;
use std::time::Instant;

use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray1};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple, PyType};
use pyo3::{intern, IntoPyObjectExt};

use crate::event::{EventRef, Kind, Row};
use crate::features::{FeatureState, Params, TABLES};

/// Per-entity event-time sliding-window features of orders and logins: ``FeatureExtractor`` compiled.
///
/// Takes ``FeatureExtractor``'s parameters (validated by it, so the errors are the same) and gives the same
/// dicts, key order included. ``snapshot()`` / ``restore(bytes)`` checkpoint the state; ``transform_columns``
/// returns numpy matrices instead of dicts.
#[pyclass(module = "stream._core", name = "FeatureCore")]
pub struct FeatureCore {
    state: FeatureState,
    row: Row,
    order_cls: Py<PyType>,
    login_cls: Py<PyType>,
    /// Python strings of each schema's names, grown with it.
    names: [Vec<Py<PyString>>; 2],
    /// Seconds the Rust kernel spent in the last `transform_columns` (events already read from Python).
    #[pyo3(get)]
    last_kernel_seconds: f64,
}

fn classes(py: Python<'_>) -> PyResult<(Py<PyType>, Py<PyType>)> {
    let m = py.import("stream.events")?;
    Ok((m.getattr("Order")?.cast_into::<PyType>()?.unbind(), m.getattr("Login")?.cast_into::<PyType>()?.unbind()))
}

pub(crate) fn opt_str(e: &Bound<'_, PyAny>, name: &Bound<'_, PyString>) -> PyResult<Option<Cow<'static, str>>> {
    let v = e.getattr(name)?;
    if v.is_none() {
        return Ok(None);
    }
    Ok(Some(Cow::Owned(v.cast::<PyString>()?.to_str()?.to_owned())))
}

pub(crate) fn req_str(e: &Bound<'_, PyAny>, name: &Bound<'_, PyString>) -> PyResult<Cow<'static, str>> {
    Ok(Cow::Owned(e.getattr(name)?.cast::<PyString>()?.to_str()?.to_owned()))
}

impl FeatureCore {
    /// The event as the core sees it, or `None` for anything that is not exactly an `Order` or a `Login`.
    fn read(&self, py: Python<'_>, e: &Bound<'_, PyAny>) -> PyResult<Option<EventRef<'static>>> {
        let t = e.get_type();
        let kind = if t.is(self.order_cls.bind(py)) {
            Kind::Order
        } else if t.is(self.login_cls.bind(py)) {
            Kind::Login
        } else {
            return Ok(None);
        };
        let mut ev = EventRef {
            kind: Some(kind),
            ts: e.getattr(intern!(py, "ts"))?.extract()?,
            user_id: req_str(e, intern!(py, "user_id"))?,
            device_id: opt_str(e, intern!(py, "device_id"))?,
            ip: opt_str(e, intern!(py, "ip"))?,
            country: opt_str(e, intern!(py, "country"))?,
            ..Default::default()
        };
        if self.state.params().passthrough {
            let feats = e.getattr(intern!(py, "features"))?;
            if feats.is_truthy()? {
                for item in feats.call_method0(intern!(py, "items"))?.try_iter()? {
                    let (k, v): (String, f64) = item?.extract()?;
                    ev.features.push((Cow::Owned(k), v));
                }
            }
        }
        if kind == Kind::Order {
            ev.amount = e.getattr(intern!(py, "amount"))?.extract()?;
            ev.merchant_id = req_str(e, intern!(py, "merchant_id"))?;
            ev.payment_id = opt_str(e, intern!(py, "payment_id"))?;
            ev.address_id = opt_str(e, intern!(py, "address_id"))?;
            ev.promo_code = opt_str(e, intern!(py, "promo_code"))?;
            ev.items = e.getattr(intern!(py, "items"))?.extract()?;
            ev.account_created_ts = e.getattr(intern!(py, "account_created_ts"))?.extract()?;
        } else {
            ev.success = e.getattr(intern!(py, "success"))?.is_truthy()?;
            ev.lat = e.getattr(intern!(py, "lat"))?.extract()?;
            ev.lon = e.getattr(intern!(py, "lon"))?.extract()?;
        }
        Ok(Some(ev))
    }

    fn sync_names(&mut self, py: Python<'_>, kind: Kind) {
        let k = kind as usize;
        let names = &self.state.schema(kind).names;
        for n in &names[self.names[k].len()..] {
            self.names[k].push(PyString::new(py, n).unbind());
        }
    }

    /// The dict of the row just computed: engine columns present, then the pass-throughs in the event's order.
    fn dict<'py>(&mut self, py: Python<'py>, kind: Kind) -> PyResult<Bound<'py, PyDict>> {
        self.sync_names(py, kind);
        let names = &self.names[kind as usize];
        let d = PyDict::new(py);
        for (i, v) in self.row[..self.state.engine_len(kind)].iter().enumerate() {
            if !v.is_nan() {
                d.set_item(names[i].bind(py), *v)?;
            }
        }
        for &c in self.state.pass_columns() {
            d.set_item(names[c].bind(py), self.row[c])?;
        }
        Ok(d)
    }

    fn wrap(py: Python<'_>, state: FeatureState) -> PyResult<Self> {
        let (order_cls, login_cls) = classes(py)?;
        Ok(FeatureCore {
            state,
            row: Row::new(),
            order_cls,
            login_cls,
            names: Default::default(),
            last_kernel_seconds: 0.0,
        })
    }
}

#[pymethods]
impl FeatureCore {
    #[new]
    #[pyo3(signature = (*args, **kwargs))]
    fn new(py: Python<'_>, args: &Bound<'_, PyTuple>, kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        // FeatureExtractor validates (same checks, same messages) and normalises the parameters
        let fx = py.import("stream.features")?.getattr("FeatureExtractor")?.call(args, kwargs)?;
        let params = Params {
            windows: fx.getattr("windows")?.extract()?,
            idle_ttl: fx.getattr("idle_ttl")?.extract()?,
            max_distinct: fx.getattr("max_distinct")?.extract()?,
            max_known: fx.getattr("max_known")?.extract()?,
            expire_every: fx.getattr("expire_every")?.extract()?,
            passthrough: fx.getattr("passthrough")?.extract()?,
            max_entities: fx.getattr("max_entities")?.extract()?,
        };
        let state = FeatureState::new(params).map_err(PyValueError::new_err)?;
        let s = Self::wrap(py, state)?;
        let ours: Vec<String> = fx.call_method0("feature_names")?.extract()?;
        if ours != s.state.feature_names() {
            return Err(PyValueError::new_err("FeatureCore and FeatureExtractor name the features differently"));
        }
        Ok(s)
    }

    /// Features of ``event`` from the state before it; then fold it in (``{}`` for a label).
    fn transform_one<'py>(&mut self, py: Python<'py>, event: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyDict>> {
        match self.read(py, event)? {
            None => Ok(PyDict::new(py)),
            Some(ev) => {
                let kind = self.state.transform(&ev, &mut self.row).expect("an order or a login");
                self.dict(py, kind)
            }
        }
    }

    /// ``[self.transform_one(e) for e in events]``.
    fn transform_many<'py>(&mut self, py: Python<'py>, events: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyList>> {
        let out = PyList::empty(py);
        for e in events.try_iter()? {
            out.append(self.transform_one(py, &e?)?)?;
        }
        Ok(out)
    }

    /// The features of ``events`` as matrices, without building dicts: ``(order_names, order_matrix,
    /// login_names, login_matrix, order_index, login_index)``. A matrix has a row per order (login) and a column
    /// per name (``NaN``: no such key in that event's dict); ``*_index`` are the rows' positions in ``events``.
    /// The kernel's own time (events already read) is left in ``last_kernel_seconds``.
    #[allow(clippy::type_complexity)]
    fn transform_columns<'py>(&mut self, py: Python<'py>, events: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyTuple>> {
        let mut evs: Vec<(usize, EventRef<'static>)> = Vec::new();
        let mut labels = 0usize;
        for (i, e) in events.try_iter()?.enumerate() {
            match self.read(py, &e?)? {
                Some(ev) => evs.push((i, ev)),
                None => labels += 1,
            }
        }
        let _ = labels;
        let mut flat: [Vec<f64>; 2] = Default::default();
        let mut spans: [Vec<(usize, usize)>; 2] = Default::default();
        let mut index: [Vec<i64>; 2] = Default::default();
        let start = Instant::now();
        for (i, ev) in &evs {
            let kind = self.state.transform(ev, &mut self.row).expect("an order or a login") as usize;
            spans[kind].push((flat[kind].len(), self.row.len()));
            flat[kind].extend_from_slice(&self.row);
            index[kind].push(*i as i64);
        }
        self.last_kernel_seconds = start.elapsed().as_secs_f64();
        let mut items: Vec<Bound<'py, PyAny>> = Vec::new();
        for kind in [Kind::Order, Kind::Login] {
            let k = kind as usize;
            let names = &self.state.schema(kind).names;
            let width = names.len();
            let mut m = vec![f64::NAN; spans[k].len() * width];
            for (r, &(off, len)) in spans[k].iter().enumerate() {
                m[r * width..r * width + len].copy_from_slice(&flat[k][off..off + len]);
            }
            let m = Array2::from_shape_vec((spans[k].len(), width), m).expect("shape").into_pyarray(py);
            items.push(names.clone().into_bound_py_any(py)?);
            items.push(m.into_any());
        }
        let (oi, li) = (std::mem::take(&mut index[0]), std::mem::take(&mut index[1]));
        items.insert(2, PyArray1::from_vec(py, oi).into_any());
        items.push(PyArray1::from_vec(py, li).into_any());
        // (order_names, order_matrix, order_index, login_names, login_matrix, login_index) -> documented order
        let [on, om, oi, ln, lm, li]: [Bound<'py, PyAny>; 6] = items.try_into().expect("six items");
        PyTuple::new(py, [on, om, ln, lm, oi, li])
    }

    /// The state as bytes (bincode, with the core's state version); ``restore`` continues exactly from it.
    fn snapshot<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.state.to_bytes())
    }

    /// Replace the state with one from ``snapshot()`` (of an extractor with any parameters: they are in it).
    fn restore(&mut self, py: Python<'_>, data: &[u8]) -> PyResult<()> {
        self.state = FeatureState::from_bytes(data).map_err(PyValueError::new_err)?;
        self.names = Default::default();
        self.sync_names(py, Kind::Order);
        self.sync_names(py, Kind::Login);
        Ok(())
    }

    #[staticmethod]
    fn from_snapshot(py: Python<'_>, data: &[u8]) -> PyResult<Self> {
        Self::wrap(py, FeatureState::from_bytes(data).map_err(PyValueError::new_err)?)
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyTuple>> {
        let py = slf.py();
        let ctor = slf.get_type().getattr("from_snapshot")?;
        let data = slf.borrow().snapshot(py);
        PyTuple::new(py, [ctor, PyTuple::new(py, [data])?.into_any()])
    }

    /// Every name the engine emits: an order's, then the login-only ones (pass-throughs excluded).
    fn feature_names(&self) -> Vec<String> {
        self.state.feature_names()
    }

    /// The columns of ``kind`` (``"order"`` or ``"login"``) so far: engine names, then pass-throughs as they came.
    fn schema_names(&self, kind: &str) -> PyResult<Vec<String>> {
        let k = match kind {
            "order" => Kind::Order,
            "login" => Kind::Login,
            _ => return Err(PyValueError::new_err(format!("kind must be order or login, not {kind:?}"))),
        };
        Ok(self.state.schema(k).names.clone())
    }

    /// Memory in use: ``entities_<kind>`` and ``bytes_<kind>`` per table (an estimate of the allocator's bytes:
    /// records, their heap, keys, index), and the totals ``entities`` and ``approx_bytes``.
    fn stats(&self) -> Vec<(String, f64)> {
        let mut out = Vec::new();
        let (mut n, mut b) = (0usize, 0usize);
        for (kind, count, bytes) in self.state.memory() {
            out.push((format!("entities_{kind}"), count as f64));
            out.push((format!("bytes_{kind}"), bytes as f64));
            n += count;
            b += bytes;
        }
        debug_assert_eq!(out.len(), 2 * TABLES.len());
        out.push(("entities".into(), n as f64));
        out.push(("approx_bytes".into(), b as f64));
        out
    }

    #[getter]
    fn windows(&self) -> Vec<f64> {
        self.state.params().windows.clone()
    }

    #[getter]
    fn idle_ttl(&self) -> f64 {
        self.state.params().idle_ttl
    }

    #[getter]
    fn max_distinct(&self) -> usize {
        self.state.params().max_distinct
    }

    #[getter]
    fn max_known(&self) -> usize {
        self.state.params().max_known
    }

    #[getter]
    fn expire_every(&self) -> u64 {
        self.state.params().expire_every
    }

    #[getter]
    fn passthrough(&self) -> bool {
        self.state.params().passthrough
    }

    #[getter]
    fn max_entities(&self) -> usize {
        self.state.params().max_entities
    }

    fn __repr__(&self) -> String {
        let p = self.state.params();
        format!(
            "FeatureCore(windows={:?}, idle_ttl={:?}, max_distinct={}, max_known={}, expire_every={}, passthrough={}, \
             max_entities={})",
            p.windows,
            p.idle_ttl,
            p.max_distinct,
            p.max_known,
            p.expire_every,
            if p.passthrough { "True" } else { "False" },
            p.max_entities
        )
    }
}

//! Thin Python wrappers of [`crate::links`] and [`crate::labels`], with the methods of the Python classes
//! (`stream.links.LinkGraph`, `EntityRisk`, `stream.labels.LabelStore`) so that a differential test drives both
//! with the same calls, and batch methods for benchmarks.
//!
//! Entities are dicts `{kind: id}` over the engine's six kinds (`stream.pipeline.entity_ids`); a batch takes
//! them as six columns (lists in `ENTITY_KINDS` order, `None` where absent).

// `!(x > 0.0)` is Python's test, NaN included: kept as written.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

use std::time::Instant;

use numpy::{PyArray1, PyArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

use crate::event::{Kind, Schema};
use crate::labels::LabelStore;
use crate::links::{EntityIds, EntityRisk, LinkGraph, DAY, ENTITY_KINDS, LINK_KINDS, RISK_KINDS};

fn value_error(e: String) -> PyErr {
    PyValueError::new_err(e)
}

/// Python's `isinstance(v, bool) or not isinstance(v, int) or v < 1` check of a count parameter.
fn count_param(name: &str, v: &Bound<'_, PyAny>) -> PyResult<i64> {
    if v.is_instance_of::<PyBool>() || !v.is_instance_of::<PyInt>() {
        return Err(value_error(format!("{name} must be an integer >= 1, got {}", v.repr()?)));
    }
    let n = v.extract::<i64>().unwrap_or(i64::MAX);
    if n < 1 {
        return Err(value_error(format!("{name} must be an integer >= 1, got {n}")));
    }
    Ok(n)
}

/// Python's `int(v)`.
fn py_int(v: &Bound<'_, PyAny>) -> PyResult<i64> {
    v.py().import("builtins")?.getattr("int")?.call1((v,))?.extract()
}

fn strings(v: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
    v.try_iter()?.map(|k| k?.extract::<String>()).collect()
}

/// The entity ids of one event, holding the Python strings the [`EntityIds`] view borrows.
struct Ids<'py> {
    objs: [Option<Bound<'py, PyString>>; 6],
}

impl<'py> Ids<'py> {
    fn from_mapping(d: &Bound<'py, PyAny>) -> PyResult<Self> {
        let mut objs: [Option<Bound<'py, PyString>>; 6] = Default::default();
        let put = |objs: &mut [Option<Bound<'py, PyString>>; 6], k: Bound<'py, PyAny>, v: Bound<'py, PyAny>| {
            if v.is_none() {
                return Ok(());
            }
            if let Some(i) = crate::links::kind_index(k.cast::<PyString>()?.to_str()?) {
                objs[i] = Some(v.cast_into::<PyString>().map_err(|_| PyTypeError::new_err("entity ids must be str"))?);
            }
            Ok::<(), PyErr>(())
        };
        if let Ok(dict) = d.cast::<PyDict>() {
            for (k, v) in dict.iter() {
                put(&mut objs, k, v)?;
            }
        } else if !d.is_none() {
            for item in d.call_method0("items")?.try_iter()? {
                let (k, v): (Bound<'py, PyAny>, Bound<'py, PyAny>) = item?.extract()?;
                put(&mut objs, k, v)?;
            }
        }
        Ok(Ids { objs })
    }

    /// Event `i` of six entity columns.
    fn from_columns(cols: &[Bound<'py, PyList>], i: usize) -> PyResult<Self> {
        let mut objs: [Option<Bound<'py, PyString>>; 6] = Default::default();
        for (k, col) in cols.iter().enumerate() {
            let v = col.get_item(i)?;
            if !v.is_none() {
                objs[k] = Some(v.cast_into::<PyString>().map_err(|_| PyTypeError::new_err("entity ids must be str"))?);
            }
        }
        Ok(Ids { objs })
    }

    fn view(&self) -> PyResult<EntityIds<'_>> {
        let mut out = EntityIds::default();
        for (i, o) in self.objs.iter().enumerate() {
            if let Some(s) = o {
                out.ids[i] = Some(s.to_str()?);
            }
        }
        Ok(out)
    }
}

fn columns<'py>(cols: &Bound<'py, PyAny>, n: usize) -> PyResult<Vec<Bound<'py, PyList>>> {
    let cols: Vec<Bound<'py, PyList>> = cols.extract()?;
    if cols.len() != 6 || cols.iter().any(|c| c.len() != n) {
        return Err(value_error(format!("need 6 entity columns ({}) of {n} values", ENTITY_KINDS.join(", "))));
    }
    Ok(cols)
}

fn pairs_dict<'py, 'a>(py: Python<'py>, pairs: impl Iterator<Item = (&'a str, f64)>) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (k, v) in pairs {
        d.set_item(k, v)?;
    }
    Ok(d)
}

fn matrix<'py>(py: Python<'py>, v: Vec<f64>, n: usize, k: usize) -> PyResult<Bound<'py, PyAny>> {
    Ok(PyArray1::from_vec(py, v).reshape([n, k])?.into_any())
}

// ---------------------------------------------------------------------------------------------------------------

/// `stream.links.LinkGraph` in Rust.
#[pyclass(module = "stream._core")]
pub struct LinkGraphCore {
    inner: LinkGraph,
    /// nanoseconds spent inside the core by the batch methods (without the Python conversions)
    #[pyo3(get)]
    core_ns: u64,
}

#[pymethods]
impl LinkGraphCore {
    #[new]
    #[pyo3(signature = (window=7.0 * DAY, kinds=None, max_users=None, max_values=None, max_group=None,
                        expire_every=None, flagged=true, max_entries=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        window: f64,
        kinds: Option<&Bound<'_, PyAny>>,
        max_users: Option<&Bound<'_, PyAny>>,
        max_values: Option<&Bound<'_, PyAny>>,
        max_group: Option<&Bound<'_, PyAny>>,
        expire_every: Option<&Bound<'_, PyAny>>,
        flagged: bool,
        max_entries: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let kinds = match kinds {
            Some(k) => strings(k)?,
            None => LINK_KINDS.iter().map(|k| k.to_string()).collect(),
        };
        let kinds: Vec<&str> = kinds.iter().map(String::as_str).collect();
        let count = |name: &str, v: Option<&Bound<'_, PyAny>>, default: i64| match v {
            Some(v) => count_param(name, v),
            None => Ok(default),
        };
        if !(window > 0.0) {
            return Err(value_error(format!("window must be > 0 seconds, got {window:?}")));
        }
        let inner = LinkGraph::new(
            window,
            &kinds,
            count("max_users", max_users, 32)?,
            count("max_values", max_values, 16)?,
            count("max_group", max_group, 256)?,
            match expire_every {
                Some(v) => py_int(v)?,
                None => 100_000,
            },
            flagged,
            count("max_entries", max_entries, 1_000_000)?,
        )
        .map_err(value_error)?;
        let _ = py;
        Ok(LinkGraphCore { inner, core_ns: 0 })
    }

    /// Link features of `user`'s event at `ts` carrying `entities` (before it is observed).
    fn features<'py>(&mut self, py: Python<'py>, user: &str, entities: &Bound<'py, PyAny>, ts: f64) -> PyResult<Bound<'py, PyDict>> {
        let ids = Ids::from_mapping(entities)?;
        let f = self.inner.features(user, &ids.view()?, ts);
        pairs_dict(py, f.pairs())
    }

    /// Record that `user` used these values at `ts`.
    fn observe(&mut self, user: &str, entities: &Bound<'_, PyAny>, ts: f64) -> PyResult<()> {
        let ids = Ids::from_mapping(entities)?;
        self.inner.observe(user, &ids.view()?, ts);
        Ok(())
    }

    /// `features`, then `observe` (the engine's per-event call for orders and successful logins).
    fn features_then_observe<'py>(&mut self, py: Python<'py>, user: &str, entities: &Bound<'py, PyAny>, ts: f64) -> PyResult<Bound<'py, PyDict>> {
        let ids = Ids::from_mapping(entities)?;
        let f = self.inner.features_then_observe(user, &ids.view()?, ts);
        pairs_dict(py, f.pairs())
    }

    fn confirm(&mut self, user: &str, ts: f64) {
        self.inner.confirm(user, ts);
    }

    fn flag(&mut self, user: &str, ts: f64) {
        self.inner.flag(user, ts);
    }

    /// Users and values held.
    fn size(&self) -> usize {
        self.inner.size()
    }

    /// `(len(_by_user), len(_by_value))`.
    fn table_sizes(&self) -> (usize, usize) {
        self.inner.table_sizes()
    }

    /// Slots allocated `(users, values)`, what memory is proportional to.
    fn slots(&self) -> (usize, usize) {
        self.inner.slots()
    }

    /// Slots alive `(users, values)`: every user and value referred to anywhere in the graph.
    fn live(&self) -> (usize, usize) {
        self.inner.live()
    }

    /// Heap bytes held (capacities and strings; without the allocator's overhead).
    fn heap_bytes(&self) -> usize {
        self.inner.heap_bytes()
    }

    /// Run the expiry pass now.
    fn expire(&mut self) {
        self.inner.expire();
    }

    #[getter]
    fn kinds(&self) -> Vec<String> {
        self.inner.kinds().to_vec()
    }

    #[getter]
    fn flagged(&self) -> bool {
        self.inner.flagged()
    }

    fn feature_names(&self) -> Vec<&'static str> {
        self.inner.feature_names().to_vec()
    }

    /// Features of many events at once: `users` (n str), `entities` (six columns of n `str | None` in
    /// `ENTITY_KINDS` order), `ts` (n float) and `observe` (n bool: `features_then_observe` when true, else
    /// `features`). Returns an (n, 3 or 4) float array in `feature_names()` order.
    fn features_many<'py>(
        &mut self,
        py: Python<'py>,
        users: &Bound<'py, PyList>,
        entities: &Bound<'py, PyAny>,
        ts: Vec<f64>,
        observe: Vec<bool>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let n = users.len();
        if ts.len() != n || observe.len() != n {
            return Err(value_error("users, ts and observe must have the same length".into()));
        }
        let cols = columns(entities, n)?;
        let k = self.inner.feature_names().len();
        let mut out = vec![0.0; n * k];
        let mut ns = 0u64;
        for i in 0..n {
            let u = users.get_item(i)?;
            let u = u.cast::<PyString>()?.to_str()?;
            let ids = Ids::from_columns(&cols, i)?;
            let view = ids.view()?;
            let t0 = Instant::now();
            let f = if observe[i] {
                self.inner.features_then_observe(u, &view, ts[i])
            } else {
                self.inner.features(u, &view, ts[i])
            };
            ns += t0.elapsed().as_nanos() as u64;
            for (j, (_, v)) in f.pairs().enumerate() {
                out[i * k + j] = v;
            }
        }
        self.core_ns += ns;
        matrix(py, out, n, k)
    }

    fn snapshot<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.snapshot())
    }

    #[staticmethod]
    fn restore(state: &[u8]) -> PyResult<Self> {
        Ok(LinkGraphCore { inner: LinkGraph::restore(state).map_err(value_error)?, core_ns: 0 })
    }
}

// ---------------------------------------------------------------------------------------------------------------

/// `stream.links.EntityRisk` in Rust.
#[pyclass(module = "stream._core")]
pub struct EntityRiskCore {
    inner: EntityRisk,
    #[pyo3(get)]
    core_ns: u64,
}

#[pymethods]
impl EntityRiskCore {
    #[new]
    #[pyo3(signature = (kinds=None, windows=None, bucket=DAY, expire_every=None, prior_strength=None))]
    fn new(
        kinds: Option<&Bound<'_, PyAny>>,
        windows: Option<Vec<f64>>,
        bucket: f64,
        expire_every: Option<&Bound<'_, PyAny>>,
        prior_strength: Option<f64>,
    ) -> PyResult<Self> {
        let kinds = match kinds {
            Some(k) => strings(k)?,
            None => RISK_KINDS.iter().map(|k| k.to_string()).collect(),
        };
        let kinds: Vec<&str> = kinds.iter().map(String::as_str).collect();
        let windows = windows.unwrap_or_else(|| vec![DAY, 7.0 * DAY, 30.0 * DAY]);
        let expire_every = match expire_every {
            Some(v) => py_int(v)?,
            None => 100_000,
        };
        let inner = EntityRisk::new(&kinds, &windows, bucket, expire_every, prior_strength).map_err(value_error)?;
        Ok(EntityRiskCore { inner, core_ns: 0 })
    }

    /// Count a label that arrived at `arrived` for the entities of its event.
    fn learn(&mut self, entities: &Bound<'_, PyAny>, y: i64, arrived: f64) -> PyResult<()> {
        let ids = Ids::from_mapping(entities)?;
        self.inner.learn(&ids.view()?, y, arrived);
        Ok(())
    }

    /// The risk features of an event at `ts` with these entities.
    fn features<'py>(&self, py: Python<'py>, entities: &Bound<'py, PyAny>, ts: f64) -> PyResult<Bound<'py, PyDict>> {
        let ids = Ids::from_mapping(entities)?;
        let f = self.inner.features(&ids.view()?, ts);
        pairs_dict(py, f.into_iter())
    }

    /// Features of many events: six entity columns of n and n times; an (n, len(feature_names())) array.
    fn features_many<'py>(&mut self, py: Python<'py>, entities: &Bound<'py, PyAny>, ts: Vec<f64>) -> PyResult<Bound<'py, PyAny>> {
        let n = ts.len();
        let cols = columns(entities, n)?;
        let k = self.inner.feature_names().len();
        let mut out = vec![0.0; n * k];
        let mut ns = 0u64;
        for i in 0..n {
            let ids = Ids::from_columns(&cols, i)?;
            let view = ids.view()?;
            let t0 = Instant::now();
            self.inner.features_into(&view, ts[i], &mut out[i * k..(i + 1) * k]);
            ns += t0.elapsed().as_nanos() as u64;
        }
        self.core_ns += ns;
        matrix(py, out, n, k)
    }

    fn feature_names(&self) -> Vec<String> {
        self.inner.feature_names().to_vec()
    }

    #[getter]
    fn kinds(&self) -> Vec<String> {
        self.inner.kinds().to_vec()
    }

    #[getter]
    fn windows(&self) -> Vec<f64> {
        self.inner.windows().to_vec()
    }

    /// Entities held.
    fn size(&self) -> usize {
        self.inner.size()
    }

    fn snapshot<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.snapshot())
    }

    #[staticmethod]
    fn restore(state: &[u8]) -> PyResult<Self> {
        Ok(EntityRiskCore { inner: EntityRisk::restore(state).map_err(value_error)?, core_ns: 0 })
    }
}

// ---------------------------------------------------------------------------------------------------------------

fn kind_of(name: &str) -> PyResult<Kind> {
    match name {
        "order" => Ok(Kind::Order),
        "login" => Ok(Kind::Login),
        _ => Err(value_error(format!("kind must be 'order' or 'login', got {name:?}"))),
    }
}

/// `stream.labels.LabelStore` in Rust. Vectors (`x` dicts) are kept as rows over a schema of the wrapper's own
/// (the engine will keep rows over its per-kind schemas); an empty dict keeps no row.
#[pyclass(module = "stream._core")]
pub struct LabelStoreCore {
    inner: LabelStore,
    schema: Schema,
    #[pyo3(get)]
    core_ns: u64,
}

#[pymethods]
impl LabelStoreCore {
    #[new]
    #[pyo3(signature = (max_size=None, ttl=None))]
    fn new(max_size: Option<&Bound<'_, PyAny>>, ttl: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let max_size = match max_size {
            Some(v) => count_param("max_size", v)?,
            None => 2_000_000,
        };
        let ttl = match ttl {
            Some(v) => {
                if !(v.is_instance_of::<PyInt>() || v.is_instance_of::<PyFloat>()) {
                    return Err(value_error(format!("ttl must be > 0 seconds, got {}", v.repr()?)));
                }
                v.extract::<f64>()?
            }
            None => 45.0 * DAY,
        };
        Ok(LabelStoreCore { inner: LabelStore::new(max_size, ttl).map_err(value_error)?, schema: Schema::default(), core_ns: 0 })
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    /// Keep `x` (the vector event `event_id` was scored with) and its entity ids for its label.
    #[pyo3(signature = (event_id, ts, x, *, kind="order", entities=None))]
    fn put(&mut self, event_id: &str, ts: f64, x: &Bound<'_, PyDict>, kind: &str, entities: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let kind = kind_of(kind)?;
        let ids = match entities {
            Some(e) => Ids::from_mapping(e)?,
            None => Ids { objs: Default::default() },
        };
        let row = if x.is_empty() {
            None
        } else {
            let mut row = vec![f64::NAN; self.schema.len()];
            for (k, v) in x.iter() {
                let c = self.schema.column(k.cast::<PyString>()?.to_str()?);
                if c >= row.len() {
                    row.resize(c + 1, f64::NAN);
                }
                row[c] = v.extract()?;
            }
            Some(row)
        };
        self.inner.put(event_id, ts, kind, &ids.view()?, row.as_deref());
        Ok(())
    }

    /// Move the watermark and expire what fell out of `ttl`.
    fn advance(&mut self, ts: f64) {
        self.inner.advance(ts);
    }

    /// `(event_id, x, y, kind, ts, entities)` of `event_id` with label `y`, removed; None if unknown/expired.
    fn join<'py>(&mut self, py: Python<'py>, event_id: &str, y: i64) -> PyResult<Option<Bound<'py, PyTuple>>> {
        let Some(j) = self.inner.join(event_id, y) else { return Ok(None) };
        let x = PyDict::new(py);
        if let Some(row) = &j.row {
            for (i, v) in row.iter().enumerate() {
                if !v.is_nan() {
                    x.set_item(&self.schema.names[i], *v)?;
                }
            }
        }
        let ents = PyDict::new(py);
        for (i, k) in ENTITY_KINDS.iter().enumerate() {
            if let Some(v) = j.ids.get(i) {
                ents.set_item(k, v)?;
            }
        }
        Ok(Some(PyTuple::new(py, [
            PyString::new(py, &j.event_id).into_any(),
            x.into_any(),
            j.y.into_pyobject(py)?.into_any(),
            PyString::new(py, j.kind.name()).into_any(),
            PyFloat::new(py, j.ts).into_any(),
            ents.into_any(),
        ])?))
    }

    /// Many graph-only entries at once (no vector): ids, times, kinds and six entity columns.
    fn put_many(&mut self, event_ids: &Bound<'_, PyList>, ts: Vec<f64>, kinds: Vec<String>, entities: &Bound<'_, PyAny>) -> PyResult<()> {
        let n = ts.len();
        if event_ids.len() != n || kinds.len() != n {
            return Err(value_error("event_ids, ts and kinds must have the same length".into()));
        }
        let cols = columns(entities, n)?;
        let mut ns = 0u64;
        for i in 0..n {
            let e = event_ids.get_item(i)?;
            let e = e.cast::<PyString>()?.to_str()?;
            let kind = kind_of(&kinds[i])?;
            let ids = Ids::from_columns(&cols, i)?;
            let view = ids.view()?;
            let t0 = Instant::now();
            self.inner.put(e, ts[i], kind, &view, None);
            ns += t0.elapsed().as_nanos() as u64;
        }
        self.core_ns += ns;
        Ok(())
    }

    /// Heap bytes held (capacities and strings; without the allocator's overhead).
    fn heap_bytes(&self) -> usize {
        self.inner.heap_bytes()
    }

    /// The event ids held, oldest first.
    fn keys(&self) -> Vec<&str> {
        self.inner.keys()
    }

    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let (held, joined, missed, expired) = self.inner.stats();
        let d = PyDict::new(py);
        d.set_item("held", held)?;
        d.set_item("joined", joined)?;
        d.set_item("missed", missed)?;
        d.set_item("expired", expired)?;
        Ok(d)
    }

    #[getter]
    fn watermark(&self) -> f64 {
        self.inner.watermark
    }

    #[getter]
    fn max_size(&self) -> usize {
        self.inner.max_size()
    }

    #[getter]
    fn ttl(&self) -> f64 {
        self.inner.ttl()
    }

    fn snapshot<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let bytes = bincode::serialize(&(&self.schema.names, self.inner.snapshot())).expect("serialises");
        PyBytes::new(py, &bytes)
    }

    #[staticmethod]
    fn restore(state: &[u8]) -> PyResult<Self> {
        let (names, inner): (Vec<String>, Vec<u8>) =
            bincode::deserialize(state).map_err(|e| value_error(format!("label store state does not load: {e}")))?;
        let mut schema = Schema::default();
        for n in &names {
            schema.column(n);
        }
        Ok(LabelStoreCore { inner: LabelStore::restore(&inner).map_err(value_error)?, schema, core_ns: 0 })
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<LinkGraphCore>()?;
    m.add_class::<EntityRiskCore>()?;
    m.add_class::<LabelStoreCore>()?;
    m.add("ENTITY_KINDS", ENTITY_KINDS.to_vec())?;
    Ok(())
}

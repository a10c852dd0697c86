//! `stream._core.CoreEngine`: the Python face of [`crate::engine::Engine`].
//!
//! Built from a `stream.pipeline.Engine`'s settings (Python validates them: the errors stay the reference's),
//! it takes `stream.events` objects (the path of CSV, Parquet and already-decoded inputs) or raw JSON records
//! (the Kafka and JSONL path: no Python object per event on the way in).

use std::borrow::Cow;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple, PyType};
use pyo3::intern;

use crate::csv::{next_line, parse_line};
use crate::decode::{decode, Refused};
use crate::py_csv::PyCsvMapping;
use crate::detectors::ensemble::{Explain, Verdict};
use crate::engine::{Engine, EngineParams, GraphParams, Vector};
use crate::event::{EventRef, Kind};
use crate::features::Params as FeatureParams;
use crate::py_features::{opt_str, req_str};
use numpy::PyArrayMethods;

/// What a detecting batch accumulates (see `CoreEngine.process`). No Python object: `process_raw` fills it with
/// the GIL released.
struct Batch {
    verdict: Verdict,
    nd: usize,
    risk: Vec<f64>,
    q: Vec<f64>,
    alert: Vec<bool>,
    sev: Vec<u8>,
    act: Vec<u8>,
    raw: Vec<f64>,
    p: Vec<f64>,
    /// the input index of each scored event
    at: Vec<usize>,
    /// the alerts of the stretches that ended, explained
    explained: Vec<Explained>,
    /// the alerts of the current stretch, explained when it ends
    held: Vec<(usize, Kind, Vec<f64>, Vec<usize>)>,
}

/// An alert's explain data, taken against the ensembles as they stood at the end of its stretch: its scored
/// index, kind, vector (values and column order), each detector's explanation and the ensemble's weights.
struct Explained {
    at: usize,
    kind: Kind,
    row: Vec<f64>,
    order: Vec<usize>,
    per: Vec<Explain>,
    weights: Vec<f64>,
}

impl Batch {
    fn new(engine: &Engine, cap: usize) -> PyResult<Batch> {
        if !engine.has_detectors() {
            return Err(PyValueError::new_err("detection does not run in the core (set_detection)"));
        }
        let verdict = engine.verdict();
        let nd = verdict.raw.len();
        Ok(Batch {
            verdict,
            nd,
            risk: Vec::with_capacity(cap),
            q: Vec::with_capacity(cap),
            alert: Vec::with_capacity(cap),
            sev: Vec::with_capacity(cap),
            act: Vec::with_capacity(cap),
            raw: Vec::with_capacity(cap * nd),
            p: Vec::with_capacity(cap * nd),
            at: Vec::new(),
            explained: Vec::new(),
            held: Vec::new(),
        })
    }

    /// One event of a detecting batch: a label is joined (ending the stretch where the Python engine cuts its
    /// batch), an order or login vectorized, detected and kept for its label. `at`: its index in the input.
    fn step(&mut self, engine: &mut Engine, vector: &mut Vector, ev: &EventRef<'_>, at: usize) {
        if ev.kind() == Kind::Label {
            if engine.cuts_at_label() {
                engine.end_stretch();
                self.explain_stretch(engine);
            }
            engine.label(ev);
            return;
        }
        engine.vectorize(ev, vector);
        let verdict = &mut self.verdict;
        engine.detect(ev, vector, verdict);
        if verdict.alert {
            self.held.push((self.risk.len(), ev.kind(), vector.row.clone(), vector.order.clone()));
        }
        self.risk.push(verdict.risk);
        self.q.push(verdict.q);
        self.alert.push(verdict.alert);
        self.sev.push(verdict.severity);
        self.act.push(verdict.action);
        self.raw.extend_from_slice(&verdict.raw);
        self.p.extend_from_slice(&verdict.p);
        self.at.push(at);
        engine.scored(ev, vector, verdict.alert);
    }

    /// Explain the alerts of the stretch that just ended, against the ensembles as they stand now.
    fn explain_stretch(&mut self, engine: &mut Engine) {
        for (at, kind, row, order) in self.held.drain(..) {
            let per = engine.explain(kind, &row, 3);
            let weights = engine.weights(kind).map(<[f64]>::to_vec).unwrap_or_default();
            self.explained.push(Explained { at, kind, row, order, per, weights });
        }
    }

    /// End the batch's last stretch (the Python engine's batch ends there too).
    fn seal(&mut self, engine: &mut Engine) {
        engine.end_stretch();
        self.explain_stretch(engine);
    }
}

/// One unit's compiled features, entity risk, link graph and label join, and detection when it runs here.
#[pyclass(module = "stream._core", name = "CoreEngine")]
pub struct CoreEngine {
    engine: Engine,
    classes: [Py<PyType>; 3],
    vector: Vector,
    names: [Vec<Py<PyString>>; 2],
}

fn get<T>(d: &Bound<'_, PyDict>, key: &str) -> PyResult<T>
where
    T: for<'a, 'py> FromPyObject<'a, 'py, Error = PyErr>,
{
    match d.get_item(key)? {
        Some(v) => v.extract::<T>().map_err(|e| PyValueError::new_err(format!("{key}: {e}"))),
        None => Err(PyValueError::new_err(format!("missing engine parameter {key}"))),
    }
}

impl CoreEngine {
    /// A `stream.events` object as the core sees it.
    fn read(&self, py: Python<'_>, e: &Bound<'_, PyAny>) -> PyResult<EventRef<'static>> {
        let t = e.get_type();
        let kind = if t.is(self.classes[0].bind(py)) {
            Kind::Order
        } else if t.is(self.classes[1].bind(py)) {
            Kind::Login
        } else if t.is(self.classes[2].bind(py)) {
            Kind::Label
        } else {
            return Err(PyValueError::new_err(format!("not an event: {}", t.name()?)));
        };
        let mut ev = EventRef {
            kind: Some(kind),
            event_id: req_str(e, intern!(py, "event_id"))?,
            ts: e.getattr(intern!(py, "ts"))?.extract()?,
            label: e.getattr(intern!(py, "label"))?.extract()?,
            // the scenario is not scored, but a replay's report reads it (process_csv's CsvMeta)
            scenario: opt_str(e, intern!(py, "scenario"))?,
            ..Default::default()
        };
        if kind == Kind::Label {
            ev.ref_event_id = req_str(e, intern!(py, "ref_event_id"))?;
            return Ok(ev);
        }
        ev.user_id = req_str(e, intern!(py, "user_id"))?;
        ev.device_id = opt_str(e, intern!(py, "device_id"))?;
        ev.ip = opt_str(e, intern!(py, "ip"))?;
        ev.country = opt_str(e, intern!(py, "country"))?;
        let feats = e.getattr(intern!(py, "features"))?;
        if feats.is_truthy()? {
            for item in feats.call_method0(intern!(py, "items"))?.try_iter()? {
                let (k, v): (String, f64) = item?.extract()?;
                ev.features.push((Cow::Owned(k), v));
            }
        }
        if kind == Kind::Order {
            ev.order_id = req_str(e, intern!(py, "order_id"))?;
            ev.amount = e.getattr(intern!(py, "amount"))?.extract()?;
            ev.currency = req_str(e, intern!(py, "currency"))?;
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
        Ok(ev)
    }

    fn vector_dict<'py>(&mut self, py: Python<'py>, kind: Kind) -> PyResult<Bound<'py, PyDict>> {
        let v = std::mem::take(&mut self.vector);
        let d = self.dict_of(py, kind, &v.row, &v.order);
        self.vector = v;
        d
    }

    /// The Python engine's dict of a vector: `row` values in key order `order`.
    fn dict_of<'py>(&mut self, py: Python<'py>, kind: Kind, row: &[f64], order: &[usize]) -> PyResult<Bound<'py, PyDict>> {
        let k = kind as usize;
        let schema = self.engine.vector_schema(kind);
        for n in &schema.names[self.names[k].len()..] {
            self.names[k].push(PyString::new(py, n).unbind());
        }
        let d = PyDict::new(py);
        for &c in order {
            d.set_item(self.names[k][c].bind(py), row[c])?;
        }
        Ok(d)
    }

    /// The arrays of a sealed batch, and its alerts' explain data as `(scored index, x, [per detector: None |
    /// ("hst", [...]) | ("zscore", [...]) | ("coldstart", [...]) | ("supervised", [...])], weights)`, where the weights are those the
    /// ensemble combined the alert's stretch with (they change only at labels).
    fn finish<'py>(&mut self, py: Python<'py>, acc: Batch, t0: std::time::Instant) -> PyResult<Bound<'py, PyTuple>> {
        debug_assert!(acc.held.is_empty(), "finish() of a batch that was not sealed");
        let alerts = PyList::empty(py);
        for e in &acc.explained {
            let x = self.dict_of(py, e.kind, &e.row, &e.order)?;
            let per = PyList::empty(py);
            for d in &e.per {
                match d {
                    Explain::Hst(top) => per.append(("hst", top))?,
                    Explain::ZScore(top) => per.append(("zscore", top))?,
                    Explain::ColdStart(top) => per.append(("coldstart", top))?,
                    Explain::Rules => per.append(py.None())?,
                    Explain::Supervised(top) => per.append(("supervised", top))?,
                }
            }
            alerts.append((e.at, x, per, &e.weights))?;
        }
        let (n, nd) = (acc.risk.len(), acc.nd);
        // raw and p were filled event-major; hand them over detector-major
        let transpose = |a: Vec<f64>| -> Vec<f64> {
            let mut t = vec![0.0; a.len()];
            for i in 0..n {
                for d in 0..nd {
                    t[d * n + i] = a[i * nd + d];
                }
            }
            t
        };
        let raw = numpy::PyArray1::from_vec(py, transpose(acc.raw)).reshape([nd, n])?;
        let p = numpy::PyArray1::from_vec(py, transpose(acc.p)).reshape([nd, n])?;
        let secs = t0.elapsed().as_secs_f64();
        (
            numpy::PyArray1::from_vec(py, acc.risk),
            numpy::PyArray1::from_vec(py, acc.q),
            numpy::PyArray1::from_vec(py, acc.alert),
            numpy::PyArray1::from_vec(py, acc.sev),
            numpy::PyArray1::from_vec(py, acc.act),
            raw,
            p,
            alerts,
            secs,
        )
            .into_pyobject(py)
    }

}

/// What a replay's report and evaluation window read of the records of one `process_csv` call, in order, so
/// that no event object is built for them: per scored event its time, inline label (-1: none), card key (user
/// id, else event id), event id when labelled 1 and scenario, and what `replay --scores-out` writes of it (event
/// id, type, user id); per label event its id, time, referenced event and label (-1: none).
#[derive(Default)]
struct CsvMeta {
    ts: Vec<f64>,
    label: Vec<i8>,
    card: Vec<String>,
    fraud_id: Vec<Option<String>>,
    scenario: Vec<Option<String>>,
    event_id: Vec<String>,
    kind: Vec<&'static str>,
    user_id: Vec<Option<String>>,
    labels: Vec<(String, f64, String, i8)>,
}

impl CsvMeta {
    fn push(&mut self, ev: &EventRef<'_>) {
        let y = ev.label.map_or(-1, |l| l as i8);
        if ev.kind() == Kind::Label {
            self.labels.push((ev.event_id.to_string(), ev.ts, ev.ref_event_id.to_string(), y));
            return;
        }
        self.ts.push(ev.ts);
        self.label.push(y);
        self.card.push(ev.card_key());
        self.fraud_id.push((y == 1).then(|| ev.event_id.to_string()));
        self.scenario.push(ev.scenario.as_deref().map(str::to_string));
        self.event_id.push(ev.event_id.to_string());
        self.kind.push(if ev.kind() == Kind::Order { "order" } else { "login" });
        self.user_id.push((!ev.user_id.is_empty()).then(|| ev.user_id.to_string()));
    }
}

#[pymethods]
impl CoreEngine {
    /// ``CoreEngine(params)``: ``params`` as :func:`stream.compiled.engine_params` builds them from settings.
    #[new]
    fn new(py: Python<'_>, params: &Bound<'_, PyDict>) -> PyResult<Self> {
        let f = params
            .get_item("features")?
            .ok_or_else(|| PyValueError::new_err("missing engine parameter features"))?
            .cast_into::<PyDict>()?;
        let features = FeatureParams {
            windows: get(&f, "windows")?,
            idle_ttl: get(&f, "idle_ttl")?,
            max_distinct: get(&f, "max_distinct")?,
            max_known: get(&f, "max_known")?,
            expire_every: get(&f, "expire_every")?,
            passthrough: get(&f, "passthrough")?,
            max_entities: get(&f, "max_entities")?,
        };
        let graph = match params.get_item("graph")? {
            Some(g) if !g.is_none() => {
                let g = g.cast_into::<PyDict>()?;
                Some(GraphParams {
                    window: get(&g, "window")?,
                    max_users: get(&g, "max_users")?,
                    max_values: get(&g, "max_values")?,
                    max_group: get(&g, "max_group")?,
                    flagged: get(&g, "flagged")?,
                    max_entries: get(&g, "max_entries")?,
                })
            }
            _ => None,
        };
        let entity_risk = match params.get_item("entity_risk")? {
            Some(r) if !r.is_none() => Some(r.extract::<(Vec<String>, Vec<f64>, Option<f64>)>()?),
            _ => None,
        };
        let p = EngineParams {
            features,
            graph,
            entity_risk,
            store_size: get(params, "store_size")?,
            store_ttl: get(params, "store_ttl")?,
            reads_ids: get(params, "reads_ids")?,
            learns_labels: get(params, "learns_labels")?,
        };
        let engine = Engine::new(p).map_err(PyValueError::new_err)?;
        let m = py.import("stream.events")?;
        let cls = |n: &str| -> PyResult<Py<PyType>> { Ok(m.getattr(n)?.cast_into::<PyType>()?.unbind()) };
        Ok(CoreEngine {
            engine,
            classes: [cls("Order")?, cls("Login")?, cls("Label")?],
            vector: Vector::default(),
            names: Default::default(),
        })
    }

    /// The detectors' input for each order and login of ``events`` (``None`` for a label), in order, as the
    /// Python engine builds it: features, then entity-risk and link features, as a dict in the same key order.
    /// Labels are learned where they stand; ``alerted`` (optional, per event) says which events alerted (it
    /// feeds the graph's ``link_flagged``). The state advances past ``events``.
    #[pyo3(signature = (events, alerted=None))]
    fn vectors<'py>(&mut self, py: Python<'py>, events: &Bound<'py, PyAny>, alerted: Option<Vec<bool>>)
                    -> PyResult<Bound<'py, PyList>> {
        let out = PyList::empty(py);
        for (i, e) in events.try_iter()?.enumerate() {
            let ev = self.read(py, &e?)?;
            if ev.kind() == Kind::Label {
                self.engine.label(&ev);
                out.append(py.None())?;
                continue;
            }
            let mut v = std::mem::take(&mut self.vector);
            self.engine.vectorize(&ev, &mut v);
            self.vector = v;
            let kind = ev.kind();
            out.append(self.vector_dict(py, kind)?)?;
            let a = alerted.as_ref().is_some_and(|a| a.get(i).copied().unwrap_or(false));
            self.engine.scored(&ev, &self.vector, a);
        }
        self.engine.end_stretch();
        Ok(out)
    }

    /// Run detection in the core from now on: ``order`` and ``login`` are ``detectors.compiled.core_spec`` of
    /// the two event types' (fresh) ensembles.
    fn set_detection(&mut self, order: &Bound<'_, PyDict>, login: &Bound<'_, PyDict>) -> PyResult<()> {
        let (o, l) = (crate::py_detectors::ensemble(order)?, crate::py_detectors::ensemble(login)?);
        if o.names != l.names {
            return Err(PyValueError::new_err("the order and login ensembles must have the same detectors"));
        }
        self.engine.set_detectors(o, l);
        Ok(())
    }

    /// Switch the rules detector of both ensembles to new rules (a live rule pack switch), keeping its
    /// calibrator and the other detectors' state: ``order`` and ``login`` are the ``params`` of the rules entry
    /// of ``detectors.compiled.core_spec``. A :class:`ValueError` (and nothing changed) when detection does not
    /// run in the core or has no rules detector.
    fn set_rules(&mut self, order: &Bound<'_, PyDict>, login: &Bound<'_, PyDict>) -> PyResult<()> {
        let rules = |p: &Bound<'_, PyDict>| match crate::py_detectors::detector("rules", p)? {
            crate::detectors::ensemble::Detector::Rules(r) => Ok(r),
            _ => Err(PyValueError::new_err("not a rules detector")),
        };
        let (o, l) = (rules(order)?, rules(login)?);
        if !self.engine.set_rules(o, l) {
            return Err(PyValueError::new_err("detection does not run in the core, or has no rules detector"));
        }
        Ok(())
    }

    /// Whether detection runs in the core (:meth:`set_detection`, or a restored state that had it).
    #[getter]
    fn has_detection(&self) -> bool {
        self.engine.has_detectors()
    }

    /// The whole per-event path of a batch of ``stream.events`` objects, in order: features, entity risk and
    /// links, then each scored event's ensemble (score, calibrate, decide, learn), the label join where labels
    /// stand. Returns ``(risk, q, alert, severity, action, raw, p, alerts, seconds)`` over the orders and logins
    /// in order: ``raw`` and ``p`` are (detectors x events) arrays, ``severity`` / ``action`` codes into
    /// ``SEVERITIES`` / ``ACTIONS``; ``alerts`` holds, for each alerted event, ``(index, x, explain)`` with its
    /// vector as the Python engine's dict and each detector's explain data, read when its stretch ends (at a
    /// label that cuts the batch in the Python engine, or at the end) as the reference reads reasons.
    fn process<'py>(&mut self, py: Python<'py>, events: &Bound<'py, PyList>) -> PyResult<Bound<'py, PyTuple>> {
        let t0 = std::time::Instant::now();
        let mut acc = Batch::new(&self.engine, events.len())?;
        for e in events.iter() {
            let ev = self.read(py, &e)?;
            acc.step(&mut self.engine, &mut self.vector, &ev, 0);
        }
        acc.seal(&mut self.engine);
        self.finish(py, acc, t0)
    }

    /// :meth:`process` from raw JSON records (bytes), decoded by the core (no Python object per record), from
    /// ``records[start]`` on: returns ``(stop, statuses, invalid, where, risk, q, alert, severity, action, raw, p,
    /// alerts, seconds)``, where ``statuses`` / ``invalid`` / ``stop`` are :meth:`run_raw`'s (the caller decodes
    /// ``records[stop]`` in Python and goes on from ``stop + 1``), ``where`` the record index of each scored event,
    /// and the rest :meth:`process`'s over the scored events (an alert's index is into ``where``).
    #[pyo3(signature = (records, start=0))]
    fn process_raw<'py>(&mut self, py: Python<'py>, records: &Bound<'py, PyList>, start: usize)
                        -> PyResult<Bound<'py, PyTuple>> {
        let t0 = std::time::Instant::now();
        let n = records.len();
        let mut acc = Batch::new(&self.engine, n.saturating_sub(start))?;
        // The records are borrowed for the whole call (the list holds them, and so does `held`, whatever
        // another thread does to the list meanwhile); decoding and detection then run with the GIL released,
        // so that a Kafka consumer's fetch and record parsing (Python) go on on another core meanwhile.
        let mut held: Vec<Bound<'py, PyBytes>> = Vec::with_capacity(n.saturating_sub(start));
        for i in start..n {
            held.push(records.get_item(i)?.cast_into::<PyBytes>()?);
        }
        let raws: Vec<&[u8]> = held.iter().map(|b| b.as_bytes()).collect();
        let (engine, vector) = (&mut self.engine, &mut self.vector);
        let (statuses, bad, stop) = py.detach(|| {
            let mut statuses: Vec<u8> = Vec::with_capacity(raws.len());
            let mut bad: Vec<(usize, String, String)> = Vec::new();
            let mut stop = n;
            for (k, raw) in raws.iter().enumerate() {
                let i = start + k;
                match decode(raw) {
                    Ok(ev) => {
                        statuses.push(ev.kind() as u8);
                        acc.step(engine, vector, &ev, i);
                    }
                    Err(Refused::Invalid(b)) => {
                        bad.push((i, b.field, b.reason));
                        statuses.push(3);
                    }
                    Err(Refused::Fallback) => {
                        stop = i;
                        break;
                    }
                }
            }
            acc.seal(engine);
            (statuses, bad, stop)
        });
        let invalid = PyList::empty(py);
        for b in bad {
            invalid.append(b)?;
        }
        let at = numpy::PyArray1::from_vec(py, std::mem::take(&mut acc.at));
        let out = self.finish(py, acc, t0)?;
        let head = (stop, numpy::PyArray1::from_vec(py, statuses), invalid, at).into_pyobject(py)?;
        let all: Vec<Bound<'py, PyAny>> = head.iter().chain(out.iter()).collect();
        PyTuple::new(py, all)
    }

    /// :meth:`process_raw` for CSV: the lines of ``data`` (bytes) from byte ``start`` decoded by ``mapping`` (a
    /// ``CsvMapping``), the line before ``start`` being number ``line_no``, and ``last_ts`` the time of the last
    /// event before it. Returns ``(stop, line_no, last_ts, invalid, where, lines, risk, q, alert, severity,
    /// action, raw, p, alerts, seconds)`` (after ``last_ts``: ``taken``, the rows handled): ``stop`` is where the first line left to Python starts (``len(data)``
    /// if none), ``line_no`` / ``last_ts`` are as of the line before it, ``invalid`` holds ``(line_no, field,
    /// reason, start, end, last_ts)`` per refused row (``data[start:end]`` its line, ``last_ts`` as a dead
    /// letter's time), ``where`` / ``lines`` the start byte and line number of each scored event, and the rest
    /// :meth:`process`'s.
    /// At most ``limit`` rows are taken (events and refused rows). ``fallback``, if given, is called for a
    /// row the core leaves to Python, as ``fallback(start, line_no, last_ts)``, and returns ``None`` (stop there:
    /// the record may go on past ``data``) or ``(end, lines, event)``: where the next row starts, how many lines
    /// the record took, and its ``stream.events`` object (``None`` for a refused row, which ``fallback`` keeps),
    /// which then goes through the pipeline in the same call, as :meth:`process` would take it in a batch.
    /// ``with_meta``: one more item at the end, a dict of what the report reads of the records (``CsvMeta``).
    #[pyo3(signature = (data, start, mapping, line_no=0, last_ts=f64::NEG_INFINITY, limit=usize::MAX,
                        fallback=None, with_meta=false))]
    #[allow(clippy::too_many_arguments)]
    fn process_csv<'py>(&mut self, py: Python<'py>, data: &Bound<'py, PyBytes>, start: usize,
                        mapping: &Bound<'py, PyCsvMapping>, mut line_no: usize, mut last_ts: f64,
                        limit: usize, fallback: Option<Bound<'py, PyAny>>, with_meta: bool)
                        -> PyResult<Bound<'py, PyTuple>> {
        let t0 = std::time::Instant::now();
        let data = data.as_bytes();
        let m = &mapping.get().inner;
        let mut acc = Batch::new(&self.engine, 1024)?;
        let invalid = PyList::empty(py);
        let mut where_lines: Vec<usize> = Vec::new();
        let mut meta = CsvMeta::default();
        let mut cells = Vec::with_capacity(m.width);
        let mut pos = start;
        let mut taken = 0usize;
        while pos < data.len() && taken < limit {
            let (end, next) = next_line(data, pos);
            let row = match parse_line(&data[pos..end], &mut cells) {
                Ok(()) => m.row(&mut cells, line_no + 1),
                Err(e) => Err(e),
            };
            match row {
                Ok(ev) => {
                    taken += 1;
                    if ev.kind() != Kind::Label {
                        where_lines.push(line_no + 1);
                    }
                    last_ts = ev.ts;
                    if with_meta {
                        meta.push(&ev);
                    }
                    acc.step(&mut self.engine, &mut self.vector, &ev, pos);
                }
                Err(Refused::Invalid(bad)) => {
                    taken += 1;
                    invalid.append((line_no + 1, bad.field, bad.reason, pos, end, last_ts))?;
                }
                Err(Refused::Fallback) => {
                    let Some(f) = &fallback else { break };
                    let got = f.call1((pos, line_no, last_ts))?;
                    if got.is_none() {
                        break;
                    }
                    let (end, lines, obj): (usize, usize, Bound<'py, PyAny>) = got.extract()?;
                    taken += 1;
                    line_no += lines;
                    if !obj.is_none() {
                        let ev = self.read(py, &obj)?;
                        if ev.kind() != Kind::Label {
                            where_lines.push(line_no);
                        }
                        last_ts = ev.ts;
                        if with_meta {
                            meta.push(&ev);
                        }
                        acc.step(&mut self.engine, &mut self.vector, &ev, pos);
                    }
                    pos = end;
                    continue;
                }
            }
            line_no += 1;
            pos = next;
        }
        let lines = where_lines;
        acc.seal(&mut self.engine);
        let at = numpy::PyArray1::from_vec(py, std::mem::take(&mut acc.at));
        let out = self.finish(py, acc, t0)?;
        let head = (pos.min(data.len()), line_no, last_ts, taken, invalid, at, numpy::PyArray1::from_vec(py, lines))
            .into_pyobject(py)?;
        let mut all: Vec<Bound<'py, PyAny>> = head.iter().chain(out.iter()).collect();
        if with_meta {
            let cols = PyDict::new(py);
            cols.set_item("ts", numpy::PyArray1::from_vec(py, meta.ts))?;
            cols.set_item("label", numpy::PyArray1::from_vec(py, meta.label))?;
            cols.set_item("card", meta.card)?;
            cols.set_item("fraud_id", meta.fraud_id)?;
            cols.set_item("scenario", meta.scenario)?;
            cols.set_item("event_id", meta.event_id)?;
            cols.set_item("type", meta.kind)?;
            cols.set_item("user_id", meta.user_id)?;
            cols.set_item("labels", meta.labels)?;
            all.push(cols.into_any());
        }
        PyTuple::new(py, all)
    }

    /// Run raw JSON records (bytes) through decoding, features, entity risk, the graph and the label join, without
    /// a Python object per record, from ``records[start]`` on. Returns ``(stop, statuses, invalid, seconds)``:
    /// ``statuses`` has a code per record handled (0 order, 1 login, 2 label, 3 invalid), ``invalid`` the
    /// ``(index, field, reason)`` of each refused record (the message ``stream.events.decode`` gives), and
    /// ``stop`` the index of the first record the compiled decoder leaves to Python (``len(records)`` if none):
    /// the caller decodes that one with ``stream.events.decode``, hands an event to :meth:`vectors`, and calls
    /// again from ``stop + 1``, so the order of the stream is kept. ``seconds``: time spent in Rust.
    #[pyo3(signature = (records, start=0))]
    fn run_raw<'py>(&mut self, py: Python<'py>, records: &Bound<'py, PyList>, start: usize)
                    -> PyResult<Bound<'py, PyTuple>> {
        let t0 = std::time::Instant::now();
        let n = records.len();
        let mut statuses: Vec<u8> = Vec::with_capacity(n.saturating_sub(start));
        let invalid = PyList::empty(py);
        let mut stop = n;
        let mut v = std::mem::take(&mut self.vector);
        for i in start..n {
            let item = records.get_item(i)?;
            let raw = item.cast::<PyBytes>()?.as_bytes();
            match decode(raw) {
                Ok(ev) => match ev.kind() {
                    Kind::Label => {
                        self.engine.label(&ev);
                        statuses.push(2);
                    }
                    kind => {
                        self.engine.vectorize(&ev, &mut v);
                        self.engine.scored(&ev, &v, false);
                        statuses.push(kind as u8);
                    }
                },
                Err(Refused::Invalid(bad)) => {
                    invalid.append((i, bad.field, bad.reason))?;
                    statuses.push(3);
                }
                Err(Refused::Fallback) => {
                    stop = i;
                    break;
                }
            }
        }
        self.vector = v;
        self.engine.end_stretch();
        let secs = t0.elapsed().as_secs_f64();
        let arr = numpy::PyArray1::from_vec(py, statuses);
        (stop, arr, invalid, secs).into_pyobject(py)
    }

    /// The detector columns of ``kind`` ("order" or "login"), in order of first appearance.
    fn vector_names(&self, kind: &str) -> PyResult<Vec<String>> {
        let k = match kind {
            "order" => Kind::Order,
            "login" => Kind::Login,
            _ => return Err(PyValueError::new_err(format!("kind must be order or login, not {kind:?}"))),
        };
        Ok(self.engine.vector_schema(k).names.clone())
    }

    /// Flag ``user`` in the link graph for an alert at ``ts`` (detection done by the caller, after a stretch).
    fn flag(&mut self, user: &str, ts: f64) {
        self.engine.flag(user, ts);
    }

    /// Memory and sizes: the feature tables' ``entities_<kind>`` and ``bytes_<kind>`` (heap bytes, counted),
    /// ``entities`` and ``approx_bytes`` in all; ``graph_entries``; the label store's ``held``, ``joined``,
    /// ``missed`` and ``expired``.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        let (mut n, mut b) = (0usize, 0usize);
        for (kind, count, bytes) in self.engine.features().memory() {
            d.set_item(format!("entities_{kind}"), count as f64)?;
            d.set_item(format!("bytes_per_{kind}"), if count > 0 { (bytes as f64 / count as f64 * 10.0).round() / 10.0 } else { 0.0 })?;
            n += count;
            b += bytes;
        }
        d.set_item("entities", n as f64)?;
        d.set_item("approx_bytes", b as f64)?;
        d.set_item("graph_entries", self.engine.graph().map_or(0, |g| g.size()))?;
        let (held, joined, missed, expired) = self.engine.label_store().stats();
        let ls = PyDict::new(py);
        ls.set_item("held", held)?;
        ls.set_item("joined", joined)?;
        ls.set_item("missed", missed)?;
        ls.set_item("expired", expired)?;
        d.set_item("label_store", ls)?;
        Ok(d)
    }

    /// The weights the ensemble of ``kind`` ("order" or "login") combines its detectors with now (adaptive
    /// weights move at labels), and its adapter's state: ``(weights, auc, pending, (legit, frauds))`` (``auc``
    /// NaN before the first measurement; the last three ``None`` without ``[ensemble.adaptive]``); ``None`` when
    /// detection does not run in the core.
    #[allow(clippy::type_complexity)]
    fn weights(&self, kind: &str) -> PyResult<Option<(Vec<f64>, Option<Vec<f64>>, Option<usize>, Option<(u64, u64)>)>> {
        let k = match kind {
            "order" => Kind::Order,
            "login" => Kind::Login,
            other => return Err(PyValueError::new_err(format!("kind must be \"order\" or \"login\", not {other:?}"))),
        };
        Ok(self.engine.ensembles().map(|e| {
            let ens = &e[k as usize];
            let a = ens.adapter();
            (ens.weights().to_vec(), a.map(|a| a.auc.clone()), a.map(|a| a.pending()),
             a.map(|a| { let f = a.filled(); (f[0], f[1]) }))
        }))
    }

    #[getter]
    fn events_seen(&self) -> u64 {
        self.engine.events_seen()
    }

    #[getter]
    fn has_graph(&self) -> bool {
        self.engine.graph().is_some()
    }

    /// The engine's state; ``compressed``: LZ4-compressed (what a checkpoint keeps; ``restore(..., compressed=True)``
    /// reads it back).
    #[pyo3(signature = (compressed=false))]
    fn snapshot<'py>(&self, py: Python<'py>, compressed: bool) -> PyResult<Bound<'py, PyBytes>> {
        // serialised with the GIL released: a checkpoint snapshots its units on several threads at once
        let engine = &self.engine;
        if compressed {
            let bytes = py.detach(|| engine.to_compressed());
            return Ok(PyBytes::new(py, &bytes));
        }
        // Plain: serialised straight into the new `bytes` object's buffer (no copy of tens of MB, and its pages
        // first touched with the GIL released, not zeroed while holding it as `PyBytes::new_with` would).
        let plan = py.detach(|| engine.plan());
        // SAFETY: a new bytes object of `plan.total` bytes; its buffer is ours until it is returned.
        let obj = unsafe {
            let ptr = pyo3::ffi::PyBytes_FromStringAndSize(std::ptr::null(), plan.total as pyo3::ffi::Py_ssize_t);
            Bound::from_owned_ptr_or_err(py, ptr)?.cast_into_unchecked::<PyBytes>()
        };
        let mut into = RawWriter { at: unsafe { pyo3::ffi::PyBytes_AsString(obj.as_ptr()).cast() }, left: plan.total };
        let left = py.detach(move || {
            engine.write(&plan, &mut into);
            into.left
        });
        // every byte written, or the object (never handed out) would hold uninitialised memory
        assert_eq!(left, 0, "engine state: the plan's size and the bytes written differ");
        Ok(obj)
    }

    /// Free the engine's state now, with the GIL released, leaving an empty engine of the same parameters without
    /// detectors (to be dropped, never used again). Freeing a unit's state takes 0.1-0.25 s (millions of small
    /// allocations): the runtime calls this on a thread of its own for a unit it gives up, so that neither a
    /// rebalance's revoke nor the stop waits for it, nor holds the GIL meanwhile.
    fn discard(&mut self, py: Python<'_>) -> PyResult<()> {
        let state = self.engine.take().map_err(PyValueError::new_err)?;
        py.detach(move || drop(state));
        Ok(())
    }

    /// Bytes of each part of `snapshot()`: `[(part, bytes)]`.
    fn snapshot_sizes(&self) -> Vec<(&'static str, usize)> {
        self.engine.snapshot_sizes()
    }

    #[pyo3(signature = (data, compressed=false))]
    fn restore(&mut self, py: Python<'_>, data: &[u8], compressed: bool) -> PyResult<()> {
        let engine = py.detach(|| if compressed { Engine::from_compressed(data) } else { Engine::from_bytes(data) });
        self.engine = engine.map_err(PyValueError::new_err)?;
        self.names = Default::default();
        Ok(())
    }
}

/// `Write` into memory not initialised yet (a new Python `bytes` object's buffer), never past its end; only
/// copies in, never reads it.
struct RawWriter {
    at: *mut u8,
    left: usize,
}

// SAFETY: the buffer belongs to an object no other thread can reach until the writing is over.
unsafe impl Send for RawWriter {}

impl std::io::Write for RawWriter {
    #[inline]
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.left);
        // SAFETY: `n` bytes fit in what is left of the buffer, and `buf` cannot overlap memory nobody else holds
        unsafe {
            std::ptr::copy_nonoverlapping(buf.as_ptr(), self.at, n);
            self.at = self.at.add(n);
        }
        self.left -= n;
        Ok(n)
    }

    #[inline]
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if buf.len() > self.left {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        self.write(buf).map(|_| ())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

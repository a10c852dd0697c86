//! Python wrapper of the detection stack: `stream._core.DetectorCore` (an [`Ensemble`] and the [`Schema`] of the
//! feature names it was given) and `stream._core.TailCalibrator`.
//!
//! `DetectorCore(spec)` takes the plain dict `detectors.compiled.core_spec(ensemble)` reads from a built Python
//! `Ensemble` (so the Python side validates the configuration once); `process(names, matrix, blocked=None)`
//! scores a batch: `matrix[i, j]` is feature `names[j]` of event `i`, `NaN` where the event lacks it.

use numpy::{PyArray1, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

use crate::detectors::calibration::TailCalibrator;
use crate::detectors::coldstart::ColdStart;
use crate::detectors::ensemble::{Config, Detector, Ensemble, Risk, Verdict, ACTIONS, SEVERITIES};
use crate::detectors::hst::HalfSpaceTrees;
use crate::detectors::rules::{Clause, Op, Rule, Rules};
use crate::detectors::supervised::LogReg;
use crate::detectors::zscore::RobustZScore;
use crate::event::Schema;

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<DetectorCore>()?;
    m.add_class::<PyTailCalibrator>()?;
    m.add("SEVERITIES", SEVERITIES.to_vec())?;
    m.add("ACTIONS", ACTIONS.to_vec())?;
    Ok(())
}

fn bad(msg: impl Into<String>) -> PyErr {
    PyValueError::new_err(msg.into())
}

fn get<'py, T: for<'a> FromPyObject<'a, 'py>>(d: &Bound<'py, PyDict>, key: &str) -> PyResult<T>
where
    for<'a> <T as FromPyObject<'a, 'py>>::Error: Into<PyErr>,
{
    let v = d.get_item(key)?.ok_or_else(|| bad(format!("core spec: {key:?} is missing")))?;
    v.extract::<T>().map_err(|e| {
        let e: PyErr = e.into();
        bad(format!("core spec: {key:?}: {e}"))
    })
}

fn severity_code(name: &str) -> PyResult<u8> {
    SEVERITIES.iter().position(|s| *s == name).map(|i| i as u8).ok_or_else(|| bad(format!("unknown severity {name:?}")))
}

fn action_code(name: &str) -> PyResult<u8> {
    ACTIONS.iter().position(|s| *s == name).map(|i| i as u8).ok_or_else(|| bad(format!("unknown action {name:?}")))
}

pub fn detector(kind: &str, p: &Bound<'_, PyDict>) -> PyResult<Detector> {
    Ok(match kind {
        "hst" => Detector::Hst(HalfSpaceTrees::new(
            get(p, "n_trees")?,
            get(p, "height")?,
            get(p, "window_size")?,
            get(p, "seed")?,
            get(p, "features")?,
        )),
        "zscore" => Detector::ZScore(RobustZScore::new(
            get(p, "features")?,
            get(p, "window")?,
            get(p, "refresh_every")?,
            get(p, "clip")?,
            get(p, "top_k")?,
            get(p, "min_count")?,
            get(p, "log_nonneg")?,
            get(p, "count_floor")?,
        )),
        "coldstart" => Detector::ColdStart(ColdStart::new(
            get(p, "low")?,
            get(p, "high")?,
            get(p, "window")?,
            get(p, "refresh_every")?,
            get(p, "min_count")?,
        )),
        "rules" | "priors" => {
            let combine: String = get(p, "combine")?;
            let mut rules = Vec::new();
            for r in get::<Bound<'_, PyList>>(p, "rules")?.iter() {
                let r = r.cast_into::<PyDict>().map_err(|_| bad("core spec: a rule must be a dict"))?;
                let mut clauses = Vec::new();
                for (feature, op, value) in get::<Vec<(String, String, f64)>>(&r, "clauses")? {
                    let op = Op::parse(&op).ok_or_else(|| bad(format!("unknown operator {op:?}")))?;
                    clauses.push(Clause { feature, op, value });
                }
                let action: String = get(&r, "action")?;
                rules.push(Rule { name: get(&r, "name")?, clauses, score: get(&r, "score")?, block: action == "block" });
            }
            let rules = Rules::new(rules, combine == "sum");
            if kind == "priors" {
                Detector::Priors(rules)
            } else {
                Detector::Rules(rules)
            }
        }
        "supervised" => {
            let pos_share: f64 = get(p, "pos_share")?;
            let warmup: u64 = get(p, "warmup")?;
            if !(pos_share > 0.0 && pos_share < 1.0) || warmup < 1 {
                return Err(bad("core spec: supervised needs 0 < pos_share < 1 and warmup >= 1"));
            }
            Detector::Supervised(LogReg::new(get(p, "features")?, pos_share, warmup, get(p, "lr")?, get(p, "seed")?))
        }
        other => return Err(bad(format!("the compiled core has no detector {other:?}"))),
    })
}

pub fn ensemble(spec: &Bound<'_, PyDict>) -> PyResult<Ensemble> {
    let mut dets = Vec::new();
    let mut gaussian = Vec::new();
    for d in get::<Bound<'_, PyList>>(spec, "detectors")?.iter() {
        let d = d.cast_into::<PyDict>().map_err(|_| bad("core spec: a detector must be a dict"))?;
        let kind: String = get(&d, "type")?;
        let params: Bound<'_, PyDict> = get(&d, "params")?;
        dets.push((get::<String>(&d, "name")?, detector(&kind, &params)?, get::<f64>(&d, "weight")?));
        let how: String = match d.get_item("calibration")? {
            Some(v) if !v.is_none() => v.extract()?,
            _ => "rank".to_string(),
        };
        match how.as_str() {
            "rank" => gaussian.push(false),
            "gaussian" if matches!(dets.last().unwrap().1, Detector::ZScore(_)) => gaussian.push(true),
            "gaussian" => {
                return Err(bad(format!("core spec: only a z-score can be calibrated \"gaussian\", not {kind:?}")))
            }
            other => return Err(bad(format!("core spec: unknown calibration {other:?}"))),
        }
    }
    if dets.is_empty() {
        return Err(bad("an ensemble needs at least one detector"));
    }
    let mut severity = Vec::new();
    for (k, frac) in get::<Vec<(String, f64)>>(spec, "severity")? {
        severity.push((frac, severity_code(&k)?));
    }
    let mut actions = [0u8; 5];
    for (k, v) in get::<Vec<(String, String)>>(spec, "actions")? {
        actions[severity_code(&k)? as usize] = action_code(&v)?;
    }
    let risk = match get::<String>(spec, "risk")?.as_str() {
        "rank" => Risk::Rank,
        "evidence" => Risk::Evidence,
        r => return Err(bad(format!("unknown risk {r:?}"))),
    };
    let config = Config {
        budget: get(spec, "budget")?,
        calibration_window: get(spec, "calibration_window")?,
        protect: get(spec, "protect")?,
        min_history: get(spec, "min_history")?,
        severity,
        actions,
        risk,
    };
    let mut ens = Ensemble::new(dets, config);
    for (i, on) in gaussian.into_iter().enumerate() {
        if on {
            ens.set_gaussian(i, true);
        }
    }
    if let Some(a) = spec.get_item("adaptive")? {
        if !a.is_none() {
            let a = a.cast_into::<PyDict>().map_err(|_| bad("core spec: \"adaptive\" must be a dict or None"))?;
            let measure: String = get(&a, "measure")?;
            let (precision, stream) = match measure.as_str() {
                "stream_precision" => (true, true),
                "precision" => (true, false),
                "auc" => (false, false),
                m => return Err(bad(format!("unknown adaptive measure {m:?}"))),
            };
            ens.set_adapter(get(&a, "prior_positives")?, get(&a, "window")?, get(&a, "refresh_every")?,
                            get(&a, "max_pending")?, precision, stream);
        }
    }
    Ok(ens)
}

/// The compiled detection stack of one event type.
#[pyclass(module = "stream._core", name = "DetectorCore")]
pub struct DetectorCore {
    schema: Schema,
    ens: Ensemble,
    row: Vec<f64>,
    cols: Vec<usize>,
    verdict: Verdict,
}

#[pymethods]
impl DetectorCore {
    #[new]
    fn new(spec: &Bound<'_, PyDict>) -> PyResult<Self> {
        let ens = ensemble(spec)?;
        if ens.learns_labels() {
            // it would score its prior forever: labels are joined to their rows by CoreEngine, not here
            return Err(bad("DetectorCore joins no labels, so it cannot run a label learner (the supervised \
                            detector); CoreEngine runs it"));
        }
        let verdict = ens.verdict();
        Ok(DetectorCore { schema: Schema::default(), ens, row: Vec::new(), cols: Vec::new(), verdict })
    }

    /// Detector names, in configuration order.
    #[getter]
    fn names(&self) -> Vec<String> {
        self.ens.names.clone()
    }

    /// Events processed so far.
    #[getter]
    fn seen(&self) -> u64 {
        self.ens.seen
    }

    /// Score, decide and learn a batch, in order: `matrix[i, j]` is feature `names[j]` of event `i` (`NaN`:
    /// absent); `blocked[i]` forces a block (a blocklist match). Returns a dict of numpy arrays: `risk`, `q`,
    /// `evidence`, `alert`, `severity` and `action` (codes into `SEVERITIES` / `ACTIONS`), `forced`, and `raw`
    /// and `p`: detector name -> array.
    #[pyo3(signature = (names, matrix, blocked=None))]
    fn process<'py>(
        &mut self,
        py: Python<'py>,
        names: Vec<String>,
        matrix: PyReadonlyArray2<'py, f64>,
        blocked: Option<PyReadonlyArray1<'py, bool>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let m = matrix.as_array();
        let (n, k) = m.dim();
        if k != names.len() {
            return Err(bad(format!("{} names for a matrix of {} columns", names.len(), k)));
        }
        let blocked = blocked.as_ref().map(|b| b.as_array());
        if let Some(b) = &blocked {
            if b.len() != n {
                return Err(bad(format!("{} blocked flags for {} events", b.len(), n)));
            }
        }
        self.cols.clear();
        for name in &names {
            let c = self.schema.column(name);
            self.cols.push(c);
        }
        let nd = self.ens.names.len();
        let (mut risk, mut q, mut evidence) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
        let (mut alert, mut forced) = (vec![false; n], vec![false; n]);
        let (mut sev, mut act) = (vec![0u8; n], vec![0u8; n]);
        let mut raw = vec![vec![0.0; n]; nd];
        let mut p = vec![vec![0.0; n]; nd];
        self.row.resize(self.schema.len(), f64::NAN);
        for i in 0..n {
            self.row.iter_mut().for_each(|v| *v = f64::NAN);
            for (j, &c) in self.cols.iter().enumerate() {
                self.row[c] = m[[i, j]];
            }
            let force = blocked.as_ref().is_some_and(|b| b[i]);
            let v = &mut self.verdict;
            self.ens.process(&self.schema, &self.row, force, v);
            risk[i] = v.risk;
            q[i] = v.q;
            evidence[i] = v.evidence;
            alert[i] = v.alert;
            forced[i] = v.forced;
            sev[i] = v.severity;
            act[i] = v.action;
            for d in 0..nd {
                raw[d][i] = v.raw[d];
                p[d][i] = v.p[d];
            }
        }
        let out = PyDict::new(py);
        out.set_item("risk", PyArray1::from_vec(py, risk))?;
        out.set_item("q", PyArray1::from_vec(py, q))?;
        out.set_item("evidence", PyArray1::from_vec(py, evidence))?;
        out.set_item("alert", PyArray1::from_vec(py, alert))?;
        out.set_item("forced", PyArray1::from_vec(py, forced))?;
        out.set_item("severity", PyArray1::from_vec(py, sev))?;
        out.set_item("action", PyArray1::from_vec(py, act))?;
        let (raw_d, p_d) = (PyDict::new(py), PyDict::new(py));
        for (d, (r, pv)) in raw.into_iter().zip(p).enumerate() {
            raw_d.set_item(&self.ens.names[d], PyArray1::from_vec(py, r))?;
            p_d.set_item(&self.ens.names[d], PyArray1::from_vec(py, pv))?;
        }
        out.set_item("raw", raw_d)?;
        out.set_item("p", p_d)?;
        Ok(out)
    }

    /// The whole state (schema and models) as bytes.
    fn snapshot<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let blob = bincode::serialize(&(&self.schema, &self.ens)).map_err(|e| bad(e.to_string()))?;
        Ok(PyBytes::new(py, &blob))
    }

    /// Load a [`snapshot`](Self::snapshot) (of a core with the same detectors).
    fn restore(&mut self, blob: &[u8]) -> PyResult<()> {
        let (mut schema, ens_bytes): (Schema, Ensemble) =
            bincode::deserialize(blob).map_err(|e| bad(format!("detector state does not load: {e}")))?;
        if ens_bytes.names != self.ens.names {
            return Err(bad(format!("state of detectors {:?}, not {:?}", ens_bytes.names, self.ens.names)));
        }
        // rebuild the derived parts (trees, masses, column caches) through the ensemble's own restore
        let ens = Ensemble::restore(&bincode::serialize(&ens_bytes).map_err(|e| bad(e.to_string()))?)
            .map_err(bad)?;
        schema.reindex();
        self.schema = schema;
        self.ens = ens;
        self.verdict = self.ens.verdict();
        Ok(())
    }
}

/// `detectors.calibration.TailCalibrator`, compiled (for tests and benchmarks).
#[pyclass(module = "stream._core", name = "TailCalibrator")]
pub struct PyTailCalibrator {
    cal: TailCalibrator,
}

#[pymethods]
impl PyTailCalibrator {
    #[new]
    #[pyo3(signature = (window=20000, refresh_every=256))]
    fn new(window: usize, refresh_every: usize) -> PyResult<Self> {
        if window < 1 || refresh_every < 1 {
            return Err(bad("window and refresh_every must be >= 1"));
        }
        Ok(PyTailCalibrator { cal: TailCalibrator::new(window, refresh_every) })
    }

    fn update(&mut self, s: f64) -> f64 {
        self.cal.update(s)
    }

    fn update_many<'py>(&mut self, py: Python<'py>, scores: PyReadonlyArray1<'py, f64>) -> Bound<'py, PyArray1<f64>> {
        let out: Vec<f64> = scores.as_array().iter().map(|&s| self.cal.update(s)).collect();
        PyArray1::from_vec(py, out)
    }

    fn tail(&self, s: f64) -> f64 {
        self.cal.tail(s)
    }

    #[getter]
    fn count(&self) -> u64 {
        self.cal.count()
    }
}

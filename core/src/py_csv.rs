//! `stream._core.CsvMapping` and `stream._core.csv_decode`: the CSV decoder of `csv.rs` for Python.
//!
//! `CsvMapping(spec)` compiles a `ColumnMapping` for one header (`stream.sources.core_csv_spec` builds `spec`);
//! `csv_decode(data, start, mapping, line_no)` decodes the lines of `data` from byte `start` into outcomes as
//! `decode_many` gives them, until the first line left to Python. `CoreEngine.process_csv` runs them through
//! the whole pipeline without a Python object per row.

use pyo3::exceptions::PyValueError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};

use crate::csv::{next_line, parse_line, CsvMapping, MappingSpec};
use crate::decode::Refused;
use crate::event::Kind;
use crate::py_decode::fields;

/// A `ColumnMapping` compiled for one CSV header.
#[pyclass(module = "stream._core", name = "CsvMapping", frozen)]
pub struct PyCsvMapping {
    pub inner: CsvMapping,
}

fn item<'py, T>(d: &Bound<'py, PyDict>, key: &str) -> PyResult<T>
where
    T: for<'a> FromPyObject<'a, 'py, Error = PyErr>,
{
    match d.get_item(key)? {
        Some(v) => v.extract::<T>().map_err(|e| PyValueError::new_err(format!("{key}: {e}"))),
        None => Err(PyValueError::new_err(format!("missing CSV mapping key {key}"))),
    }
}

#[pymethods]
impl PyCsvMapping {
    /// ``CsvMapping(spec)``; ``ValueError`` for a mapping the core leaves to Python.
    #[new]
    fn new(spec: &Bound<'_, PyDict>) -> PyResult<Self> {
        let features: Option<Option<Vec<String>>> = match spec.get_item("features")? {
            Some(f) if f.is_none() => Some(None),
            Some(f) => match f.extract::<String>() {
                Ok(s) if s == "auto" => None,
                Ok(s) if s == "none" => Some(None),
                Ok(s) => return Err(PyValueError::new_err(format!("features: {s:?}"))),
                Err(_) => Some(Some(f.extract::<Vec<String>>()?)),
            },
            None => None,
        };
        let ts_unit: String = item(spec, "ts_unit")?;
        let s = MappingSpec {
            header: item(spec, "header")?,
            fields: item(spec, "fields")?,
            constants: item(spec, "constants")?,
            kind: item(spec, "type")?,
            features,
            drop: item(spec, "drop")?,
            ts_origin: item(spec, "ts_origin")?,
            ts_ms: ts_unit == "ms",
            all_fields: item(spec, "all_fields")?,
            name: item(spec, "name")?,
        };
        Ok(PyCsvMapping { inner: CsvMapping::new(s).map_err(PyValueError::new_err)? })
    }

    #[getter]
    fn width(&self) -> usize {
        self.inner.width
    }
}

/// Decode the lines of ``data`` (bytes) from byte ``start``, the line before it being number ``line_no``:
/// returns ``(stop, line_no, items)``, where ``items`` holds per line ``(line_no, kind, fields)`` for an event
/// (as ``decode_many``'s outcomes) or ``(line_no, "invalid", field, reason, start, end)`` for a refused row
/// (``data[start:end]`` its line), and ``stop`` is where the first line left to Python starts (``len(data)`` if
/// none), ``line_no`` the number of the line before it.
#[pyfunction]
pub fn csv_decode<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyBytes>,
    start: usize,
    mapping: &Bound<'py, PyCsvMapping>,
    mut line_no: usize,
) -> PyResult<Bound<'py, PyTuple>> {
    let data = data.as_bytes();
    let m = &mapping.get().inner;
    let out = PyList::empty(py);
    let mut cells = Vec::with_capacity(m.width);
    let mut pos = start;
    while pos < data.len() {
        let (end, next) = next_line(data, pos);
        if parse_line(&data[pos..end], &mut cells).is_err() {
            break;
        }
        match m.row(&mut cells, line_no + 1) {
            Ok(e) => {
                let kind = match e.kind() {
                    Kind::Order => intern!(py, "order"),
                    Kind::Login => intern!(py, "login"),
                    Kind::Label => intern!(py, "label"),
                };
                out.append((line_no + 1, kind, fields(py, &e)?))?;
            }
            Err(Refused::Invalid(bad)) => {
                out.append((line_no + 1, intern!(py, "invalid"), bad.field, bad.reason, pos, end))?;
            }
            Err(Refused::Fallback) => break,
        }
        line_no += 1;
        pos = next;
    }
    (pos.min(data.len()), line_no, out).into_pyobject(py)
}

/// How many rows of ``data`` from byte ``start`` decode to an event, are refused, before the first left to
/// Python: ``(events, refused, stop)``, the decoder alone without a Python object (what the core pays for
/// decoding inside ``CoreEngine.process_csv``; ``bench/core_csv_bench.py`` times it).
#[pyfunction]
pub fn csv_tally(data: &Bound<'_, PyBytes>, start: usize, mapping: &Bound<'_, PyCsvMapping>) -> (usize, usize, usize) {
    let data = data.as_bytes();
    let m = &mapping.get().inner;
    let mut cells = Vec::with_capacity(m.width);
    let (mut ok, mut bad, mut pos, mut line_no) = (0, 0, start, 0);
    while pos < data.len() {
        let (end, next) = next_line(data, pos);
        if parse_line(&data[pos..end], &mut cells).is_err() {
            break;
        }
        match m.row(&mut cells, line_no + 1) {
            Ok(_) => ok += 1,
            Err(Refused::Invalid(_)) => bad += 1,
            Err(Refused::Fallback) => break,
        }
        line_no += 1;
        pos = next;
    }
    (ok, bad, pos)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyCsvMapping>()?;
    m.add_function(wrap_pyfunction!(csv_decode, m)?)?;
    m.add_function(wrap_pyfunction!(csv_tally, m)?)?;
    Ok(())
}

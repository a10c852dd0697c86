//! riskstream's compiled scoring core, imported from Python as `stream._core`.
//!
//! The pure-Rust parts (feature state, detectors, calibrators) hold no Python types, so `cargo test` exercises
//! them without an interpreter; the `#[pyclass]` wrappers around them live beside each one and are registered here.
//! The Python engine (`stream/pipeline.py` and `detectors/`) is the reference implementation: every kernel here
//! must give the same numbers, which `tests/core/` checks on the same inputs.

use pyo3::prelude::*;

pub mod decode;
pub mod csv;
mod py_csv;
pub mod engine;
mod py_engine;
pub mod event;
pub mod idindex;
pub mod labels;
pub mod links;
mod py_links;
pub mod features;
pub mod py_features;
pub mod py_decode;
mod py_kafka;
pub mod detectors;
pub mod py_detectors;

/// The core's version and the version of its state format (checkpoints name both).
pub const STATE_VERSION: u32 = 6;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("STATE_VERSION", STATE_VERSION)?;
    py_links::register(m)?;
    m.add_class::<py_features::FeatureCore>()?;
    py_decode::register(m)?;
    py_csv::register(m)?;
    py_kafka::register(m)?;
    m.add_class::<py_engine::CoreEngine>()?;
    py_detectors::register(m)?;
    Ok(())
}

"""``bench/core_profile.py``'s attribution: each perf sample goes to the innermost frame that names a stage, set-up
and teardown apart, Python where no engine frame is on the stack."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("core_profile", ROOT / "bench/core_profile.py")
assert spec is not None and spec.loader is not None
core_profile = importlib.util.module_from_spec(spec)
spec.loader.exec_module(core_profile)

STAGE = dict(core_profile.STAGES)


def _name(part: str) -> str:
    return next(stage for stage in STAGE if stage.startswith(part))


def test_a_sample_belongs_to_its_innermost_stage():
    stack = ["__memmove_avx_unaligned_erms", "alloc::vec::Vec<T>::insert (inlined)",
             "_core::detectors::calibration::TailCalibrator::update",
             "_core::detectors::ensemble::Ensemble::process", "_core::engine::Engine::detect",
             "_core::py_engine::Batch::step"]
    assert core_profile.stage_of(stack) == _name("the tail calibrators")
    # the ensemble's own work is its own stage only when no detector is below it on the stack
    assert core_profile.stage_of(stack[3:]) == _name("the ensemble's sums")


def test_engine_set_up_and_python_are_counted_apart():
    teardown = ["_int_free", "core::ptr::drop_in_place<_core::py_engine::CoreEngine>", "_PyEval_EvalFrameDefault"]
    assert core_profile.stage_of(teardown) == core_profile.SETUP
    python = ["_PyObject_Malloc", "list_slice", "_PyEval_EvalFrameDefault"]
    assert core_profile.stage_of(python) == core_profile.PYTHON
    assert core_profile.stage_of(["exc_page_fault", "asm_exc_page_fault"]) == core_profile.OTHER

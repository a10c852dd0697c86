//! `detectors.ensemble.Ensemble` for the built-in detectors, event by event:
//!
//! ```text
//! for each detector d, in configuration order:
//!     raw_d = d.score(x);  p_d = calibrator_d.update(raw_d);  if d learns and p_d > protect: d.learn(x)
//!     p_d = exp(-raw_d^2 / 2) instead, for a z-score calibrated "gaussian" (the gate still reads the rank)
//! S = sum_d w_d * -ln(p_d)            (detectors with w_d = 0 left out)
//! q = final.update(S);  risk = 1 - q  ("rank")  or  -expm1(-S / sum(w))  ("evidence")
//! alert = (q <= budget and seen >= min_history) or forced;  severity from q / budget;  action from severity
//! ```
//!
//! A forced block (a fired `block` rule, or the caller's blocklist match) alerts with severity critical and
//! action block.

use serde::{Deserialize, Serialize};

use super::adaptive::WeightAdapter;
use super::calibration::TailCalibrator;
use super::coldstart::ColdStart;
use super::hst::HalfSpaceTrees;
use super::rules::Rules;
use super::supervised::LogReg;
use super::zscore::RobustZScore;
use crate::event::Schema;

/// Severity codes (`Verdict::severity`): index into this.
pub const SEVERITIES: [&str; 5] = ["none", "low", "medium", "high", "critical"];
/// Action codes (`Verdict::action`): index into this.
pub const ACTIONS: [&str; 3] = ["allow", "review", "block"];

pub const SEV_NONE: u8 = 0;
pub const SEV_LOW: u8 = 1;
pub const SEV_CRITICAL: u8 = 4;
pub const ACT_ALLOW: u8 = 0;
pub const ACT_BLOCK: u8 = 2;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Detector {
    Hst(HalfSpaceTrees),
    ZScore(RobustZScore),
    Rules(Rules),
    /// last, so snapshots written before it existed keep their variant indices
    ColdStart(ColdStart),
    /// `detectors.priors.Priors`: rules with a stated rate `p` in genuine traffic; probabilistic
    Priors(Rules),
    /// `detectors.supervised.Supervised(model="logreg")`: learns from labels only; probabilistic
    Supervised(LogReg),
}

impl Detector {
    #[inline]
    pub fn score(&mut self, schema: &Schema, row: &[f64]) -> f64 {
        match self {
            Detector::Hst(d) => d.score(schema, row),
            Detector::ZScore(d) => d.score(schema, row),
            Detector::Rules(d) => d.score(schema, row),
            Detector::ColdStart(d) => d.score(schema, row),
            Detector::Priors(d) => d.prior(schema, row),
            Detector::Supervised(d) => d.score(schema, row),
        }
    }

    #[inline]
    pub fn learn(&mut self, schema: &Schema, row: &[f64]) {
        match self {
            Detector::Hst(d) => d.learn(schema, row),
            Detector::ZScore(d) => d.learn(schema, row),
            Detector::Rules(_) | Detector::Priors(_) | Detector::Supervised(_) => {}
            Detector::ColdStart(d) => d.learn(schema, row),
        }
    }

    /// Whether it learns from the events it scores (the supervised model learns from labels only).
    pub fn learns(&self) -> bool {
        !matches!(self, Detector::Rules(_) | Detector::Priors(_) | Detector::Supervised(_))
    }

    /// Whether it learns from delayed labels (then the label store keeps each event's row for it).
    pub fn learns_labels(&self) -> bool {
        matches!(self, Detector::Supervised(_))
    }

    /// Its score is a fraud probability `P`: under `risk = "evidence"` its `p` is `1 - P`, not a tail rank.
    pub fn probabilistic(&self) -> bool {
        matches!(self, Detector::Priors(_) | Detector::Supervised(_))
    }

    fn rebuild(&mut self) {
        match self {
            Detector::Hst(d) => d.rebuild(),
            Detector::ZScore(d) => d.rebuild(),
            Detector::Rules(d) | Detector::Priors(d) => d.rebuild(),
            Detector::ColdStart(d) => d.rebuild(),
            Detector::Supervised(d) => d.rebuild(),
        }
    }
}

/// One detector's explain data for one event (see [`Ensemble::explain`]).
#[derive(Clone, Debug)]
pub enum Explain {
    /// `(feature, contribution, lo, hi)`
    Hst(Vec<(String, f64, f64, f64)>),
    /// `(feature, clipped z, median, scale, log scale)`
    ZScore(Vec<(String, f64, f64, f64, bool)>),
    /// `(signal, -ln p, count at least as extreme, window size, low tail)`
    ColdStart(Vec<(String, f64, u64, u64, bool)>),
    /// rules explain from the event's values and their configuration (no state)
    Rules,
    /// `(feature, weight x scaled value)`
    Supervised(Vec<(String, f64)>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Risk {
    Rank,
    Evidence,
}

/// The ensemble's configuration (what `Ensemble.__init__` takes, validated by the Python side).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Config {
    pub budget: f64,
    pub calibration_window: usize,
    pub protect: f64,
    pub min_history: u64,
    /// `(fraction of the budget, severity code)` for those of critical (4), high (3), medium (2) configured.
    pub severity: Vec<(f64, u8)>,
    /// Action code per severity code (index 1..=4: low, medium, high, critical).
    pub actions: [u8; 5],
    pub risk: Risk,
}

/// One event's verdict; allocate once with [`Ensemble::verdict`] and reuse.
#[derive(Clone, Debug, Default)]
pub struct Verdict {
    pub risk: f64,
    pub q: f64,
    pub evidence: f64,
    pub alert: bool,
    pub severity: u8,
    pub action: u8,
    pub forced: bool,
    /// Per detector, in configuration order.
    pub raw: Vec<f64>,
    pub p: Vec<f64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Ensemble {
    pub names: Vec<String>,
    detectors: Vec<Detector>,
    weights: Vec<f64>,
    calibrators: Vec<TailCalibrator>,
    last: TailCalibrator,
    config: Config,
    /// Severity thresholds `budget * fraction`, sorted as the reference sorts `(limit, name)`.
    thresholds: Vec<(f64, u8)>,
    total_weight: f64,
    pub seen: u64,
    /// Weights measured on the arrived labels (`[ensemble.adaptive]`), or `None`: the configured ones.
    adapter: Option<WeightAdapter>,
    /// Per detector, whether its `p` is its score on its own scale (`[ensemble.calibration] name = "gaussian"`)
    /// rather than its rank. Last, and empty (every detector ranked, as then) in a state written before it.
    #[serde(default, deserialize_with = "absent_is_empty")]
    gaussian: Vec<bool>,
}

/// A trailing field that older states do not have: reading past their end gives an empty vector.
fn absent_is_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<bool>, D::Error> {
    Ok(Vec::<bool>::deserialize(d).unwrap_or_default())
}

/// `detectors.ensemble.gaussian_p`: `exp(-z^2 / 2)` floored at `P_FLOOR`; NaN gives 1 (no evidence).
#[inline]
pub fn gaussian_p(z: f64) -> f64 {
    if z.is_nan() {
        1.0
    } else {
        (-0.5 * z * z).exp().max(P_FLOOR)
    }
}

/// `sum(w for w in weights if w) or 1.0`, in configuration order (the denominator of `risk = "evidence"`).
fn total_weight(weights: &[f64]) -> f64 {
    let mut total = 0.0;
    let mut any = false;
    for &w in weights {
        if w != 0.0 {
            total = if any { total + w } else { w };
            any = true;
        }
    }
    if any && total != 0.0 {
        total
    } else {
        1.0
    }
}

/// Floor of a probabilistic detector's `p = 1 - P` (`detectors.ensemble._P_FLOOR`).
const P_FLOOR: f64 = 1e-12;

const REFRESH_EVERY: usize = 256; // TailCalibrator's default, as the reference's ensemble uses

fn severity_name_rank(code: u8) -> &'static str {
    SEVERITIES[code as usize]
}

impl Ensemble {
    pub fn new(detectors: Vec<(String, Detector, f64)>, config: Config) -> Self {
        assert!(!detectors.is_empty(), "an ensemble needs at least one detector");
        let mut thresholds: Vec<(f64, u8)> =
            config.severity.iter().map(|&(frac, code)| (config.budget * frac, code)).collect();
        // sorted((limit, name)): by limit, then by severity name
        thresholds.sort_by(|a, b| {
            a.0.partial_cmp(&b.0).unwrap().then(severity_name_rank(a.1).cmp(severity_name_rank(b.1)))
        });
        let weights: Vec<f64> = detectors.iter().map(|d| d.2).collect();
        let n = detectors.len();
        let window = config.calibration_window;
        Ensemble {
            names: detectors.iter().map(|d| d.0.clone()).collect(),
            total_weight: total_weight(&weights),
            weights,
            detectors: detectors.into_iter().map(|d| d.1).collect(),
            calibrators: (0..n).map(|_| TailCalibrator::new(window, REFRESH_EVERY)).collect(),
            last: TailCalibrator::new(window, REFRESH_EVERY),
            thresholds,
            config,
            seen: 0,
            adapter: None,
            gaussian: Vec::new(),
        }
    }

    /// Read detector `i`'s score on its own scale (`"gaussian"`) instead of ranking it (`"rank"`, the default).
    pub fn set_gaussian(&mut self, i: usize, on: bool) {
        if self.gaussian.len() < self.detectors.len() {
            self.gaussian.resize(self.detectors.len(), false);
        }
        self.gaussian[i] = on;
    }

    /// Re-weight the detectors on the labels that arrive from now on (Python's `Ensemble(adaptive=...)`), from
    /// the configured weights.
    pub fn set_adapter(&mut self, prior_positives: u64, window: usize, refresh_every: u64, max_pending: usize,
                       precision: bool, stream: bool) {
        self.adapter = Some(WeightAdapter::new(self.weights.clone(), prior_positives, window, refresh_every,
                                               max_pending, precision, stream));
    }

    pub fn adapter(&self) -> Option<&WeightAdapter> {
        self.adapter.as_ref()
    }

    /// The weights in use, in configuration order.
    pub fn weights(&self) -> &[f64] {
        &self.weights
    }

    /// Keep the tail probabilities `p` an event was scored with until its label arrives (with an adapter).
    pub fn remember(&mut self, event_id: &str, p: &[f64]) {
        if let Some(a) = &mut self.adapter {
            a.remember(event_id, p);
        }
    }

    /// A label of `event_id` arrived: whether this ensemble scored it (then its adapter learned it, and the
    /// weights from the next event on are the adapter's).
    pub fn learn_label(&mut self, event_id: &str, y: bool) -> bool {
        let Some(a) = &mut self.adapter else {
            return false;
        };
        if !a.learn(event_id, y) {
            return false;
        }
        if self.weights != a.weights() {
            self.weights.clear();
            self.weights.extend_from_slice(a.weights());
            self.total_weight = total_weight(&self.weights);
        }
        true
    }

    /// Whether a detector learns from delayed labels (see [`Ensemble::learn_row`]).
    pub fn learns_labels(&self) -> bool {
        self.detectors.iter().any(Detector::learns_labels)
    }

    /// A delayed label `y` of an event scored with `row` (over `schema`): the label learners learn it, in
    /// configuration order (Python's `Ensemble.learn_label`).
    pub fn learn_row(&mut self, schema: &Schema, row: &[f64], y: bool) {
        for d in &mut self.detectors {
            if let Detector::Supervised(m) = d {
                m.learn_label(schema, row, y);
            }
        }
    }

    /// Replace the rules detector's rules by `rules` (a live rule pack switch), keeping its calibrator and every
    /// other detector's state; `false` (nothing changed) when the ensemble has no rules detector.
    pub fn has_rules(&self) -> bool {
        self.detectors.iter().any(|d| matches!(d, Detector::Rules(_)))
    }

    pub fn set_rules(&mut self, rules: Rules) -> bool {
        for d in self.detectors.iter_mut() {
            if let Detector::Rules(r) = d {
                *r = rules;
                r.rebuild();
                return true;
            }
        }
        false
    }

    /// A verdict buffer sized for this ensemble.
    pub fn verdict(&self) -> Verdict {
        Verdict { raw: vec![0.0; self.detectors.len()], p: vec![0.0; self.detectors.len()], ..Default::default() }
    }

    pub fn detector(&self, i: usize) -> &Detector {
        &self.detectors[i]
    }

    /// Score, calibrate, decide and learn one event (`row` over `schema`; `force_block`: the caller's blocklist
    /// match). Allocation-free in the steady state.
    pub fn process(&mut self, schema: &Schema, row: &[f64], force_block: bool, out: &mut Verdict) {
        let protect = self.config.protect;
        let mut evidence = 0.0;
        let mut forced = force_block;
        for i in 0..self.detectors.len() {
            let det = &mut self.detectors[i];
            let raw = det.score(schema, row);
            let p = if self.config.risk == Risk::Evidence && det.probabilistic() {
                (1.0 - raw).max(P_FLOOR)
            } else {
                self.calibrators[i].update(raw)
            };
            if det.learns() {
                if p > protect {
                    det.learn(schema, row);
                }
            } else if let Detector::Rules(r) = det {
                forced |= r.blocked();
            }
            let p = if self.gaussian.get(i).copied().unwrap_or(false) { gaussian_p(raw) } else { p };
            out.raw[i] = raw;
            out.p[i] = p;
            let w = self.weights[i];
            if w != 0.0 {
                evidence += w * -p.ln();
            }
        }
        let q = self.last.update(evidence);
        out.evidence = evidence;
        out.q = q;
        out.risk = match self.config.risk {
            Risk::Rank => 1.0 - q,
            Risk::Evidence => -(-evidence / self.total_weight).exp_m1(),
        };
        let alert = q <= self.config.budget && self.seen >= self.config.min_history;
        out.alert = alert;
        out.severity = SEV_NONE;
        out.action = ACT_ALLOW;
        if alert {
            let mut sev = SEV_LOW;
            for &(limit, code) in &self.thresholds {
                if q <= limit {
                    sev = code;
                    break;
                }
            }
            out.severity = sev;
            out.action = self.config.actions[sev as usize];
        }
        out.forced = forced;
        if forced {
            out.alert = true;
            out.severity = SEV_CRITICAL;
            out.action = ACT_BLOCK;
        }
        self.seen += 1;
    }

    /// What each detector's `explain` / `describe` read for an alert's reasons, against the state as it stands
    /// (the reference explains after the stretch): per detector, in configuration order.
    pub fn explain(&mut self, schema: &Schema, row: &[f64], top: usize) -> Vec<Explain> {
        self.detectors
            .iter_mut()
            .map(|d| match d {
                Detector::Hst(h) => Explain::Hst(h.explain(schema, row, top)),
                Detector::ZScore(z) => Explain::ZScore(z.explain(schema, row, top)),
                Detector::Rules(_) | Detector::Priors(_) => Explain::Rules,
                Detector::ColdStart(c) => Explain::ColdStart(c.explain(schema, row, top)),
                Detector::Supervised(m) => Explain::Supervised(m.explain(schema, row, top)),
            })
            .collect()
    }

    pub fn snapshot(&self) -> Vec<u8> {
        bincode::serialize(self).expect("the ensemble serialises")
    }

    pub fn restore(bytes: &[u8]) -> Result<Self, String> {
        let mut e: Ensemble = bincode::deserialize(bytes).map_err(|e| format!("detector state does not load: {e}"))?;
        for d in &mut e.detectors {
            d.rebuild();
        }
        for c in e.calibrators.iter_mut().chain(std::iter::once(&mut e.last)) {
            c.reindex();
        }
        Ok(e)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn config() -> Config {
        Config {
            budget: 0.01,
            calibration_window: 500,
            protect: 0.01,
            min_history: 50,
            severity: vec![(0.05, 4), (0.2, 3), (0.5, 2)],
            actions: [0, 1, 1, 1, 2],
            risk: Risk::Rank,
        }
    }

    pub(crate) fn stack() -> Ensemble {
        let rules = Rules::new(
            vec![super::super::rules::Rule {
                name: "big".into(),
                clauses: vec![super::super::rules::Clause {
                    feature: "a".into(),
                    op: super::super::rules::Op::Gt,
                    value: 3.0,
                }],
                score: 0.9,
                block: false,
            }],
            true,
        );
        Ensemble::new(
            vec![
                ("hst".into(), Detector::Hst(HalfSpaceTrees::new(4, 8, 50, 42, None)), 1.0),
                ("zscore".into(), Detector::ZScore(RobustZScore::new(None, 128, 64, 5.0, None, 16, true, 0.0)), 1.0),
                ("rules".into(), Detector::Rules(rules), 2.0),
            ],
            config(),
        )
    }

    /// The two columns `row` fills.
    fn schema() -> Schema {
        let mut schema = Schema::default();
        schema.column("a");
        schema.column("b");
        schema
    }

    /// `stack()` after the events `row(0..n)`, with its verdict buffer.
    fn warmed(schema: &Schema, n: usize) -> (Ensemble, Verdict) {
        let mut a = stack();
        let mut out = a.verdict();
        for i in 0..n {
            a.process(schema, &row(i), false, &mut out);
        }
        (a, out)
    }

    fn row(i: usize) -> Vec<f64> {
        let x = ((i * 7919) % 1000) as f64 / 250.0;
        let y = ((i * 104729) % 777) as f64 / 100.0;
        vec![x, if i.is_multiple_of(13) { f64::NAN } else { y }]
    }

    #[test]
    fn a_gaussian_z_score_reads_its_scale_and_its_gate_the_rank() {
        let schema = schema();
        let (mut ranked, mut scaled) = (stack(), stack());
        scaled.set_gaussian(1, true);
        let (mut out_r, mut out_s) = (ranked.verdict(), scaled.verdict());
        let mut differ = 0;
        for i in 0..3000 {
            ranked.process(&schema, &row(i), false, &mut out_r);
            scaled.process(&schema, &row(i), false, &mut out_s);
            // the z-score learned the same events (its gate reads the rank either way), so it scores the same
            assert_eq!(out_r.raw, out_s.raw);
            assert_eq!((out_r.p[0], out_r.p[2]), (out_s.p[0], out_s.p[2]));
            let z = out_s.raw[1];
            assert_eq!(out_s.p[1].to_bits(), (-0.5 * z * z).exp().max(P_FLOOR).to_bits());
            differ += (out_r.p[1] != out_s.p[1]) as usize;
        }
        assert!(differ > 2000);
        assert_eq!(gaussian_p(f64::NAN), 1.0);
        assert_eq!(gaussian_p(100.0), P_FLOOR);
        // the option survives a snapshot
        let mut back = Ensemble::restore(&scaled.snapshot()).unwrap();
        let mut out_b = back.verdict();
        scaled.process(&schema, &row(3000), false, &mut out_s);
        back.process(&schema, &row(3000), false, &mut out_b);
        assert_eq!(out_s.p, out_b.p);
    }

    #[test]
    fn a_state_written_before_the_calibration_option_loads_with_every_detector_ranked() {
        let schema = schema();
        let (mut a, mut out) = warmed(&schema, 700);
        let mut bytes = a.snapshot();
        // the trailing empty `gaussian` vector is its length, eight zero bytes; without them, the format of before
        assert_eq!(bytes.split_off(bytes.len() - 8), vec![0u8; 8]);
        let mut old = Ensemble::restore(&bytes).unwrap();
        assert!(old.gaussian.is_empty());
        let mut out_old = old.verdict();
        for i in 700..1500 {
            a.process(&schema, &row(i), false, &mut out);
            old.process(&schema, &row(i), false, &mut out_old);
            assert_eq!(out.p, out_old.p);
        }
        assert!(Ensemble::restore(&old.snapshot()).unwrap().gaussian.is_empty());
    }

    #[test]
    fn snapshot_restore_continues_exactly() {
        let schema = schema();
        let (mut a, mut out) = warmed(&schema, 1234);
        let mut b = Ensemble::restore(&a.snapshot()).unwrap();
        let mut out_b = b.verdict();
        let mut alerts = 0;
        for i in 1234..3000 {
            a.process(&schema, &row(i), false, &mut out);
            b.process(&schema, &row(i), false, &mut out_b);
            assert_eq!(out.risk.to_bits(), out_b.risk.to_bits());
            assert_eq!(out.raw, out_b.raw);
            assert_eq!(out.p, out_b.p);
            assert_eq!((out.alert, out.severity, out.action), (out_b.alert, out_b.severity, out_b.action));
            alerts += out.alert as usize;
        }
        assert!(alerts > 0);
        assert!(out.raw[0] > 0.0);
    }

    #[test]
    fn explain_reads_the_state_without_changing_it() {
        let schema = schema();
        let (mut a, _) = warmed(&schema, 1500);
        let before = a.snapshot();
        let ex = a.explain(&schema, &[9.0, 40.0], 3);
        assert_eq!(a.snapshot(), before);
        assert_eq!(ex.len(), 3);
        match (&ex[0], &ex[1], &ex[2]) {
            (Explain::Hst(h), Explain::ZScore(z), Explain::Rules) => {
                assert!(!h.is_empty() && h.len() <= 3 && h.windows(2).all(|w| w[0].1 >= w[1].1));
                assert_eq!(z.len(), 2);
                assert!(z.iter().all(|t| t.1 > 0.0 && t.1 <= 5.0));
            }
            other => panic!("unexpected explain data {other:?}"),
        }
    }

    #[test]
    fn forced_block_alerts_critical() {
        let schema = Schema::default();
        let mut a = stack();
        let mut out = a.verdict();
        a.process(&schema, &[], true, &mut out);
        assert!(out.alert && out.forced);
        assert_eq!((out.severity, out.action), (SEV_CRITICAL, ACT_BLOCK));
    }
}

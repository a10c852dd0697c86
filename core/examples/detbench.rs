//! Times the detection stack on a feature matrix dumped from Python (names one per line; rows of f64):
//! `cargo run --release --example detbench -- names.txt matrix.f64 [hst|zscore|rules|all] [repeat]`.
use _core::detectors::ensemble::{Config, Detector, Ensemble, Risk};
use _core::detectors::hst::HalfSpaceTrees;
use _core::detectors::rules::Rules;
use _core::detectors::zscore::RobustZScore;
use _core::event::Schema;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let names: Vec<String> = std::fs::read_to_string(&args[1]).unwrap().lines().map(String::from).collect();
    let bytes = std::fs::read(&args[2]).unwrap();
    let m: Vec<f64> = bytes.chunks(8).map(|b| f64::from_le_bytes(b.try_into().unwrap())).collect();
    let which = args.get(3).map(String::as_str).unwrap_or("all");
    let repeat: usize = args.get(4).map(|s| s.parse().unwrap()).unwrap_or(3);
    let k = names.len();
    let mut schema = Schema::default();
    for n in &names {
        schema.column(n);
    }
    let mut dets = Vec::new();
    if which == "hst" || which == "all" {
        dets.push(("hst".to_string(), Detector::Hst(HalfSpaceTrees::new(8, 15, 250, 42, None)), 1.0));
    }
    if which == "zscore" || which == "all" {
        dets.push(("zscore".to_string(), Detector::ZScore(RobustZScore::new(None, 2048, 1024, 5.0, None, 64, true, 0.0)), 1.0));
    }
    if which == "rules" || which == "all" {
        dets.push(("rules".to_string(), Detector::Rules(Rules::new(vec![], true)), 2.0));
    }
    let config = Config {
        budget: 0.005,
        calibration_window: 20000,
        protect: 0.01,
        min_history: 500,
        severity: vec![(0.05, 4), (0.2, 3), (0.5, 2)],
        actions: [0, 1, 1, 1, 2],
        risk: Risk::Rank,
    };
    let mut ens = Ensemble::new(dets, config);
    let mut out = ens.verdict();
    let n = m.len() / k;
    let t0 = std::time::Instant::now();
    let mut alerts = 0;
    for _ in 0..repeat {
        for i in 0..n {
            ens.process(&schema, &m[i * k..(i + 1) * k], false, &mut out);
            alerts += out.alert as usize;
        }
    }
    let dt = t0.elapsed().as_secs_f64();
    println!("{which}: {:.3} us/event over {} events ({alerts} alerts)", dt / (n * repeat) as f64 * 1e6, n * repeat);
}

//! `detectors.rules.Rules` without blocklists: threshold rules over features. A rule fires when all its clauses
//! hold; a clause on an absent feature is false. The raw score is the largest score of the rules that fire, or
//! their sum (`combine = "sum"`, in configuration order), 0 when none does; a fired rule with action `block`
//! forces a block. The `when` texts are parsed by the Python reference (`detectors.rules.parse_when`), so the
//! clause values are its floats. Blocklists match entity ids, which rows do not carry: the caller matches them
//! (`Rules.blocklist_match`) and passes the result as a forced block.

use serde::{Deserialize, Serialize};

use super::{resolve, value};
use crate::event::Schema;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
    Ne,
}

impl Op {
    pub fn parse(s: &str) -> Option<Op> {
        Some(match s {
            ">" => Op::Gt,
            ">=" => Op::Ge,
            "<" => Op::Lt,
            "<=" => Op::Le,
            "==" => Op::Eq,
            "!=" => Op::Ne,
            _ => return None,
        })
    }

    #[inline]
    fn holds(self, v: f64, c: f64) -> bool {
        match self {
            Op::Gt => v > c,
            Op::Ge => v >= c,
            Op::Lt => v < c,
            Op::Le => v <= c,
            Op::Eq => v == c,
            Op::Ne => v != c,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Clause {
    pub feature: String,
    pub op: Op,
    pub value: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Rule {
    pub name: String,
    pub clauses: Vec<Clause>,
    pub score: f64,
    pub block: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Rules {
    pub rules: Vec<Rule>,
    pub sum: bool,
    /// Column of every clause, rule after rule (flattened).
    #[serde(skip)]
    cols: Vec<Option<usize>>,
    #[serde(skip)]
    bound: usize,
    #[serde(skip)]
    blocked: bool,
}

impl Rules {
    pub fn new(rules: Vec<Rule>, sum: bool) -> Self {
        Rules { rules, sum, cols: Vec::new(), bound: usize::MAX, blocked: false }
    }

    pub fn rebuild(&mut self) {
        self.bound = usize::MAX;
    }

    /// Whether a rule can force a block.
    pub fn can_block(&self) -> bool {
        self.rules.iter().any(|r| r.block)
    }

    fn bind(&mut self, schema: &Schema) {
        if self.bound != schema.len() {
            let names: Vec<String> =
                self.rules.iter().flat_map(|r| r.clauses.iter().map(|c| c.feature.clone())).collect();
            resolve(schema, &names, &mut self.cols);
            self.bound = schema.len();
        }
    }

    /// The raw score; also records whether a `block` rule fired ([`blocked`](Self::blocked)).
    pub fn score(&mut self, schema: &Schema, row: &[f64]) -> f64 {
        self.bind(schema);
        let mut out = 0.0;
        let mut blocked = false;
        let mut at = 0;
        for r in &self.rules {
            let n = r.clauses.len();
            let scoring = r.score > 0.0 && (self.sum || r.score > out);
            if scoring || (r.block && !blocked) {
                let fires = r.clauses.iter().zip(&self.cols[at..at + n]).all(|(c, &col)| {
                    let v = value(row, col);
                    !v.is_nan() && c.op.holds(v, c.value)
                });
                if fires {
                    if scoring {
                        out = if self.sum { out + r.score } else { r.score };
                    }
                    blocked |= r.block;
                }
            }
            at += n;
        }
        self.blocked = blocked;
        out
    }

    /// `detectors.priors.Priors`: `1 - prod(p)` over the rules that fire, in configuration order, each rule's
    /// `score` holding its stated rate `p` in genuine traffic (0 when none fires).
    pub fn prior(&mut self, schema: &Schema, row: &[f64]) -> f64 {
        self.bind(schema);
        let mut prod = 1.0;
        let mut at = 0;
        for r in &self.rules {
            let n = r.clauses.len();
            let fires = r.clauses.iter().zip(&self.cols[at..at + n]).all(|(c, &col)| {
                let v = value(row, col);
                !v.is_nan() && c.op.holds(v, c.value)
            });
            if fires {
                prod *= r.score;
            }
            at += n;
        }
        1.0 - prod
    }

    /// Whether a `block` rule fired on the last scored row.
    pub fn blocked(&self) -> bool {
        self.blocked
    }
}

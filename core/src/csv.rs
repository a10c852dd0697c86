//! CSV rows -> [`EventRef`], exactly as `stream.sources.FileSource` decides with a `ColumnMapping`.
//!
//! The Python path is `csv.reader` (the excel dialect, not strict, over text decoded as UTF-8 with
//! `errors="replace"` and `newline=""`), the column-count check of `FileSource._csv`, `ColumnMapping.compile`'s
//! converter (or `apply`, which gives the same object) and `stream.events.from_dict`. Here: [`next_line`] splits
//! the data into lines as `bytes.splitlines` does (`\r\n`, `\r` or `\n`: what `newline=""` reads as lines),
//! [`parse_line`] runs `_csv.c`'s state machine over one line, [`CsvMapping::row`] builds the mapped object's
//! values and hands them to the JSON decoder's `validate` (the checks and reasons of `from_dict`).
//!
//! Like `decode.rs`, it decides only where it reproduces Python exactly, and leaves the rest to Python
//! ([`Refused::Fallback`]): a line that is not valid UTF-8 (Python's replacement characters), a quoted field
//! running over the end of its line (a record of several lines), a field of [`FIELD_LIMIT`] bytes or more
//! (`csv.Error`), non-ASCII text in a numeric or boolean field (Python's `float()` and `strip()` take Unicode
//! digits and spaces), a number that is not finite, a listed (`--features a,b`) feature cell that is not a
//! plain number, and whatever `validate` leaves to Python.

use std::borrow::Cow;

use crate::decode::{validate, Invalid, JStr, Record, Refused, Val, F, N_FIELDS};
use crate::event::EventRef;

/// `csv.field_size_limit()`'s default: a longer field makes Python's reader raise; such lines go to Python.
pub const FIELD_LIMIT: usize = 131072;

const FB: Refused = Refused::Fallback;
const NONE: Option<Val<'static>> = None;

/// The line of `data` starting at `pos`: `(end of its text, start of the next line)`. Lines end at `\r\n`,
/// `\r` or `\n`, as `bytes.splitlines()` and a text file opened with `newline=""` split them.
#[inline]
pub fn next_line(data: &[u8], pos: usize) -> (usize, usize) {
    let rest = &data[pos..];
    match memchr::memchr2(b'\n', b'\r', rest) {
        None => (data.len(), data.len()),
        Some(i) => {
            let e = pos + i;
            if data[e] == b'\r' && data.get(e + 1) == Some(&b'\n') {
                (e, e + 2)
            } else {
                (e, e + 1)
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum St {
    StartField,
    InField,
    InQuoted,
    QuoteInQuoted,
}

/// The cells `csv.reader` gives for one line (its text, without the line break), into `cells`; `Err(Fallback)`
/// where Python must decide (see the module documentation). An empty line is a row of no cells, as in Python.
pub fn parse_line<'a>(line: &'a [u8], cells: &mut Vec<Cow<'a, str>>) -> Result<(), Refused> {
    cells.clear();
    let s = std::str::from_utf8(line).map_err(|_| FB)?;
    if s.is_empty() {
        return Ok(());
    }
    let b = s.as_bytes();
    if !b.contains(&b'"') {
        // no quote: the state machine below only splits at commas (the common case, done with memchr; a byte loop
        // that gives up at the first quote measured 14 % slower on the ULB file)
        for run in s.split(',') {
            if run.len() >= FIELD_LIMIT {
                return Err(FB);
            }
            cells.push(Cow::Borrowed(run));
        }
        return Ok(());
    }
    let mut st = St::StartField;
    let mut start = 0usize; // where the field's current run of text starts
    let mut qend = 0usize; // where a quoted run ended (the closing quote)
    let mut prefix: Option<String> = None; // the field's text before `start`, when it is not one run
    fn push<'a>(cells: &mut Vec<Cow<'a, str>>, prefix: &mut Option<String>, run: &'a str) -> Result<(), Refused> {
        let cell = match prefix.take() {
            None => Cow::Borrowed(run),
            Some(mut p) => {
                p.push_str(run);
                Cow::Owned(p)
            }
        };
        if cell.len() >= FIELD_LIMIT {
            return Err(FB);
        }
        cells.push(cell);
        Ok(())
    }
    for (i, &c) in b.iter().enumerate() {
        match st {
            St::StartField => {
                if c == b'"' {
                    st = St::InQuoted;
                    start = i + 1;
                } else if c == b',' {
                    push(cells, &mut prefix, "")?;
                } else {
                    st = St::InField;
                    start = i;
                }
            }
            St::InField => {
                if c == b',' {
                    push(cells, &mut prefix, &s[start..i])?;
                    st = St::StartField;
                }
            }
            St::InQuoted => {
                if c == b'"' {
                    st = St::QuoteInQuoted;
                    qend = i;
                }
            }
            St::QuoteInQuoted => {
                if c == b'"' {
                    // a doubled quote: one quote of text (the first of the two ends the run)
                    prefix.get_or_insert_with(String::new).push_str(&s[start..i]);
                    start = i + 1;
                    st = St::InQuoted;
                } else if c == b',' {
                    push(cells, &mut prefix, &s[start..qend])?;
                    st = St::StartField;
                } else {
                    // not strict: text after the closing quote is kept, unquoted
                    prefix.get_or_insert_with(String::new).push_str(&s[start..qend]);
                    start = i;
                    st = St::InField;
                }
            }
        }
    }
    match st {
        St::StartField => push(cells, &mut prefix, ""),
        St::InField => push(cells, &mut prefix, &s[start..]),
        St::QuoteInQuoted => push(cells, &mut prefix, &s[start..qend]),
        St::InQuoted => Err(FB), // the record goes on over the next line
    }
}

/// Python's `str.isspace()` for an ASCII character (what `float()` and `str.strip()` strip).
#[inline]
fn py_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c | 0x1c..=0x1f)
}

fn py_strip(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_ascii() && py_space(c as u8))
}

/// Powers of ten that are exact doubles.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19,
    1e20, 1e21, 1e22,
];

/// The common case of [`py_float`] without building a cleaned copy: `[+-]digits[.digits]` (no whitespace,
/// underscore or exponent; a digit on at least one side of the point) of at most 19 digits, leading zeros
/// included, whose digits read as an integer `m` are at most 2**53. Then the `k <= 19` digits after the point
/// make `10**k` an exact double as well (exact up to 10**22), and `m / 10**k` is the correctly rounded value
/// (Clinger's fast path, the one `str::parse` takes too). `None`: not that case.
#[inline]
fn plain_decimal(t: &[u8]) -> Option<f64> {
    let (neg, mut i) = match t.first()? {
        b'-' => (true, 1),
        b'+' => (false, 1),
        _ => (false, 0),
    };
    let mut m: u64 = 0;
    let mut digits = 0usize;
    let mut after: Option<usize> = None; // digits after the point, once one was seen
    while i < t.len() {
        let c = t[i];
        if c.is_ascii_digit() {
            if digits == 19 {
                return None; // 19 digits cannot overflow a u64; more take the general path
            }
            m = m * 10 + (c - b'0') as u64;
            digits += 1;
            if let Some(k) = after.as_mut() {
                *k += 1;
            }
        } else if c == b'.' && after.is_none() {
            after = Some(0);
        } else {
            return None;
        }
        i += 1;
    }
    let k = after.unwrap_or(0); // at most `digits`, so at most 19: POW10[k] is in range and exact
    if digits == 0 || m > 1 << 53 {
        return None;
    }
    let x = m as f64 / POW10[k];
    Some(if neg { -x } else { x })
}

/// Python's `float(text)` for ASCII `text`: `Some(value)`, or `None` where it raises `ValueError`. `float()`
/// strips only ASCII whitespace (`" \t\n\r\x0b\x0c"`), not the separators `\x1c`-`\x1f` that `str.strip()` takes.
pub fn py_float(text: &str) -> Option<f64> {
    if let Some(x) = plain_decimal(text.as_bytes()) {
        return Some(x);
    }
    let t = text.trim_matches(|c: char| matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c')).as_bytes();
    let mut i = 0;
    if matches!(t.first(), Some(b'+' | b'-')) {
        i = 1;
    }
    let body = &t[i..];
    let neg = i == 1 && t[0] == b'-';
    let special = |w: &[u8]| body.eq_ignore_ascii_case(w);
    if special(b"inf") || special(b"infinity") {
        return Some(if neg { f64::NEG_INFINITY } else { f64::INFINITY });
    }
    if special(b"nan") {
        return Some(f64::NAN);
    }
    // digitpart: digit (["_"] digit)*
    fn digits(b: &[u8], mut i: usize, out: &mut String) -> (usize, bool) {
        let start = i;
        while i < b.len() {
            if b[i].is_ascii_digit() {
                out.push(b[i] as char);
                i += 1;
            } else if b[i] == b'_' && i > start && i + 1 < b.len() && b[i + 1].is_ascii_digit()
                && b[i - 1].is_ascii_digit() {
                i += 1;
            } else {
                break;
            }
        }
        (i, i > start)
    }
    let mut clean = String::with_capacity(t.len());
    if neg {
        clean.push('-');
    }
    let (mut j, int_part) = digits(body, 0, &mut clean);
    let mut frac_part = false;
    if j < body.len() && body[j] == b'.' {
        clean.push('.');
        let (k, f) = digits(body, j + 1, &mut clean);
        j = k;
        frac_part = f;
    }
    if !int_part && !frac_part {
        return None;
    }
    if j < body.len() && (body[j] == b'e' || body[j] == b'E') {
        clean.push('e');
        let mut k = j + 1;
        if k < body.len() && (body[k] == b'+' || body[k] == b'-') {
            clean.push(body[k] as char);
            k += 1;
        }
        let (k2, e) = digits(body, k, &mut clean);
        if !e {
            return None;
        }
        j = k2;
    }
    if j != body.len() {
        return None;
    }
    clean.parse::<f64>().ok() // correctly rounded, as Python's
}

#[inline]
fn jstr(s: Cow<'_, str>) -> JStr<'_> {
    let ascii = s.is_ascii();
    let ctrl = s.bytes().any(|c| c < 0x20 || c == 0x7f);
    JStr { s, ascii, ctrl }
}

fn is_numeric(f: F) -> bool {
    matches!(f, F::Amount | F::Lat | F::Lon | F::Items | F::Label | F::AccountCreatedTs | F::Ts)
}

/// `stream.sources._coerce(name, text)`: numeric fields become numbers when `float()` takes them, `success`
/// a boolean when it reads as one, anything else stays text.
fn coerce<'a>(f: F, text: Cow<'a, str>) -> Result<Val<'a>, Refused> {
    if is_numeric(f) {
        if !text.is_ascii() {
            return Err(FB);
        }
        return Ok(match py_float(&text) {
            None => Val::Str(jstr(text)),
            Some(x) if !x.is_finite() => return Err(FB), // from_dict's "must be finite": left to Python
            Some(x) if matches!(f, F::Items | F::Label) && x.fract() == 0.0 => {
                if x.abs() >= 1.7e38 {
                    return Err(FB);
                }
                Val::Int(x as i128)
            }
            Some(x) => Val::Float(x),
        });
    }
    if f == F::Success {
        if !text.is_ascii() {
            return Err(FB);
        }
        let low = py_strip(&text).to_ascii_lowercase();
        match low.as_str() {
            "1" | "true" | "t" | "yes" | "y" => return Ok(Val::Bool(true)),
            "0" | "false" | "f" | "no" | "n" => return Ok(Val::Bool(false)),
            _ => {}
        }
    }
    Ok(Val::Str(jstr(text)))
}

fn owned(v: Val<'_>) -> Val<'static> {
    match v {
        Val::Str(j) => Val::Str(JStr { s: Cow::Owned(j.s.into_owned()), ascii: j.ascii, ctrl: j.ctrl }),
        Val::Bool(b) => Val::Bool(b),
        Val::Int(i) => Val::Int(i),
        Val::Float(x) => Val::Float(x),
        Val::List(a, b) => Val::List(a, b),
        Val::Dict(a, b) => Val::Dict(a, b),
    }
}

/// A `ColumnMapping` compiled for one CSV header (`ColumnMapping.compile`).
pub struct CsvMapping {
    pub width: usize,
    /// The file's name: a row's default event id is `"{name}:{line number}"`.
    pub name: String,
    mapped: Vec<(F, usize)>,
    constants: Vec<(F, Val<'static>)>,
    schema: Vec<(F, usize)>,
    /// Feature columns (name, index), without repeats.
    features: Vec<(String, usize)>,
    /// `features` lists columns (not "auto"): a cell that is not a number is refused, not skipped.
    listed: bool,
    kind: Option<Val<'static>>,
    ts_origin: f64,
    ts_ms: bool,
}

/// What the Python side hands [`CsvMapping::new`]: the `ColumnMapping`'s parts and the header.
pub struct MappingSpec {
    pub header: Vec<String>,
    pub fields: Vec<(String, String)>,
    pub constants: Vec<(String, String)>,
    pub kind: Option<String>,
    /// `None`: "auto"; `Some(None)`: "none"; `Some(Some(names))`: the listed columns.
    pub features: Option<Option<Vec<String>>>,
    pub drop: Vec<String>,
    pub ts_origin: f64,
    pub ts_ms: bool,
    /// `stream.sources._ALL_FIELDS`.
    pub all_fields: Vec<String>,
    pub name: String,
}

impl CsvMapping {
    /// `Err(why)`: a mapping this module does not compile (the caller decodes the file in Python).
    pub fn new(spec: MappingSpec) -> Result<Self, String> {
        let field_of = |n: &str| F::of(n).ok_or_else(|| format!("{n:?} is not a field the core decodes"));
        // name -> last index, in order of first appearance (dict(zip(header, row)))
        let mut pos: Vec<(String, usize)> = Vec::new();
        for (i, h) in spec.header.iter().enumerate() {
            match pos.iter_mut().find(|(n, _)| n == h) {
                Some(p) => p.1 = i,
                None => pos.push((h.clone(), i)),
            }
        }
        let index = |c: &str| pos.iter().find(|(n, _)| n == c).map(|p| p.1);
        let used: Vec<&str> = spec.fields.iter().map(|(_, c)| c.as_str()).collect();
        let is_all = |n: &str| spec.all_fields.iter().any(|a| a == n);
        let mut mapped = Vec::new();
        for (name, column) in &spec.fields {
            if let Some(i) = index(column) {
                mapped.push((field_of(name)?, i));
            }
        }
        let mut constants: Vec<(F, Val<'static>)> = Vec::new();
        for (name, value) in &spec.constants {
            let f = field_of(name)?;
            let v = coerce(f, Cow::Owned(value.clone())).map_err(|_| format!("--set {name}: left to Python"))?;
            match constants.iter_mut().find(|(g, _)| *g == f) {
                Some(c) => c.1 = owned(v),
                None => constants.push((f, owned(v))),
            }
        }
        let mut schema = Vec::new();
        for (name, i) in &pos {
            if is_all(name) && !used.contains(&name.as_str()) {
                schema.push((field_of(name)?, *i));
            }
        }
        let (names, listed): (Vec<String>, bool) = match &spec.features {
            None => (pos.iter().map(|p| p.0.clone()).collect(), false),
            Some(None) => (Vec::new(), false),
            Some(Some(list)) => (list.clone(), true),
        };
        let mut features: Vec<(String, usize)> = Vec::new();
        for c in names {
            if used.contains(&c.as_str()) || spec.drop.contains(&c) || is_all(&c) {
                continue;
            }
            let Some(i) = index(&c) else {
                return Err(format!("feature column {c:?} is not in the header (Python's apply decides)"));
            };
            if !features.iter().any(|(n, _)| *n == c) {
                features.push((c, i));
            }
        }
        let kind = spec.kind.map(|k| Val::Str(jstr(Cow::Owned(k))));
        Ok(CsvMapping {
            width: spec.header.len(),
            name: spec.name,
            mapped,
            constants,
            schema,
            features,
            listed,
            kind,
            ts_origin: spec.ts_origin,
            ts_ms: spec.ts_ms,
        })
    }

    /// The event of one row (its cells, its line number), or why Python refuses it, or `Fallback`.
    pub fn row<'a>(&'a self, cells: &mut Vec<Cow<'a, str>>, line_no: usize) -> Result<EventRef<'a>, Refused> {
        if cells.len() != self.width {
            return Err(Refused::Invalid(Invalid::new(
                "$",
                format!("has {} columns, the header has {}", cells.len(), self.width),
            )));
        }
        let mut slots: [Option<Val<'a>>; N_FIELDS] = [NONE; N_FIELDS];
        for &(f, i) in &self.mapped {
            if !cells[i].is_empty() {
                slots[f as usize] = Some(coerce(f, cells[i].clone())?);
            }
        }
        for (f, v) in &self.constants {
            let slot = &mut slots[*f as usize];
            if slot.is_none() {
                *slot = Some(v.clone());
            }
        }
        for &(f, i) in &self.schema {
            if slots[f as usize].is_none() && !cells[i].is_empty() {
                slots[f as usize] = Some(coerce(f, cells[i].clone())?);
            }
        }
        // ColumnMapping._complete
        if let Some(k) = &self.kind {
            if slots[F::Type as usize].is_none() {
                slots[F::Type as usize] = Some(k.clone());
            }
        }
        if let Some(Val::Float(ts)) = slots[F::Ts as usize] {
            let ms = if self.ts_ms { ts } else { (self.ts_origin + ts) * 1000.0 };
            if !ms.is_finite() {
                return Err(FB);
            }
            slots[F::Ts as usize] = Some(Val::Float(ms));
        }
        if slots[F::EventId as usize].is_none() {
            let id = format!("{}:{}", self.name, line_no);
            slots[F::EventId as usize] = Some(Val::Str(jstr(Cow::Owned(id))));
        }
        if matches!(&slots[F::Type as usize], Some(Val::Str(t)) if t.s == "order") {
            if slots[F::OrderId as usize].is_none() {
                slots[F::OrderId as usize] = slots[F::EventId as usize].clone();
            }
            if slots[F::Currency as usize].is_none() {
                slots[F::Currency as usize] = Some(Val::Str(jstr(Cow::Borrowed("XXX"))));
            }
        }
        let mut entries = Vec::new();
        if slots[F::Features as usize].is_none() && !self.features.is_empty() {
            entries.reserve(self.features.len());
            for (name, i) in &self.features {
                let cell = &cells[*i];
                if cell.is_empty() {
                    continue; // float("") fails: apply() skips an empty cell, listed or not
                }
                if !cell.is_ascii() {
                    return Err(FB);
                }
                match py_float(cell) {
                    Some(x) if x.is_finite() => {
                        // the name borrowed from the mapping: no allocation per feature and row
                        entries.push((jstr(Cow::Borrowed(name.as_str())), Some(Val::Float(x))))
                    }
                    _ if self.listed => return Err(FB), // apply() refuses it, with Python's repr
                    _ => {} // "auto": apply() passes over a cell that is not a finite number
                }
            }
            if !entries.is_empty() {
                slots[F::Features as usize] = Some(Val::Dict(0, 0));
            }
        }
        validate(Record { src: "", slots, features: entries })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cells(line: &str) -> Result<Vec<String>, Refused> {
        let mut v = Vec::new();
        parse_line(line.as_bytes(), &mut v)?;
        Ok(v.into_iter().map(|c| c.into_owned()).collect())
    }

    #[test]
    fn the_plain_decimal_fast_path_is_the_correctly_rounded_value_or_declines() {
        // the fast path's cases, bit for bit against the standard library's correctly rounded parse
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut taken = 0;
        for n in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let digits = 1 + (x % 20) as usize;
            let mut t = String::new();
            match (x >> 8) % 3 {
                0 => t.push('-'),
                1 => t.push('+'),
                _ => {}
            }
            let point = ((x >> 16) % (digits as u64 + 2)) as usize;
            let mut y = x;
            for d in 0..digits {
                if d == point {
                    t.push('.');
                }
                t.push((b'0' + (y % 10) as u8) as char);
                y = y / 10 ^ (n as u64).wrapping_mul(0x9e37_79b9);
            }
            if point == digits {
                t.push('.');
            }
            let want: f64 = t.parse().unwrap();
            match plain_decimal(t.as_bytes()) {
                Some(got) => {
                    assert_eq!(got.to_bits(), want.to_bits(), "{t}");
                    taken += 1;
                }
                None => assert!(digits > 15 || t.len() > 22, "declined {t}"),
            }
            assert_eq!(py_float(&t).map(f64::to_bits), Some(want.to_bits()), "{t}");
        }
        assert!(taken > 100_000, "the fast path took {taken}");
        for t in ["", "-", "+", ".", "-.", "1.2.3", "1e5", "1_0", " 1", "1 ", "inf", "nan", "0x1", "9007199254740993",
                  "1.00000000000000000000000"] {
            assert_eq!(plain_decimal(t.as_bytes()), None, "{t}");
        }
        assert_eq!(plain_decimal(b"-0").map(f64::to_bits), Some((-0.0f64).to_bits()));
        assert_eq!(plain_decimal(b"9007199254740992"), Some(9007199254740992.0));
        assert_eq!(plain_decimal(b".5"), Some(0.5));
        assert_eq!(plain_decimal(b"5."), Some(5.0));
        assert_eq!(plain_decimal(b"-1.3598071336738"), Some(-1.3598071336738));
        for t in ["-.5", "+5.", "00012.5000", "-0.000", "+0", "0.000000000000000001", "900719925474099.2"] {
            assert_eq!(plain_decimal(t.as_bytes()).map(f64::to_bits), Some(t.parse::<f64>().unwrap().to_bits()), "{t}");
        }
        // 19 digits whose value passes 2**53, and 20 digits: declined, and py_float still right
        for t in ["0.1234567890123456789", "1.2345678901234567890"] {
            assert_eq!(plain_decimal(t.as_bytes()), None, "{t}");
            assert_eq!(py_float(t).map(f64::to_bits), Some(t.parse::<f64>().unwrap().to_bits()), "{t}");
        }
    }

    #[test]
    fn reader_semantics() {
        assert_eq!(cells("a,\"b\"c,d").unwrap(), ["a", "bc", "d"]);
        assert_eq!(cells("").unwrap(), Vec::<String>::new());
        assert_eq!(cells("\"x\"\"y\",\"\"").unwrap(), ["x\"y", ""]);
        assert_eq!(cells(" \"q\",r\"s").unwrap(), [" \"q\"", "r\"s"]);
        assert_eq!(cells("a,").unwrap(), ["a", ""]);
        assert!(cells("\"open").is_err());
    }

    #[test]
    fn floats() {
        assert_eq!(py_float(" 1_000.5 "), Some(1000.5));
        assert_eq!(py_float("1\x1c"), None, "float() does not strip the information separators");
        assert_eq!(py_float("\x0b2\x0c"), Some(2.0));
        assert_eq!(py_float("1__0"), None);
        assert_eq!(py_float("_1"), None);
        assert_eq!(py_float("1_"), None);
        assert_eq!(py_float("."), None);
        assert_eq!(py_float("5."), Some(5.0));
        assert_eq!(py_float(".5e-1"), Some(0.05));
        assert_eq!(py_float("-Infinity"), Some(f64::NEG_INFINITY));
        assert!(py_float("nan").unwrap().is_nan());
        assert_eq!(py_float("1e"), None);
        assert_eq!(py_float(""), None);
        assert_eq!(py_float("0x10"), None);
    }
}

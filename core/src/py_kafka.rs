//! The records of a Kafka record batch (message format v2), parsed in Rust for `stream.kafka.fastparse`: the
//! consumer's `poll()` spent ~6 µs a record in kafka-python's Python varint loop (`DefaultRecordBatch._read_msg`),
//! on the thread that also feeds the engine. kafka-python keeps everything around it (fetching, positions, CRC
//! checks, decompression, control batches, aborted transactions); only the loop over one (decompressed) batch's
//! records is here, and it builds the same `ConsumerRecord`s (`kafka_records`), or, for the runtime's consumer, one
//! `RecordBlock` per batch: the records as columns, each value read once by the core's decoder (`kafka_block`).
//!
//! Record (after the batch header):
//! ```text
//! Length varint | Attributes int8 | TimestampDelta varlong | OffsetDelta varint | KeyLength varint | Key
//! | ValueLength varint | Value | HeaderCount varint | [HeaderKeyLength varint | HeaderKey | HeaderValueLength
//! varint | HeaderValue]
//! ```
//! Varints are zigzag-encoded (`kafka.record.util.decode_varint`).

use std::sync::Arc;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyList, PyString, PyTuple};

use crate::decode::{decode, Refused};

/// Bytes of one batch from `pos`, with a cursor; every read is bounds-checked.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    /// A zigzag varint of up to 64 bits, as `decode_varint` reads it.
    fn varint(&mut self) -> Result<i64, String> {
        let mut value: u64 = 0;
        let mut shift = 0u32;
        loop {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err("a varint runs past the end of the batch".into());
            };
            self.pos += 1;
            if shift >= 64 {
                return Err("a varint longer than 64 bits".into());
            }
            value |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        Ok(((value >> 1) as i64) ^ -((value & 1) as i64))
    }

    /// `n` bytes, or `None` for a negative length (a null key, value or header value).
    fn bytes(&mut self, n: i64) -> Result<Option<&'a [u8]>, String> {
        if n < 0 {
            return Ok(None);
        }
        let end = self.pos.checked_add(n as usize).filter(|&e| e <= self.buf.len());
        let Some(end) = end else {
            return Err(format!("a field of {n} bytes runs past the end of the batch"));
        };
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(Some(out))
    }
}

/// ``kafka_records(buffer, pos, count, base_offset, first_timestamp, max_timestamp, timestamp_type, topic,
/// partition, leader_epoch, record_class)``: the ``count`` records of a decompressed v2 batch ``buffer``
/// (``DefaultRecordBatch._buffer``) from byte ``pos``, as ``record_class`` (``kafka``'s ``ConsumerRecord``) built
/// exactly as kafka-python's fetcher builds them; returns ``(records, bytes_read)``. A malformed batch raises
/// ``ValueError`` with kafka-python's reason (the caller raises ``CorruptRecordError`` with it).
#[pyfunction]
#[allow(clippy::too_many_arguments)]
pub fn kafka_records<'py>(
    py: Python<'py>,
    buffer: &Bound<'py, PyAny>,
    pos: usize,
    count: i64,
    base_offset: i64,
    first_timestamp: i64,
    max_timestamp: i64,
    timestamp_type: i64,
    topic: &Bound<'py, PyString>,
    partition: i64,
    leader_epoch: i64,
    record_class: &Bound<'py, PyAny>,
) -> PyResult<(Bound<'py, PyList>, i64)> {
    // a copy of the batch: `record_class` runs Python code, which must not see (or move) the bytearray borrowed
    let data = copy_buffer(buffer)?;
    let log_append = timestamp_type == 1;
    let out = PyList::empty(py);
    let none = py.None();
    let mut raw = Vec::new();
    let bytes_read = parse_batch(&data, pos, count, base_offset, first_timestamp, max_timestamp, log_append,
                                 &mut raw).map_err(PyValueError::new_err)?;
    for r in raw {
        let headers = PyList::empty(py);
        for (k, v) in &r.headers {
            let v: Bound<'py, PyAny> = match v {
                Some(v) => PyBytes::new(py, v).into_any(),
                None => none.bind(py).clone(),
            };
            headers.append(PyTuple::new(py, [PyString::new(py, k).into_any(), v])?)?;
        }
        let key_size = r.key.map_or(-1, |k| k.len() as i64);
        let value_size = r.value.map_or(-1, |v| v.len() as i64);
        let as_py = |b: Option<&[u8]>| -> Bound<'py, PyAny> {
            match b {
                Some(b) => PyBytes::new(py, b).into_any(),
                None => none.bind(py).clone(),
            }
        };
        let header_size = if r.headers.is_empty() { -1 } else { r.header_size };
        let int = |v: i64| -> Bound<'py, PyAny> { v.into_pyobject(py).expect("an int").into_any() };
        let args = PyTuple::new(py, [
            topic.clone().into_any(),
            int(partition),
            int(leader_epoch),
            int(r.offset),
            int(r.timestamp),
            int(timestamp_type),
            as_py(r.key),
            as_py(r.value),
            headers.into_any(),
            none.bind(py).clone(),
            int(key_size),
            int(value_size),
            int(header_size),
        ])?;
        out.append(record_class.call1(args)?)?;
    }
    Ok((out, bytes_read))
}

/// The bytes of a batch buffer (``bytearray`` or ``bytes``), copied.
fn copy_buffer(buffer: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    Ok(if let Ok(ba) = buffer.cast::<PyByteArray>() {
        ba.to_vec()
    } else {
        buffer.cast::<PyBytes>()?.as_bytes().to_vec()
    })
}

/// One record of a batch, borrowed from it.
struct RawRecord<'a> {
    offset: i64,
    timestamp: i64,
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
    headers: Vec<(&'a str, Option<&'a [u8]>)>,
    header_size: i64,
}

/// The ``count`` records of a decompressed v2 batch ``data`` from byte ``pos``, appended to ``out``, checked as
/// kafka-python checks them (each record's length, header counts and key sizes, no bytes left over); returns the
/// bytes read (the sum of the records' lengths), or kafka-python's reason for a malformed batch.
#[allow(clippy::too_many_arguments)]
fn parse_batch<'a>(data: &'a [u8], pos: usize, count: i64, base_offset: i64, first_timestamp: i64,
                   max_timestamp: i64, log_append: bool, out: &mut Vec<RawRecord<'a>>) -> Result<i64, String> {
    if pos > data.len() {
        return Err("the records start past the end of the batch".into());
    }
    let mut c = Cursor { buf: data, pos };
    let mut bytes_read: i64 = 0;
    out.reserve(count.clamp(0, 1 << 20) as usize);
    for _ in 0..count.max(0) {
        let length = c.varint()?;
        let start = c.pos;
        c.varint()?; // attributes: unused
        let ts_delta = c.varint()?;
        let timestamp = if log_append { max_timestamp } else { first_timestamp.wrapping_add(ts_delta) };
        let offset = base_offset.wrapping_add(c.varint()?);
        let key_len = c.varint()?;
        let key = c.bytes(key_len)?;
        let value_len = c.varint()?;
        let value = c.bytes(value_len)?;
        let header_count = c.varint()?;
        if header_count < 0 {
            return Err(format!("Found invalid number of record headers {header_count}"));
        }
        let mut headers = Vec::new();
        let mut header_size: i64 = 0;
        for _ in 0..header_count {
            let k_len = c.varint()?;
            if k_len < 0 {
                return Err(format!("Invalid negative header key size {k_len}"));
            }
            let k = c.bytes(k_len)?.unwrap_or_default();
            let k = std::str::from_utf8(k).map_err(|e| format!("a header key is not UTF-8: {e}"))?;
            let v_len = c.varint()?;
            let v = c.bytes(v_len)?;
            header_size += k.len() as i64 + v.map_or(0, |v| v.len() as i64);
            headers.push((k, v));
        }
        if (c.pos - start) as i64 != length {
            return Err(format!(
                "Invalid record size: expected to read {length} bytes in record payload, but instead read {}",
                c.pos - start
            ));
        }
        bytes_read += length;
        out.push(RawRecord { offset, timestamp, key, value, headers, header_size });
    }
    if c.pos != data.len() {
        return Err(format!("{} unconsumed bytes after all records consumed", data.len() - c.pos));
    }
    Ok(bytes_read)
}

/// The columns of a run of fetched records: offsets, Kafka timestamps, values (one buffer), and what the core's
/// decoder read of each value (its event time and status, as :func:`scan_raw` gives them).
struct Columns {
    offsets: Vec<i64>,
    stamps: Vec<i64>,
    values: Vec<u8>,
    /// Each value's start in ``values`` and its length (``None``: a null value).
    spans: Vec<(usize, Option<usize>)>,
    ts: Vec<f64>,
    status: Vec<u8>,
}

impl Columns {
    fn with_capacity(n: usize, bytes: usize) -> Self {
        Columns {
            offsets: Vec::with_capacity(n),
            stamps: Vec::with_capacity(n),
            values: Vec::with_capacity(bytes),
            spans: Vec::with_capacity(n),
            ts: Vec::with_capacity(n),
            status: Vec::with_capacity(n),
        }
    }

    fn push(&mut self, offset: i64, stamp: i64, value: Option<&[u8]>) {
        self.offsets.push(offset);
        self.stamps.push(stamp);
        let (ts, status) = match value {
            None => (f64::NAN, 5u8),
            Some(v) => match decode(v) {
                Ok(ev) => (ev.ts, ev.kind() as u8),
                Err(Refused::Invalid(_)) => (f64::NAN, 3),
                Err(Refused::Fallback) => (f64::NAN, 4),
            },
        };
        self.ts.push(ts);
        self.status.push(status);
        match value {
            None => self.spans.push((self.values.len(), None)),
            Some(v) => {
                self.spans.push((self.values.len(), Some(v.len())));
                self.values.extend_from_slice(v);
            }
        }
    }

    fn value(&self, i: usize) -> Option<&[u8]> {
        let (start, len) = self.spans[i];
        len.map(|n| &self.values[start..start + n])
    }
}

/// A run of fetched records of one topic-partition in offset order, as columns (the consumer's poll returns
/// these, not one ``ConsumerRecord`` a record; see ``stream.kafka.fastparse``). A block is a view
/// ``[start, end)`` of columns it shares with the blocks split from it.
#[pyclass(frozen, module = "stream._core")]
pub struct RecordBlock {
    cols: Arc<Columns>,
    start: usize,
    end: usize,
}

impl RecordBlock {
    fn view(&self, start: usize, end: usize) -> RecordBlock {
        RecordBlock { cols: Arc::clone(&self.cols), start, end }
    }
}

#[pymethods]
impl RecordBlock {
    /// A block of records given as columns (legacy message formats, tests): ``offsets`` increasing.
    #[staticmethod]
    fn from_records(py: Python<'_>, offsets: Vec<i64>, stamps: Vec<i64>, values: Vec<Option<Vec<u8>>>)
                    -> PyResult<RecordBlock> {
        if offsets.len() != stamps.len() || offsets.len() != values.len() {
            return Err(PyValueError::new_err("offsets, stamps and values differ in length"));
        }
        if offsets.windows(2).any(|w| w[1] <= w[0]) {
            return Err(PyValueError::new_err("offsets must increase"));
        }
        let bytes = values.iter().map(|v| v.as_ref().map_or(0, Vec::len)).sum();
        let cols = py.detach(|| {
            let mut cols = Columns::with_capacity(offsets.len(), bytes);
            for ((&o, &s), v) in offsets.iter().zip(&stamps).zip(&values) {
                cols.push(o, s, v.as_deref());
            }
            cols
        });
        let end = cols.offsets.len();
        Ok(RecordBlock { cols: Arc::new(cols), start: 0, end })
    }

    fn __len__(&self) -> usize {
        self.end - self.start
    }

    /// The offset of the first record (the block is never empty when a consumer returns it).
    #[getter]
    fn first_offset(&self) -> PyResult<i64> {
        self.cols.offsets.get(self.start).copied().filter(|_| self.end > self.start)
            .ok_or_else(|| PyValueError::new_err("an empty block"))
    }

    /// The offset after the last record.
    #[getter]
    fn next_offset(&self) -> PyResult<i64> {
        if self.end == self.start {
            return Err(PyValueError::new_err("an empty block"));
        }
        Ok(self.cols.offsets[self.end - 1] + 1)
    }

    /// ``(head, tail)``: the first ``k`` records and the rest.
    fn split(&self, k: usize) -> (RecordBlock, RecordBlock) {
        let mid = (self.start + k).min(self.end);
        (self.view(self.start, mid), self.view(mid, self.end))
    }

    /// The records at or after ``offset``.
    fn since(&self, offset: i64) -> RecordBlock {
        let skip = self.cols.offsets[self.start..self.end].partition_point(|&o| o < offset);
        self.view(self.start + skip, self.end)
    }

    /// The offsets, Kafka timestamps, event times and decoder statuses (0 order, 1 login, 2 label, 3 invalid,
    /// 4 left to Python, 5 null value), as arrays.
    #[allow(clippy::type_complexity)]
    fn columns<'py>(&self, py: Python<'py>) -> (Bound<'py, numpy::PyArray1<i64>>, Bound<'py, numpy::PyArray1<i64>>,
                                               Bound<'py, numpy::PyArray1<f64>>, Bound<'py, numpy::PyArray1<u8>>) {
        let r = self.start..self.end;
        (numpy::PyArray1::from_slice(py, &self.cols.offsets[r.clone()]),
         numpy::PyArray1::from_slice(py, &self.cols.stamps[r.clone()]),
         numpy::PyArray1::from_slice(py, &self.cols.ts[r.clone()]),
         numpy::PyArray1::from_slice(py, &self.cols.status[r]))
    }

    /// The values (``bytes``, ``None`` for a null value).
    fn values<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let out = PyList::empty(py);
        for i in self.start..self.end {
            match self.cols.value(i) {
                Some(v) => out.append(PyBytes::new(py, v))?,
                None => out.append(py.None())?,
            }
        }
        Ok(out)
    }

    /// The records as the consumer's merge buffers them (``stream.kafka.units.Item``): ``(offset, value, stamp,
    /// ts, topic)``, with ``ts`` None for a record the core's decoder refuses, leaves to Python or finds null;
    /// returns ``(items, odd)``, ``odd`` the indices of those records in ``items`` (the caller decodes them).
    fn items<'py>(&self, py: Python<'py>, topic: &Bound<'py, PyString>) -> PyResult<(Bound<'py, PyList>, Vec<usize>)> {
        let c = &*self.cols;
        let out = PyList::empty(py);
        let mut odd = Vec::new();
        for i in self.start..self.end {
            let value: Bound<'py, PyAny> = match c.value(i) {
                Some(v) => PyBytes::new(py, v).into_any(),
                None => py.None().into_bound(py),
            };
            let ts: Bound<'py, PyAny> = if c.status[i] < 3 {
                c.ts[i].into_pyobject(py)?.into_any()
            } else {
                odd.push(i - self.start);
                py.None().into_bound(py)
            };
            out.append(PyTuple::new(py, [
                c.offsets[i].into_pyobject(py)?.into_any(),
                value,
                c.stamps[i].into_pyobject(py)?.into_any(),
                ts,
                topic.clone().into_any(),
            ])?)?;
        }
        Ok((out, odd))
    }
}

/// ``kafka_block(buffer, pos, count, base_offset, first_timestamp, max_timestamp, timestamp_type)``: the records
/// of a decompressed v2 batch as one :class:`RecordBlock` (each value read by the core's decoder once, for its
/// event time and status), checked as :func:`kafka_records` checks them; returns ``(block, bytes_read)``. Keys
/// and headers are checked and dropped (riskstream reads values).
#[pyfunction]
#[allow(clippy::too_many_arguments)]
pub fn kafka_block(py: Python<'_>, buffer: &Bound<'_, PyAny>, pos: usize, count: i64, base_offset: i64,
                   first_timestamp: i64, max_timestamp: i64, timestamp_type: i64) -> PyResult<(RecordBlock, i64)> {
    let data = copy_buffer(buffer)?;
    let (cols, bytes_read) = py.detach(|| {
        let mut raw = Vec::new();
        let bytes_read = parse_batch(&data, pos, count, base_offset, first_timestamp, max_timestamp,
                                     timestamp_type == 1, &mut raw)?;
        let mut cols = Columns::with_capacity(raw.len(), data.len());
        for r in &raw {
            cols.push(r.offset, r.timestamp, r.value);
        }
        Ok::<_, String>((cols, bytes_read))
    }).map_err(PyValueError::new_err)?;
    let end = cols.offsets.len();
    Ok((RecordBlock { cols: Arc::new(cols), start: 0, end }, bytes_read))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(kafka_records, m)?)?;
    m.add_function(wrap_pyfunction!(kafka_block, m)?)?;
    m.add_class::<RecordBlock>()?;
    Ok(())
}

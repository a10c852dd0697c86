//! The records of a Kafka record batch (message format v2), parsed in Rust for `stream.kafka.fastparse`: the
//! consumer's `poll()` spent ~6 µs a record in kafka-python's Python varint loop (`DefaultRecordBatch._read_msg`),
//! on the thread that also feeds the engine. kafka-python keeps everything around it (fetching, positions, CRC
//! checks, decompression, control batches, aborted transactions); only the loop over one (decompressed) batch's
//! records is here, and it builds the same `ConsumerRecord`s.
//!
//! Record (after the batch header):
//! ```text
//! Length varint | Attributes int8 | TimestampDelta varlong | OffsetDelta varint | KeyLength varint | Key
//! | ValueLength varint | Value | HeaderCount varint | [HeaderKeyLength varint | HeaderKey | HeaderValueLength
//! varint | HeaderValue]
//! ```
//! Varints are zigzag-encoded (`kafka.record.util.decode_varint`).

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyList, PyString, PyTuple};

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
    let data: Vec<u8> = if let Ok(ba) = buffer.cast::<PyByteArray>() {
        ba.to_vec()
    } else {
        buffer.cast::<PyBytes>()?.as_bytes().to_vec()
    };
    let bad = |why: String| PyValueError::new_err(why);
    if pos > data.len() {
        return Err(bad("the records start past the end of the batch".into()));
    }
    let mut c = Cursor { buf: &data, pos };
    let out = PyList::empty(py);
    let log_append = timestamp_type == 1;
    let mut bytes_read: i64 = 0;
    let none = py.None();
    for _ in 0..count.max(0) {
        let length = c.varint().map_err(bad)?;
        let start = c.pos;
        c.varint().map_err(bad)?; // attributes: unused
        let ts_delta = c.varint().map_err(bad)?;
        let timestamp = if log_append { max_timestamp } else { first_timestamp.wrapping_add(ts_delta) };
        let offset = base_offset.wrapping_add(c.varint().map_err(bad)?);
        let key_len = c.varint().map_err(bad)?;
        let key = c.bytes(key_len).map_err(bad)?;
        let value_len = c.varint().map_err(bad)?;
        let value = c.bytes(value_len).map_err(bad)?;
        let header_count = c.varint().map_err(bad)?;
        if header_count < 0 {
            return Err(bad(format!("Found invalid number of record headers {header_count}")));
        }
        let headers = PyList::empty(py);
        let mut header_size: i64 = 0;
        for _ in 0..header_count {
            let k_len = c.varint().map_err(bad)?;
            if k_len < 0 {
                return Err(bad(format!("Invalid negative header key size {k_len}")));
            }
            let k = c.bytes(k_len).map_err(bad)?.unwrap_or_default();
            let k = std::str::from_utf8(k).map_err(|e| bad(format!("a header key is not UTF-8: {e}")))?;
            let v_len = c.varint().map_err(bad)?;
            let v = c.bytes(v_len).map_err(bad)?;
            header_size += k.len() as i64 + v.map_or(0, |v| v.len() as i64);
            let v: Bound<'py, PyAny> = match v {
                Some(v) => PyBytes::new(py, v).into_any(),
                None => none.bind(py).clone(),
            };
            headers.append(PyTuple::new(py, [PyString::new(py, k).into_any(), v])?)?;
        }
        if (c.pos - start) as i64 != length {
            return Err(bad(format!(
                "Invalid record size: expected to read {length} bytes in record payload, but instead read {}",
                c.pos - start
            )));
        }
        bytes_read += length;
        let key_size = key.map_or(-1, |k| k.len() as i64);
        let value_size = value.map_or(-1, |v| v.len() as i64);
        let as_py = |b: Option<&[u8]>| -> Bound<'py, PyAny> {
            match b {
                Some(b) => PyBytes::new(py, b).into_any(),
                None => none.bind(py).clone(),
            }
        };
        let header_size = if header_count > 0 { header_size } else { -1 };
        let int = |v: i64| -> Bound<'py, PyAny> { v.into_pyobject(py).expect("an int").into_any() };
        let args = PyTuple::new(py, [
            topic.clone().into_any(),
            int(partition),
            int(leader_epoch),
            int(offset),
            int(timestamp),
            int(timestamp_type),
            as_py(key),
            as_py(value),
            headers.into_any(),
            none.bind(py).clone(),
            int(key_size),
            int(value_size),
            int(header_size),
        ])?;
        out.append(record_class.call1(args)?)?;
    }
    if c.pos != data.len() {
        return Err(bad(format!("{} unconsumed bytes after all records consumed", data.len() - c.pos)));
    }
    Ok((out, bytes_read))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(kafka_records, m)?)?;
    Ok(())
}

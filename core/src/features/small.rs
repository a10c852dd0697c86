//! `SmallStr`: a string of up to 22 bytes held inline (ids: user, device, IP, card, address), a longer one on the
//! heap. 24 bytes either way, so a set entry or a table key costs no allocation and no pointer to chase in the
//! common case, and compares with one short `memcmp`.

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

const INLINE: usize = 22;

#[derive(Clone)]
pub enum SmallStr {
    Inline { len: u8, buf: [u8; INLINE] },
    Heap(Box<str>),
}

impl SmallStr {
    #[inline]
    pub fn as_str(&self) -> &str {
        match self {
            // SAFETY: `buf[..len]` is a copy of a `&str`'s bytes (see `From<&str>`).
            SmallStr::Inline { len, buf } => unsafe { std::str::from_utf8_unchecked(&buf[..*len as usize]) },
            SmallStr::Heap(s) => s,
        }
    }

    /// Heap bytes beyond the 24 inline ones (allocator rounding included): 0 for an inline string.
    pub fn heap_bytes(&self) -> usize {
        match self {
            SmallStr::Inline { .. } => 0,
            SmallStr::Heap(s) => super::sets::heap_str(s.len()),
        }
    }
}

impl From<&str> for SmallStr {
    #[inline]
    fn from(s: &str) -> Self {
        if s.len() <= INLINE {
            let mut buf = [0u8; INLINE];
            buf[..s.len()].copy_from_slice(s.as_bytes());
            SmallStr::Inline { len: s.len() as u8, buf }
        } else {
            SmallStr::Heap(s.into())
        }
    }
}

impl std::ops::Deref for SmallStr {
    type Target = str;

    #[inline]
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for SmallStr {
    #[inline]
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for SmallStr {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for SmallStr {}

/// Hashes as the `str` it holds, so a map keyed by `SmallStr` is looked up with a `&str`.
impl Hash for SmallStr {
    #[inline]
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.as_str().hash(h)
    }
}

impl std::fmt::Debug for SmallStr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_str().fmt(f)
    }
}

impl Serialize for SmallStr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for SmallStr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s: std::borrow::Cow<'de, str> = Deserialize::deserialize(d)?;
        Ok(SmallStr::from(&*s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn inline_and_heap_strings_behave_as_str() {
        assert_eq!(std::mem::size_of::<SmallStr>(), 24);
        let short = SmallStr::from("de026ae5a0ff7");
        let edge = SmallStr::from("0123456789012345678901");
        let long = SmallStr::from("01234567890123456789012");
        assert!(matches!(short, SmallStr::Inline { .. }) && matches!(edge, SmallStr::Inline { .. }));
        assert!(matches!(long, SmallStr::Heap(_)));
        assert_eq!((&*short, &*edge, &*long), ("de026ae5a0ff7", "0123456789012345678901", "01234567890123456789012"));
        assert_eq!(SmallStr::from(""), SmallStr::from(""));
        let mut m = HashMap::new();
        m.insert(long.clone(), 1);
        m.insert(short.clone(), 2);
        assert_eq!((m.get("01234567890123456789012"), m.get("de026ae5a0ff7")), (Some(&1), Some(&2)));
        let bytes = bincode::serialize(&(short.clone(), long.clone())).unwrap();
        let back: (SmallStr, SmallStr) = bincode::deserialize(&bytes).unwrap();
        assert_eq!(back, (short, long));
        let unicode = SmallStr::from("é".repeat(11).as_str()); // 22 bytes
        assert_eq!(&*unicode, "é".repeat(11));
    }
}

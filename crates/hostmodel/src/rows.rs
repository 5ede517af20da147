//! The weight table's memory. Every unlisted name reads a few dozen rows
//! scattered over megabytes; with 4 KiB pages nearly every read also misses
//! the TLB, which costs more than the read. The table is therefore placed
//! in an anonymous mapping the kernel is asked to back with huge pages
//! (honoured where transparent huge pages are `always` or `madvise`), and
//! in an ordinary allocation where mapping fails.

use std::ops::Deref;

/// Rows of 8-bit weights (two's complement, read back `as i8`).
pub(crate) enum Rows {
    Mapped(memmap2::MmapMut),
    Plain(Vec<u8>),
}

impl Rows {
    /// A table holding `weights`.
    pub(crate) fn new(weights: &[i8]) -> Self {
        if weights.is_empty() {
            return Self::Plain(Vec::new());
        }
        let bytes = weights.iter().map(|w| *w as u8);
        match memmap2::MmapMut::map_anon(weights.len()) {
            Ok(mut map) => {
                #[cfg(target_os = "linux")]
                if let Err(e) = map.advise(memmap2::Advice::HugePage) {
                    tracing::debug!("hostname model: no huge pages for the weights ({e}); reads will be slower");
                }
                for (to, from) in map.iter_mut().zip(bytes) {
                    *to = from;
                }
                Self::Mapped(map)
            }
            Err(_) => Self::Plain(bytes.collect()),
        }
    }
}

impl Deref for Rows {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Self::Mapped(m) => &m[..],
            Self::Plain(v) => v,
        }
    }
}

impl Clone for Rows {
    fn clone(&self) -> Self {
        Self::new(&self.iter().map(|b| *b as i8).collect::<Vec<_>>())
    }
}

impl std::fmt::Debug for Rows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Rows({} bytes)", self.len())
    }
}

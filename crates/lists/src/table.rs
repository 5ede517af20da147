//! A read-only hash table laid out in the index file: exact keys, open
//! addressing, no parsing on load.
//!
//! Layout of one table section: `u64` slot count `n` (a power of two), then `n`
//! tag bytes (0 = empty, else the top 7 bits of the hash with the high bit
//! set), then the slots (`u64` hash, `u32` key offset, `u32` value), then the
//! key arena (each key as a `u8` length and its bytes). Look-ups hash the key
//! and probe the tags linearly, touching a slot and the arena only when a tag
//! matches, then compare the stored key, so a match is exact. The tags are one
//! byte per slot, so probing stays in cache even when the slots do not.
//!
//! Building appends to the section's bytes directly ([`TableBuilder`]),
//! doubling the slots when three quarters are used.
//!
//! Why not an FST (as first planned): building an FST of the shared lists took
//! 1.1 s of the 2 s budget (its node registry dominates), and a domain look-up
//! is an exact match on each parent domain, which a hash table answers in one
//! probe. The table costs more bytes per key (16 plus the key), which at 1M
//! domains is still a few tens of MB.

const SLOT: usize = 16;
const EMPTY: u32 = u32::MAX;

/// FNV-1a, 64-bit: stable across builds and machines, which the file format needs.
pub(crate) fn hash(key: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // Mix the high bits down: the slot index comes from the low bits.
    h ^ (h >> 29)
}

/// Builds a table section in place: the section's own bytes grow as keys are
/// added (tags and slots in front, the key arena behind), so finishing costs
/// nothing and no sorted copy of the keys is ever made.
pub(crate) struct TableBuilder {
    buf: Vec<u8>,
    n: usize,
    len: usize,
}

impl TableBuilder {
    #[cfg(test)]
    pub(crate) fn new() -> Self {
        Self::with_capacity(0, 0)
    }

    /// Sized for about `keys` keys of at most `arena` bytes in all, so that a
    /// large import neither rehashes nor reallocates (both would leave the
    /// process holding freed memory it cannot give back).
    pub(crate) fn with_capacity(keys: usize, arena: usize) -> Self {
        let n = (keys + keys / 3 + 1).next_power_of_two().max(8);
        let mut t = Self::with_slots(n, arena);
        t.buf.reserve_exact(arena);
        t
    }

    fn with_slots(n: usize, arena: usize) -> Self {
        let mut buf = Vec::with_capacity(8 + n + n * SLOT + arena);
        buf.resize(8 + n + n * SLOT, 0);
        buf[..8].copy_from_slice(&(n as u64).to_le_bytes());
        Self { buf, n, len: 0 }
    }

    fn slot_at(&self, i: usize) -> usize {
        8 + self.n + i * SLOT
    }

    fn arena_start(&self) -> usize {
        8 + self.n + self.n * SLOT
    }

    /// Adds `key`, or updates it: `value` gets the key's current value (if any)
    /// and returns the value to store.
    pub(crate) fn upsert(&mut self, key: &[u8], value: impl FnOnce(Option<u32>) -> u32) {
        let key = &key[..key.len().min(255)];
        // Load factor at most 3/4: probe runs stay short.
        if (self.len + 1) * 4 > self.n * 3 {
            self.grow();
        }
        let h = hash(key);
        let want = tag(h);
        let mask = self.n - 1;
        let mut i = (h as usize) & mask;
        loop {
            let at = self.slot_at(i);
            match self.buf[8 + i] {
                0 => {
                    let offset = (self.buf.len() - self.arena_start()) as u32;
                    let v = value(None);
                    self.buf[8 + i] = want;
                    self.buf[at..at + 8].copy_from_slice(&h.to_le_bytes());
                    self.buf[at + 8..at + 12].copy_from_slice(&offset.to_le_bytes());
                    self.buf[at + 12..at + 16].copy_from_slice(&v.to_le_bytes());
                    self.buf.push(key.len() as u8);
                    self.buf.extend_from_slice(key);
                    self.len += 1;
                    return;
                }
                t if t == want && read_u64(&self.buf, at) == h => {
                    let o = self.arena_start() + read_u32(&self.buf, at + 8) as usize;
                    let len = self.buf[o] as usize;
                    if &self.buf[o + 1..o + 1 + len] == key {
                        let v = value(Some(read_u32(&self.buf, at + 12)));
                        self.buf[at + 12..at + 16].copy_from_slice(&v.to_le_bytes());
                        return;
                    }
                }
                _ => {}
            }
            i = (i + 1) & mask;
        }
    }

    /// Doubles the slots; slots keep their full hash, so keys are not re-read,
    /// and arena offsets do not change.
    fn grow(&mut self) {
        let arena_len = self.buf.len() - self.arena_start();
        let mut next = Self::with_slots(self.n * 2, self.buf.capacity().saturating_sub(self.arena_start()).max(arena_len));
        let mask = next.n - 1;
        for i in 0..self.n {
            if self.buf[8 + i] == 0 {
                continue;
            }
            let at = self.slot_at(i);
            let h = read_u64(&self.buf, at);
            let mut j = (h as usize) & mask;
            while next.buf[8 + j] != 0 {
                j = (j + 1) & mask;
            }
            next.buf[8 + j] = self.buf[8 + i];
            let to = next.slot_at(j);
            next.buf[to..to + SLOT].copy_from_slice(&self.buf[at..at + SLOT]);
        }
        next.buf.extend_from_slice(&self.buf[self.arena_start()..]);
        next.len = self.len;
        *self = next;
    }

    /// Number of keys.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The finished section.
    pub(crate) fn finish(self) -> Vec<u8> {
        self.buf
    }
}

fn tag(h: u64) -> u8 {
    0x80 | (h >> 57) as u8
}

fn read_u32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4).and_then(|s| s.try_into().ok()).map_or(EMPTY, u32::from_le_bytes)
}

fn read_u64(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8).and_then(|s| s.try_into().ok()).map_or(0, u64::from_le_bytes)
}

/// One table section of a loaded index.
#[derive(Clone)]
pub(crate) struct Table<B> {
    bytes: B,
    tags_end: usize,
    slots_end: usize,
    mask: usize,
    len: usize,
}

impl<B: AsRef<[u8]>> Table<B> {
    /// Checks the section's shape; `None` if it is not a table.
    pub(crate) fn new(bytes: B) -> Option<Self> {
        let section = bytes.as_ref();
        let n = usize::try_from(read_u64(section, 0)).ok()?;
        if n == 0 || !n.is_power_of_two() {
            return None;
        }
        let tags_end = n.checked_add(8)?;
        let slots_end = n.checked_mul(SLOT)?.checked_add(tags_end)?;
        let tags = section.get(8..tags_end)?;
        section.get(tags_end..slots_end)?;
        let len = tags.iter().filter(|&&t| t != 0).count();
        Some(Self { bytes, tags_end, slots_end, mask: n - 1, len })
    }

    /// Number of keys.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The section's bytes.
    pub(crate) fn bytes(&self) -> &B {
        &self.bytes
    }

    /// The value stored for `key`.
    pub(crate) fn get(&self, key: &[u8]) -> Option<u64> {
        if self.len == 0 {
            return None;
        }
        let b = self.bytes.as_ref();
        let (tags, slots, arena) = (&b[8..self.tags_end], &b[self.tags_end..self.slots_end], &b[self.slots_end..]);
        let h = hash(key);
        let want = tag(h);
        let mut i = (h as usize) & self.mask;
        // At most every slot once, even in a corrupt file.
        for _ in 0..=self.mask {
            let t = tags[i];
            if t == 0 {
                return None;
            }
            let at = i * SLOT;
            if t == want && read_u64(slots, at) == h {
                let offset = read_u32(slots, at + 8);
                let o = offset as usize;
                let len = *arena.get(o)? as usize;
                if arena.get(o + 1..o + 1 + len) == Some(key) {
                    return Some(u64::from(read_u32(slots, at + 12)));
                }
            }
            i = (i + 1) & self.mask;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(keys: &[(String, u64)]) -> Vec<u8> {
        let mut b = TableBuilder::new();
        for (k, v) in keys {
            b.upsert(k.as_bytes(), |_| *v as u32);
        }
        b.finish()
    }

    #[test]
    fn round_trip() {
        let keys: Vec<(String, u64)> = (0..5000).map(|i| (format!("site{i}.example"), i)).collect();
        let bytes = build(&keys);
        let t = Table::new(&bytes[..]).unwrap();
        assert_eq!(t.len(), 5000);
        for (k, v) in &keys {
            assert_eq!(t.get(k.as_bytes()), Some(*v));
        }
        assert_eq!(t.get(b"site5000.example"), None);
        assert_eq!(t.get(b""), None);
        let mut twice = TableBuilder::new();
        twice.upsert(b"a.example", |_| 1);
        twice.upsert(b"a.example", |old| old.unwrap() + 1);
        assert_eq!(twice.len(), 1);
        assert_eq!(Table::new(&twice.finish()[..]).unwrap().get(b"a.example"), Some(2));
        let empty = build(&[]);
        assert_eq!(Table::new(&empty[..]).unwrap().get(b"x"), None);
        assert!(Table::new(&b"garbage"[..]).is_none());
    }
}

//! The cleaner's key → latest-offset map, in a fixed memory budget (Kafka's
//! `SkinnyOffsetMap`): open addressing over slots of a 128-bit key hash and an offset. Keys
//! themselves are not kept; two keys share a slot only if their 128-bit hashes collide.

use std::hash::{BuildHasher, Hasher};

/// Bytes per slot: a 16-byte hash and an 8-byte offset.
pub const SLOT_BYTES: usize = 24;
/// Kafka's `log.cleaner.io.buffer.load.factor`: the map counts as full at this load.
pub const LOAD_FACTOR: f64 = 0.9;

/// An empty slot's hash (a key whose hash is all zero takes the next value).
const EMPTY: u128 = 0;

/// See the module docs.
#[derive(Debug)]
pub struct OffsetMap {
    hashes: Vec<u128>,
    offsets: Vec<i64>,
    entries: usize,
    /// Entries the map takes before it counts as full.
    limit: usize,
    /// The largest offset put since the last clear.
    latest: i64,
}

/// Two independent SipHash-1-3 runs with fixed keys: a stable 128-bit digest.
fn digest(key: &[u8]) -> u128 {
    let mut hi =
        std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
            .build_hasher();
    hi.write(key);
    let mut lo =
        std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
            .build_hasher();
    lo.write_u64(0x5851_F42D_4C95_7F2D);
    lo.write(key);
    let h = (u128::from(hi.finish()) << 64) | u128::from(lo.finish());
    if h == EMPTY {
        1
    } else {
        h
    }
}

impl OffsetMap {
    /// A map in about `memory_bytes` (at least one slot).
    pub fn with_memory(memory_bytes: usize) -> OffsetMap {
        let slots = (memory_bytes / SLOT_BYTES).max(2);
        OffsetMap {
            hashes: vec![EMPTY; slots],
            offsets: vec![-1; slots],
            entries: 0,
            limit: ((slots as f64 * LOAD_FACTOR) as usize).clamp(1, slots - 1),
            latest: -1,
        }
    }

    pub fn slots(&self) -> usize {
        self.hashes.len()
    }

    pub fn len(&self) -> usize {
        self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// True when another new key would pass the load factor.
    pub fn is_full(&self) -> bool {
        self.entries >= self.limit
    }

    /// The largest offset put since the last clear (-1 when none).
    pub fn latest_offset(&self) -> i64 {
        self.latest
    }

    pub fn clear(&mut self) {
        self.hashes.fill(EMPTY);
        self.entries = 0;
        self.latest = -1;
    }

    fn slot_of(&self, hash: u128) -> usize {
        let n = self.hashes.len();
        let mut i = (hash as u64 % n as u64) as usize;
        loop {
            let h = self.hashes[i];
            if h == hash || h == EMPTY {
                return i;
            }
            i += 1;
            if i == n {
                i = 0;
            }
        }
    }

    /// Records `offset` as the latest for `key`. Returns false, changing nothing, for a new
    /// key when the map is full.
    pub fn put(&mut self, key: &[u8], offset: i64) -> bool {
        let hash = digest(key);
        let i = self.slot_of(hash);
        if self.hashes[i] == EMPTY {
            if self.is_full() {
                return false;
            }
            self.hashes[i] = hash;
            self.entries += 1;
        }
        self.offsets[i] = offset;
        self.latest = self.latest.max(offset);
        true
    }

    /// The latest offset recorded for `key`.
    pub fn get(&self, key: &[u8]) -> Option<i64> {
        let i = self.slot_of(digest(key));
        (self.hashes[i] != EMPTY).then(|| self.offsets[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_latest_offset_per_key_and_fills_at_the_load_factor() {
        let mut map = OffsetMap::with_memory(100 * SLOT_BYTES);
        assert_eq!(map.slots(), 100);
        for i in 0..90 {
            assert!(map.put(format!("k{i}").as_bytes(), i));
        }
        assert!(map.is_full());
        assert!(!map.put(b"new", 1000), "a new key does not fit");
        assert!(map.put(b"k3", 500), "an existing key is updated");
        assert_eq!(map.get(b"k3"), Some(500));
        assert_eq!(map.get(b"k4"), Some(4));
        assert_eq!(map.get(b"absent"), None);
        assert_eq!(map.latest_offset(), 500);
        map.clear();
        assert_eq!(map.get(b"k3"), None);
        assert!(map.is_empty());
    }

    #[test]
    fn digests_are_stable_and_distinct() {
        assert_eq!(digest(b"abc"), digest(b"abc"));
        assert_ne!(digest(b"abc"), digest(b"abd"));
        assert_ne!(digest(b""), EMPTY);
    }
}

//! The cleaner's key → latest-offset map, in a fixed memory budget (Kafka's
//! `SkimpyOffsetMap`): open addressing over slots of a 128-bit key hash and an offset. Keys
//! themselves are not kept; two keys share a slot only if their 128-bit hashes collide.
//!
//! Unlike Kafka's, the table starts small and doubles (up to the budget) as keys arrive: a
//! cleaning of a few thousand keys then probes a table that fits the CPU caches instead of
//! random places in 128 MiB.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

/// Bytes per slot: a 16-byte hash and an 8-byte offset.
pub const SLOT_BYTES: usize = std::mem::size_of::<Slot>();
/// Kafka's `log.cleaner.io.buffer.load.factor`: the map counts as full at this load.
pub const LOAD_FACTOR: f64 = 0.9;
/// Below the budget the table doubles at this load: linear probing stays short.
const GROW_FACTOR: f64 = 0.5;

/// An empty slot's hash (a key whose hash is all zero takes the next value).
const EMPTY: [u64; 2] = [0, 0];
/// Slots of a cleared table (when the budget allows).
const INITIAL_SLOTS: usize = 1 << 12;

/// A key's 128-bit digest in a map (see [`OffsetMap::digest`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digest([u64; 2]);

/// A key's digest and its latest offset, side by side so that a probe touches one line.
#[derive(Debug, Clone, Copy)]
struct Slot {
    hash: [u64; 2],
    offset: i64,
}

const EMPTY_SLOT: Slot = Slot {
    hash: EMPTY,
    offset: -1,
};

/// See the module docs.
#[derive(Debug)]
pub struct OffsetMap {
    slots: Vec<Slot>,
    entries: usize,
    /// Entries the table takes before it grows (or, at the budget, counts as full).
    limit: usize,
    /// Slots the memory budget allows.
    max_slots: usize,
    /// Keys of the digest's SipHash half, random per map.
    sip: RandomState,
    /// The largest offset put since the last clear.
    latest: i64,
}

/// A 128-bit digest of a key: SipHash-1-3 with the map's random keys (so that nobody can
/// choose keys that collide, which would drop a record), then a fast multiply-mix of the
/// same bytes. Two distinct keys share a slot only if both halves collide.
fn digest(sip: &RandomState, key: &[u8]) -> [u64; 2] {
    let mut hi = sip.build_hasher();
    hi.write(key);
    match [hi.finish(), mix(key)] {
        EMPTY => [0, 1],
        h => h,
    }
}

/// A fast 64-bit hash of `bytes` (8 bytes per multiply; not keyed: the SipHash half is).
fn mix(bytes: &[u8]) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut h = (bytes.len() as u64).wrapping_mul(K) ^ 0x5851_F42D_4C95_7F2D;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = (h ^ u64::from_le_bytes(w)).wrapping_mul(K).rotate_left(29);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        h = (h ^ u64::from_le_bytes(w)).wrapping_mul(K).rotate_left(29);
    }
    // MurmurHash3's finalizer: every input bit reaches every output bit.
    h ^= h >> 33;
    h = h.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    h ^= h >> 33;
    h = h.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    h ^ (h >> 33)
}

/// The slot where probing for `hash` starts in a table of `n` slots: the keyed SipHash
/// half (the well distributed one) scaled to the table by a multiply, not a division.
fn home(hash: [u64; 2], n: usize) -> usize {
    ((u128::from(hash[0]) * n as u128) >> 64) as usize
}

impl OffsetMap {
    /// A map in about `memory_bytes` (at least two slots).
    pub fn with_memory(memory_bytes: usize) -> OffsetMap {
        let max_slots = (memory_bytes / SLOT_BYTES).max(2);
        let mut map = OffsetMap {
            slots: Vec::new(),
            entries: 0,
            limit: 0,
            max_slots,
            sip: RandomState::new(),
            latest: -1,
        };
        map.resize(INITIAL_SLOTS.min(max_slots));
        map
    }

    /// Slots the memory budget allows: the most keys it holds is 90% of this.
    pub fn slots(&self) -> usize {
        self.max_slots
    }

    fn limit_of(slots: usize, load: f64) -> usize {
        ((slots as f64 * load) as usize).clamp(1, slots - 1)
    }

    /// An empty table of `slots` slots.
    fn resize(&mut self, slots: usize) {
        self.slots.clear();
        self.slots.resize(slots, EMPTY_SLOT);
        let load = if slots < self.max_slots {
            GROW_FACTOR
        } else {
            LOAD_FACTOR
        };
        self.limit = Self::limit_of(slots, load);
        self.entries = 0;
    }

    /// Doubles the table (within the budget), keeping its entries.
    fn grow(&mut self) {
        let slots = (self.slots.len() * 2).min(self.max_slots);
        let old = std::mem::take(&mut self.slots);
        self.resize(slots);
        for slot in old.into_iter().filter(|s| s.hash != EMPTY) {
            let i = self.slot_of(slot.hash);
            self.slots[i] = slot;
            self.entries += 1;
        }
    }

    pub fn len(&self) -> usize {
        self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// True when another new key would pass the load factor of the whole budget.
    pub fn is_full(&self) -> bool {
        self.entries >= Self::limit_of(self.max_slots, LOAD_FACTOR)
    }

    /// The largest offset put since the last clear (-1 when none).
    pub fn latest_offset(&self) -> i64 {
        self.latest
    }

    pub fn clear(&mut self) {
        self.resize(INITIAL_SLOTS.min(self.max_slots));
        self.latest = -1;
    }

    /// The slot of `hash`, or the empty one where it would go.
    fn slot_of(&self, hash: [u64; 2]) -> usize {
        let n = self.slots.len();
        let mut i = home(hash, n);
        loop {
            let h = self.slots[i].hash;
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
        self.put_digest(self.digest(key), offset)
    }

    /// [`OffsetMap::put`] of a key by its [`OffsetMap::digest`].
    pub fn put_digest(&mut self, digest: Digest, offset: i64) -> bool {
        let hash = digest.0;
        let mut i = self.slot_of(hash);
        if self.slots[i].hash == EMPTY {
            if self.entries >= self.limit {
                if self.slots.len() >= self.max_slots {
                    return false;
                }
                self.grow();
                i = self.slot_of(hash);
            }
            self.slots[i].hash = hash;
            self.entries += 1;
        }
        self.slots[i].offset = offset;
        self.latest = self.latest.max(offset);
        true
    }

    /// The latest offset recorded for `key`.
    pub fn get(&self, key: &[u8]) -> Option<i64> {
        self.get_digest(self.digest(key))
    }

    /// [`OffsetMap::get`] of a key by its [`OffsetMap::digest`].
    pub fn get_digest(&self, digest: Digest) -> Option<i64> {
        let slot = &self.slots[self.slot_of(digest.0)];
        (slot.hash != EMPTY).then_some(slot.offset)
    }

    /// The offsets the map holds, one per key, in no order.
    pub(crate) fn offsets(&self) -> impl Iterator<Item = i64> + '_ {
        self.slots
            .iter()
            .filter(|s| s.hash != EMPTY)
            .map(|s| s.offset)
    }

    /// The digest this map files `key` under.
    pub fn digest(&self, key: &[u8]) -> Digest {
        Digest(digest(&self.sip, key))
    }

    /// Loads the home slots of `digests` at once, so that the probes that follow find
    /// them in the CPU cache. A table larger than the cache costs a memory round trip
    /// per key; asked for together, the round trips overlap instead of queueing.
    pub fn touch(&self, digests: impl Iterator<Item = Digest>) {
        let n = self.slots.len();
        let seen = digests.fold(0u64, |acc, d| acc ^ self.slots[home(d.0, n)].hash[0]);
        std::hint::black_box(seen);
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
    fn the_table_grows_within_its_budget() {
        let mut map = OffsetMap::with_memory(20_000 * SLOT_BYTES);
        for i in 0..17_000i64 {
            assert!(map.put(&i.to_be_bytes(), i * 2), "key {i}");
        }
        for i in 0..17_000i64 {
            assert_eq!(map.get(&i.to_be_bytes()), Some(i * 2));
        }
        assert_eq!(map.get(b"absent"), None);
        for i in 17_000..18_000i64 {
            map.put(&i.to_be_bytes(), i);
        }
        assert!(map.is_full(), "the budget caps it at 90% of 20,000 slots");
        assert!(!map.put(b"one more", 1));
        map.clear();
        assert!(map.is_empty() && map.get(&5i64.to_be_bytes()).is_none());
    }

    #[test]
    fn digests_are_stable_and_distinct() {
        let sip = RandomState::new();
        assert_eq!(digest(&sip, b"abc"), digest(&sip, b"abc"));
        assert_ne!(digest(&sip, b"abc"), digest(&sip, b"abd"));
        assert_ne!(digest(&sip, b""), EMPTY);
        assert_ne!(mix(b"12345678a"), mix(b"12345678b"));
        assert_ne!(mix(b""), mix(b"\0"));
    }
}

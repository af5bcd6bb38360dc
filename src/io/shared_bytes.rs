//! Bytes that threads read and store into at once, as a shared memory map's are: a slice
//! of `AtomicU8`, read and written with relaxed loads and stores (plain moves on the
//! usual targets). What orders them is the caller's: an index publishes its entry count
//! with `Release` after storing an entry's bytes, and its readers load the count with
//! `Acquire` before reading them.

use std::sync::atomic::{AtomicU8, Ordering};

/// Copies `from` into `to` (the same length).
pub(crate) fn load(from: &[AtomicU8], to: &mut [u8]) {
    debug_assert_eq!(from.len(), to.len());
    for (byte, atom) in to.iter_mut().zip(from) {
        *byte = atom.load(Ordering::Relaxed);
    }
}

/// Copies `from` into `to` (the same length).
pub(crate) fn store(to: &[AtomicU8], from: &[u8]) {
    debug_assert_eq!(from.len(), to.len());
    for (atom, &byte) in to.iter().zip(from) {
        atom.store(byte, Ordering::Relaxed);
    }
}

/// All of `bytes`, copied out.
pub(crate) fn to_vec(bytes: &[AtomicU8]) -> Vec<u8> {
    let mut out = vec![0u8; bytes.len()];
    load(bytes, &mut out);
    out
}

/// `bytes` as atomics, in place.
pub(crate) fn from_vec(bytes: Vec<u8>) -> Box<[AtomicU8]> {
    bytes.into_iter().map(AtomicU8::new).collect()
}

/// Exclusive atomics as plain bytes.
pub(crate) fn as_mut_bytes(bytes: &mut [AtomicU8]) -> &mut [u8] {
    // SAFETY: `AtomicU8` has the size, alignment and bit validity of `u8`, and the
    // exclusive borrow rules out any other access to these bytes while the result lives.
    unsafe { &mut *(bytes as *mut [AtomicU8] as *mut [u8]) }
}

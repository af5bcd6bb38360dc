//! The view's side table of metadata texts (and explicit expiries), by handle.

use super::{EMPTY_SLOT, NO_METADATA};

/// Non-empty metadata texts, by handle (index + 1); freed handles are reused. Handles stay
/// below [`EMPTY_SLOT`]: four billion texts would not fit in memory first.
///
/// An offset whose value carries an explicit expiry (value version 1's `expireTimestamp`,
/// which Kafka still writes for a commit that asks for a retention time) keeps it here
/// too, beside its text (empty or not): both are rare, and the slots stay small.
#[derive(Debug, Default)]
pub(super) struct MetadataTable {
    pub(super) texts: Vec<String>,
    /// Each text's offset's explicit expiry, -1 for none; side by side with `texts`.
    pub(super) expires: Vec<i64>,
    pub(super) free: Vec<u32>,
}

impl MetadataTable {
    pub(super) fn text(&self, handle: u32) -> &str {
        match handle {
            NO_METADATA | EMPTY_SLOT => "",
            h => self.texts.get(h as usize - 1).map_or("", String::as_str),
        }
    }

    /// The explicit expiry kept with `handle`, if any.
    pub(super) fn expire_at(&self, handle: u32) -> Option<i64> {
        match handle {
            NO_METADATA | EMPTY_SLOT => None,
            h => self
                .expires
                .get(h as usize - 1)
                .copied()
                .filter(|&e| e >= 0),
        }
    }

    /// The handle for `text` and `expire` (-1 for none), reusing `old`'s storage (`old` is
    /// a handle or [`EMPTY_SLOT`]).
    pub(super) fn store(&mut self, old: u32, text: &str, expire: i64) -> u32 {
        if text.is_empty() && expire < 0 {
            self.release(old);
            return NO_METADATA;
        }
        let handle = match self.slot_of(old) {
            Some(t) => {
                t.clear();
                t.push_str(text);
                old
            }
            None => match self.free.pop() {
                Some(h) => {
                    if let Some(t) = self.slot_of(h) {
                        t.push_str(text);
                    }
                    h
                }
                None => {
                    self.texts.push(text.to_string());
                    self.expires.push(-1);
                    self.texts.len() as u32
                }
            },
        };
        if let Some(e) = self.expires.get_mut(handle as usize - 1) {
            *e = expire;
        }
        handle
    }

    fn slot_of(&mut self, handle: u32) -> Option<&mut String> {
        match handle {
            NO_METADATA | EMPTY_SLOT => None,
            h => self.texts.get_mut(h as usize - 1),
        }
    }

    pub(super) fn release(&mut self, handle: u32) {
        if let Some(t) = self.slot_of(handle) {
            t.clear();
            t.shrink_to_fit();
            self.expires[handle as usize - 1] = -1;
            self.free.push(handle);
        }
    }
}

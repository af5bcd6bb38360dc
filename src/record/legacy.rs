//! Recognising Kafka's legacy message sets (magic 0 and 1), which partlog does not read yet.
//!
//! Layout (big-endian), one message per entry:
//!
//! ```text
//! offset i64 @0 | messageSize i32 @8 | crc u32 @12 | magic i8 @16 | attributes i8 @17 |
//! [timestamp i64 @18, magic 1 only] | keyLength i32 | key | valueLength i32 | value
//! ```
//!
//! The CRC is CRC-32 (IEEE, not Castagnoli) of everything from `magic` to the end. Recovery
//! uses this to tell an old-format log, which it must not cut, from damaged v2 data.

/// Bytes before `magic` that the message size does not count (offset + size).
const LOG_OVERHEAD: usize = 12;
const CRC_AT: usize = 12;
const MAGIC_AT: usize = 16;
/// Smallest v0 message: crc, magic, attributes, key length, value length.
const MESSAGE_V0_MIN: usize = 4 + 1 + 1 + 4 + 4;

/// The size of the magic 0 or 1 message at the start of `buf` when it is one, whole and
/// with a matching CRC-32; `None` otherwise.
pub fn legacy_message_size(buf: &[u8]) -> Option<usize> {
    let magic = *buf.get(MAGIC_AT)?;
    if magic > 1 {
        return None;
    }
    let size = i32::from_be_bytes(buf.get(8..12)?.try_into().ok()?);
    let size = usize::try_from(size).ok()?;
    let min = MESSAGE_V0_MIN + if magic == 1 { 8 } else { 0 };
    if size < min {
        return None;
    }
    let total = LOG_OVERHEAD.checked_add(size)?;
    let message = buf.get(..total)?;
    let stored = u32::from_be_bytes(message[CRC_AT..MAGIC_AT].try_into().ok()?);
    (crc32fast::hash(&message[MAGIC_AT..]) == stored).then_some(total)
}

/// Encodes one uncompressed magic-1 message: old-format input for tests (partlog never
/// writes this format).
#[doc(hidden)]
pub fn encode_message_v1(offset: i64, key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut body = vec![1u8, 0];
    body.extend_from_slice(&1_700_000_000_000i64.to_be_bytes());
    for part in [key, value] {
        body.extend_from_slice(&(part.len() as i32).to_be_bytes());
        body.extend_from_slice(part);
    }
    let mut out = offset.to_be_bytes().to_vec();
    out.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_whole_valid_messages_only() {
        let m = encode_message_v1(7, b"k", b"hello");
        assert_eq!(legacy_message_size(&m), Some(m.len()));
        assert_eq!(legacy_message_size(&m[..m.len() - 1]), None);
        let mut bad = m.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert_eq!(legacy_message_size(&bad), None);
        assert_eq!(
            legacy_message_size(&[0u8; 64]),
            None,
            "zeros are not a message"
        );
        let mut v2 = m;
        v2[MAGIC_AT] = 2;
        assert_eq!(legacy_message_size(&v2), None);
    }
}

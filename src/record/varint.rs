//! Zigzag varints as Kafka writes them inside records.
//!
//! Layout: the value is zigzag-mapped (`(n << 1) ^ (n >> 31)` for 32 bits, `>> 63` for
//! 64 bits) so that small negative numbers stay short, then written 7 bits at a time, least
//! significant group first; every byte but the last has bit 7 set. A varint (i32) takes at
//! most 5 bytes, a varlong (i64) at most 10 — the same encoding as protobuf's `sint32` /
//! `sint64` and Kafka's `ByteUtils.writeVarint` / `writeVarlong`.
//!
//! Decoding is slightly stricter than Kafka's Java reader: a final byte that carries bits
//! beyond the 32nd (64th) bit is rejected as [`VarintError::Overflow`], where Java silently
//! drops those bits. No Kafka encoder produces such bytes.

/// Longest encoding of a zigzag `i32`.
pub const MAX_VARINT_LEN: usize = 5;
/// Longest encoding of a zigzag `i64`.
pub const MAX_VARLONG_LEN: usize = 10;

/// Why a varint could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VarintError {
    /// The input ended before the last byte (one with bit 7 clear).
    Truncated,
    /// The encoding is longer than 5 (10) bytes or carries bits beyond 32 (64).
    Overflow,
}

impl std::fmt::Display for VarintError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VarintError::Truncated => f.write_str("truncated varint"),
            VarintError::Overflow => f.write_str("varint overflows its type"),
        }
    }
}

impl std::error::Error for VarintError {}

/// Number of bytes `encode_varint(value)` writes.
pub fn varint_len(value: i32) -> usize {
    unsigned_len(u64::from(zigzag32(value)))
}

/// Number of bytes `encode_varlong(value)` writes.
pub fn varlong_len(value: i64) -> usize {
    unsigned_len(zigzag64(value))
}

/// Appends the zigzag varint encoding of `value` to `out`.
pub fn encode_varint(value: i32, out: &mut Vec<u8>) {
    encode_unsigned(u64::from(zigzag32(value)), out);
}

/// Appends the zigzag varlong encoding of `value` to `out`.
pub fn encode_varlong(value: i64, out: &mut Vec<u8>) {
    encode_unsigned(zigzag64(value), out);
}

/// Decodes a zigzag varint from the start of `buf`; returns the value and the bytes read.
pub fn decode_varint(buf: &[u8]) -> Result<(i32, usize), VarintError> {
    let (raw, len) = decode_unsigned(buf, MAX_VARINT_LEN, 32)?;
    // Lossless: decode_unsigned rejected anything above 32 bits.
    Ok((unzigzag(raw as u32), len))
}

/// The signed value of a zigzag-encoded 32-bit one.
#[inline(always)]
pub(crate) fn unzigzag(raw: u32) -> i32 {
    (raw >> 1) as i32 ^ -((raw & 1) as i32)
}

/// Decodes a zigzag varlong from the start of `buf`; returns the value and the bytes read.
pub fn decode_varlong(buf: &[u8]) -> Result<(i64, usize), VarintError> {
    let (raw, len) = decode_unsigned(buf, MAX_VARLONG_LEN, 64)?;
    Ok((((raw >> 1) as i64) ^ -((raw & 1) as i64), len))
}

fn zigzag32(value: i32) -> u32 {
    ((value << 1) ^ (value >> 31)) as u32
}

fn zigzag64(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn unsigned_len(raw: u64) -> usize {
    let bits = 64 - raw.leading_zeros() as usize;
    bits.div_ceil(7).max(1)
}

fn encode_unsigned(mut raw: u64, out: &mut Vec<u8>) {
    while raw >= 0x80 {
        out.push((raw as u8 & 0x7f) | 0x80);
        raw >>= 7;
    }
    out.push(raw as u8);
}

/// Reads at most `max_len` bytes; the value must fit in `bits` bits.
fn decode_unsigned(buf: &[u8], max_len: usize, bits: u32) -> Result<(u64, usize), VarintError> {
    // Most varints in a batch (lengths, deltas, counts) fit in one byte.
    if let Some(&byte) = buf.first() {
        if byte & 0x80 == 0 {
            return Ok((u64::from(byte), 1));
        }
    }
    let mut raw = 0u64;
    for (i, &byte) in buf.iter().take(max_len).enumerate() {
        let shift = 7 * i as u32;
        let group = u64::from(byte & 0x7f);
        if i + 1 == max_len && group >> (bits - shift) != 0 {
            return Err(VarintError::Overflow);
        }
        raw |= group << shift;
        if byte & 0x80 == 0 {
            return Ok((raw, i + 1));
        }
    }
    if buf.len() >= max_len {
        Err(VarintError::Overflow)
    } else {
        Err(VarintError::Truncated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTS: &[i32] = &[
        0,
        1,
        -1,
        63,
        -64,
        64,
        -65,
        8191,
        -8192,
        8192,
        1 << 20,
        -(1 << 20),
        (1 << 27) - 1,
        1 << 27,
        i32::MAX,
        i32::MIN,
    ];

    #[test]
    fn varint_round_trips_at_boundaries() {
        for &v in INTS {
            let mut out = Vec::new();
            encode_varint(v, &mut out);
            assert_eq!(out.len(), varint_len(v), "len of {v}");
            assert!(out.len() <= MAX_VARINT_LEN);
            assert_eq!(decode_varint(&out), Ok((v, out.len())), "value {v}");
        }
    }

    #[test]
    fn varlong_round_trips_at_boundaries() {
        let mut values: Vec<i64> = INTS.iter().map(|&v| i64::from(v)).collect();
        values.extend([
            i64::MAX,
            i64::MIN,
            1 << 62,
            -(1 << 62),
            (1 << 56) - 1,
            1 << 56,
        ]);
        for v in values {
            let mut out = Vec::new();
            encode_varlong(v, &mut out);
            assert_eq!(out.len(), varlong_len(v), "len of {v}");
            assert!(out.len() <= MAX_VARLONG_LEN);
            assert_eq!(decode_varlong(&out), Ok((v, out.len())), "value {v}");
        }
    }

    #[test]
    fn known_encodings_match_kafka() {
        // Values from Kafka's ByteUtilsTest (zigzag: 0->0, -1->1, 1->2, 63->126, -64->127).
        let cases: &[(i32, &[u8])] = &[
            (0, &[0x00]),
            (-1, &[0x01]),
            (1, &[0x02]),
            (63, &[0x7e]),
            (-64, &[0x7f]),
            (64, &[0x80, 0x01]),
            (i32::MAX, &[0xfe, 0xff, 0xff, 0xff, 0x0f]),
            (i32::MIN, &[0xff, 0xff, 0xff, 0xff, 0x0f]),
        ];
        for &(v, bytes) in cases {
            let mut out = Vec::new();
            encode_varint(v, &mut out);
            assert_eq!(out, bytes, "value {v}");
        }
    }

    #[test]
    fn decode_reads_only_its_own_bytes() {
        assert_eq!(decode_varint(&[0x80, 0x01, 0xff]), Ok((64, 2)));
        assert_eq!(decode_varlong(&[0x02, 0x99]), Ok((1, 1)));
    }

    #[test]
    fn truncated_input_is_an_error() {
        assert_eq!(decode_varint(&[]), Err(VarintError::Truncated));
        assert_eq!(decode_varint(&[0x80, 0x80]), Err(VarintError::Truncated));
        assert_eq!(decode_varlong(&[0xff; 9]), Err(VarintError::Truncated));
    }

    #[test]
    fn overlong_or_overflowing_input_is_an_error() {
        assert_eq!(decode_varint(&[0xff; 5]), Err(VarintError::Overflow));
        assert_eq!(
            decode_varint(&[0xff, 0xff, 0xff, 0xff, 0x1f]),
            Err(VarintError::Overflow)
        );
        assert_eq!(decode_varlong(&[0xff; 10]), Err(VarintError::Overflow));
        let mut eleven = [0x80u8; 11];
        eleven[10] = 0;
        assert_eq!(decode_varlong(&eleven), Err(VarintError::Overflow));
        let mut ten = [0xffu8; 10];
        ten[9] = 0x02;
        assert_eq!(decode_varlong(&ten), Err(VarintError::Overflow));
        ten[9] = 0x01;
        assert_eq!(decode_varlong(&ten), Ok((i64::MIN, 10)));
    }
}

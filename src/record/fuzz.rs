//! Fuzz entry point for the batch decoder (wired into a cargo-fuzz target elsewhere).

use super::{batch_size, batches, BatchHeader, Compression, HEADER_LEN, LOG_OVERHEAD};
use super::{recompute_crc, set_base_offset, set_partition_leader_epoch, Batch, BatchError};

/// Runs every parse / validate / iterate / patch path over arbitrary bytes.
///
/// Returns normally for any input the decoder handles correctly (typed errors included);
/// panics — which is what a fuzzer looks for — when a decoder panics or when its results
/// contradict each other, e.g. a batch that validates but yields a different number of
/// records than its header announces.
pub fn fuzz_batch_decode(data: &[u8]) {
    check_prefix_readers(data);
    let mut iter = batches(data);
    let mut position = 0;
    for item in iter.by_ref() {
        let Ok(batch) = item else { break };
        assert_eq!(batch.as_bytes().as_ptr(), data[position..].as_ptr());
        position += batch.as_bytes().len();
        check_batch(&batch);
    }
    assert_eq!(iter.position(), position, "BatchIter position drifted");
    assert!(
        iter.next().is_none(),
        "BatchIter yielded after the end or an error"
    );
}

fn check_prefix_readers(data: &[u8]) {
    if let Ok(size) = batch_size(data) {
        assert!(size >= HEADER_LEN, "batch_size below a header");
    }
    if let Ok(header) = BatchHeader::parse(data) {
        assert_eq!(batch_size(data), Ok(header.size()));
        assert!(header.last_offset_delta >= 0 && header.records_count >= 0);
        assert_eq!(header.size(), LOG_OVERHEAD + header.batch_length as usize);
    }
}

fn check_batch(batch: &Batch<'_>) {
    let header = *batch.header();
    assert_eq!(batch.as_bytes().len(), header.size());
    assert_eq!(Batch::parse(batch.as_bytes()).as_ref(), Ok(batch));
    let crc_ok = batch.verify_crc().is_ok();
    assert_eq!(crc_ok, batch.computed_crc() == header.crc);
    let valid = batch.validate();
    if !crc_ok {
        assert!(matches!(valid, Err(BatchError::CrcMismatch { .. })));
    }
    let records = batch.records();
    if header.compression() != Compression::None {
        assert!(matches!(records, Err(BatchError::Compressed { .. })));
        return;
    }
    let Ok(records) = records else {
        panic!("uncompressed batch refused to iterate");
    };
    let (count, first_error) = walk_records(records, &header);
    if crc_ok {
        // With a good CRC, validate is exactly "records iterate cleanly".
        assert_eq!(valid.err(), first_error);
    }
    if first_error.is_none() {
        assert_eq!(count, header.records_count as usize);
        check_patching(batch, crc_ok);
    }
}

/// Iterates all records and their headers; returns how many came out and the first error.
fn walk_records(
    records: super::RecordIter<'_>,
    header: &BatchHeader,
) -> (usize, Option<BatchError>) {
    let mut count = 0;
    let mut previous: Option<i64> = None;
    for record in records {
        let record = match record {
            Ok(r) => r,
            Err(e) => return (count, Some(e)),
        };
        assert!(
            previous.is_none_or(|p| record.offset > p),
            "offsets not increasing"
        );
        assert!(
            record.offset <= header.last_offset(),
            "offset past last offset"
        );
        previous = Some(record.offset);
        let headers = record.headers().map(|h| h.map(|_| ()));
        assert_eq!(headers.clone().count(), record.headers_count());
        assert!(
            headers.into_iter().all(|h| h.is_ok()),
            "checked headers failed later"
        );
        count += 1;
    }
    (count, None)
}

/// Patching offsets and epoch keeps the CRC; recomputing it makes any batch's CRC good.
fn check_patching(batch: &Batch<'_>, crc_ok: bool) {
    let mut copy = batch.as_bytes().to_vec();
    set_base_offset(&mut copy, batch.header().base_offset.wrapping_add(7));
    set_partition_leader_epoch(&mut copy, 3);
    let patched = Batch::parse(&copy).map(|b| b.verify_crc().is_ok());
    assert_eq!(patched, Ok(crc_ok));
    recompute_crc(&mut copy);
    let fixed = Batch::parse(&copy).and_then(|b| b.validate());
    assert_eq!(fixed, Ok(()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::BatchBuilder;

    fn seed_buffer() -> Vec<u8> {
        let mut out = Vec::new();
        let mut b = BatchBuilder::new();
        b.append(
            5,
            Some(b"k"),
            Some(b"v"),
            &[(b"h", Some(b"x")), (b"n", None)],
        );
        b.append(3, None, None, &[]);
        b.build_into(&mut out).unwrap_or_else(|e| panic!("{e}"));
        b.base_offset(2)
            .producer(9, 1, 0)
            .append(7, Some(&[0; 200]), None, &[]);
        b.build_into(&mut out).unwrap_or_else(|e| panic!("{e}"));
        out
    }

    /// xorshift: deterministic, no dependency.
    fn next(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn valid_input_passes_every_check() {
        fuzz_batch_decode(&seed_buffer());
        fuzz_batch_decode(&[]);
    }

    #[test]
    fn mutated_input_never_panics() {
        let seed = seed_buffer();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            let mut data = seed.clone();
            for _ in 0..1 + next(&mut state) % 4 {
                let at = next(&mut state) as usize % data.len();
                data[at] = next(&mut state) as u8;
            }
            let whole = batch_size(&data).is_ok_and(|s| s <= data.len());
            if whole && next(&mut state) % 2 == 0 {
                // Most flips break the CRC; fix it so the record parser sees the damage.
                recompute_crc(&mut data);
            }
            let cut = next(&mut state) as usize % (data.len() + 1);
            fuzz_batch_decode(&data[..cut]);
            fuzz_batch_decode(&data);
        }
    }
}

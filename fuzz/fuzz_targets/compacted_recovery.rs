//! `cargo fuzz run compacted_recovery`: the body is `partlog::fuzzing::compacted_recovery`,
//! shared with `tests/fuzz_corpus.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| partlog::fuzzing::compacted_recovery(data));

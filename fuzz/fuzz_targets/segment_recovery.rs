//! `cargo fuzz run segment_recovery`: the body is `partlog::fuzzing::segment_recovery`, shared with
//! `tests/fuzz_corpus.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| partlog::fuzzing::segment_recovery(data));

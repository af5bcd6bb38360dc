//! `cargo fuzz run offsets_decode`: the body is `partlog::fuzzing::offsets_decode`, shared
//! with `tests/fuzz_corpus.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| partlog::fuzzing::offsets_decode(data));

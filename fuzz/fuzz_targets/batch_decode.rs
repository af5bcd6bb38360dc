//! `cargo fuzz run batch_decode`: the body is `partlog::fuzzing::batch_decode`, shared with
//! `tests/fuzz_corpus.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| partlog::fuzzing::batch_decode(data));

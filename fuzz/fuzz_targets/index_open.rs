//! `cargo fuzz run index_open`: the body is `partlog::fuzzing::index_open`, shared with
//! `tests/fuzz_corpus.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| partlog::fuzzing::index_open(data));

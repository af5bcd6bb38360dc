//! `cargo fuzz run checkpoint_parse`: the body is `partlog::fuzzing::checkpoint_parse`, shared with
//! `tests/fuzz_corpus.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| partlog::fuzzing::checkpoint_parse(data));

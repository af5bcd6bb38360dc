//! `cargo fuzz run offsets_replay`: the body is `partlog::fuzzing::offsets_replay`, shared
//! with `tests/fuzz_corpus.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| partlog::fuzzing::offsets_replay(data));

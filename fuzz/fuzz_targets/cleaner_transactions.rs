//! `cargo fuzz run cleaner_transactions`: the body is
//! `partlog::fuzzing::cleaner_transactions`, shared with `tests/fuzz_corpus.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| partlog::fuzzing::cleaner_transactions(data));

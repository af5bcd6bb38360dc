//! A partition written in Kafka's legacy message format (magic 0/1), which partlog does not
//! read yet, is refused with a typed error and left exactly as it was: recovery must not
//! mistake old-format data for a torn tail and cut it away.

mod common;

use common::{backends, file_bytes, file_names, options, small_config, write_file};
use partlog::log::Log;
use partlog::record::encode_message_v1;
use partlog::{Error, ManualClock};
use std::sync::Arc;

#[test]
fn legacy_segment_is_refused_and_left_unchanged() {
    for backend in backends() {
        let dir = backend.root.join("old-0");
        backend.storage.create_dir_all(&dir).unwrap();
        let segment = dir.join("00000000000000000000.log");
        let data: Vec<u8> = (0..3)
            .flat_map(|o| encode_message_v1(o, b"k", b"value"))
            .collect();
        write_file(&backend, &segment, &data);
        let clock = Arc::new(ManualClock::new(0));
        let err = Log::open(options(&backend, "old-0", small_config(), clock)).unwrap_err();
        assert!(
            matches!(err, Error::UnsupportedFormat { position: 0, .. }),
            "{}: {err}",
            backend.name
        );
        assert_eq!(file_bytes(&backend, &segment), data, "{}", backend.name);
        let names = file_names(&backend, &dir);
        assert!(
            !names.iter().any(|n| n.ends_with(".corrupt")),
            "{}: {names:?}",
            backend.name
        );
    }
}

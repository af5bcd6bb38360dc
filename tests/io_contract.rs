//! The `io` contract, written once and run on both backends: the real file system (under a
//! temporary directory) and the simulated disk. A behaviour the engine relies on belongs here.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use partlog::io::real::RealStorage;
use partlog::io::sim::SimStorage;
use partlog::io::{OpenMode, Storage};
use partlog::Error;

fn kind(e: &Error) -> ErrorKind {
    match e {
        Error::Io { source, .. } => source.kind(),
        other => panic!("expected an Io error, got {other:?}"),
    }
}

fn at(base: &Path, name: &str) -> PathBuf {
    base.join(name)
}

fn open_modes(s: &dyn Storage, base: &Path) {
    let a = at(base, "a");
    assert_eq!(
        kind(&s.open(&a, OpenMode::Read).unwrap_err()),
        ErrorKind::NotFound
    );
    assert_eq!(
        kind(&s.open(&a, OpenMode::ReadWrite).unwrap_err()),
        ErrorKind::NotFound
    );
    assert!(!s.exists(&a));
    let f = s.open(&a, OpenMode::CreateNew).unwrap();
    assert!(s.exists(&a));
    assert_eq!(f.path(), a.as_path());
    f.write_at(b"abc", 0).unwrap();
    assert_eq!(
        kind(&s.open(&a, OpenMode::CreateNew).unwrap_err()),
        ErrorKind::AlreadyExists
    );
    // Create opens an existing file without truncating it.
    assert_eq!(s.open(&a, OpenMode::Create).unwrap().len().unwrap(), 3);
    let r = s.open(&a, OpenMode::Read).unwrap();
    assert!(
        r.write_at(b"x", 0).is_err(),
        "a read-only handle cannot write"
    );
    let rw = s.open(&a, OpenMode::ReadWrite).unwrap();
    rw.write_at(b"X", 0).unwrap();
    let mut buf = [0u8; 3];
    r.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(&buf, b"Xbc", "handles of one file share its bytes");
    let missing_parent = at(base, "no/such/file");
    assert_eq!(
        kind(&s.open(&missing_parent, OpenMode::Create).unwrap_err()),
        ErrorKind::NotFound
    );
}

fn read_at_is_short_only_at_eof(s: &dyn Storage, base: &Path) {
    let f = s.open(&at(base, "r"), OpenMode::CreateNew).unwrap();
    f.write_at(b"0123456789", 0).unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(f.read_at(&mut buf, 0).unwrap(), 8);
    assert_eq!(f.read_at(&mut buf, 6).unwrap(), 4);
    assert_eq!(&buf[..4], b"6789");
    assert_eq!(f.read_at(&mut buf, 10).unwrap(), 0);
    assert_eq!(f.read_at(&mut buf, 1000).unwrap(), 0);
    assert_eq!(
        kind(&f.read_exact_at(&mut buf, 5).unwrap_err()),
        ErrorKind::UnexpectedEof
    );
    f.read_exact_at(&mut buf[..2], 8).unwrap();
    assert_eq!(&buf[..2], b"89");
}

fn write_at_extends_with_a_zero_hole(s: &dyn Storage, base: &Path) {
    let f = s.open(&at(base, "w"), OpenMode::CreateNew).unwrap();
    assert_eq!(f.len().unwrap(), 0);
    f.write_at(b"ab", 0).unwrap();
    f.write_at(b"cd", 6).unwrap();
    assert_eq!(f.len().unwrap(), 8);
    let mut buf = [9u8; 8];
    f.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(&buf, b"ab\0\0\0\0cd");
    f.write_at(b"ZZ", 1).unwrap();
    f.read_exact_at(&mut buf[..4], 0).unwrap();
    assert_eq!(&buf[..4], b"aZZ\0");
    f.sync_data().unwrap();
}

/// Parts of any length, empty ones among them, more than the real backend passes to one
/// `pwritev`, land one after the other, extending the file.
fn vectored_writes_land_one_after_another(s: &dyn Storage, base: &Path) {
    let f = s.open(&at(base, "v"), OpenMode::CreateNew).unwrap();
    let big: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
    for count in [1, 2, 4, 5, 7] {
        let parts: Vec<&[u8]> = [&b"ab"[..], b"", &big, b"c", b"", b"defg", &big[..999]]
            .into_iter()
            .take(count)
            .collect();
        let expected: Vec<u8> = parts.concat();
        f.set_len(0).unwrap();
        f.write_at(b"xyz", 0).unwrap();
        f.write_all_vectored_at(&parts, 2).unwrap();
        assert_eq!(f.len().unwrap(), 2 + expected.len() as u64, "{count} parts");
        let mut read = vec![0u8; expected.len() + 2];
        f.read_exact_at(&mut read, 0).unwrap();
        assert_eq!(&read[..2], b"xy", "{count} parts");
        assert!(
            read[2..] == expected[..],
            "{count} parts read back as written"
        );
    }
}

fn set_len_and_allocate(s: &dyn Storage, base: &Path) {
    let f = s.open(&at(base, "l"), OpenMode::CreateNew).unwrap();
    f.write_at(&[7u8; 100], 0).unwrap();
    f.set_len(10).unwrap();
    assert_eq!(f.len().unwrap(), 10);
    f.set_len(20).unwrap();
    let mut buf = [0u8; 20];
    f.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(&buf[..10], &[7u8; 10]);
    assert_eq!(&buf[10..], &[0u8; 10], "extension reads as zeros");
    f.allocate(4096).unwrap();
    assert!(f.len().unwrap() >= 4096);
    f.allocate(16).unwrap();
    assert!(f.len().unwrap() >= 4096, "allocate never shrinks");
}

fn rename_replaces_the_destination(s: &dyn Storage, base: &Path) {
    let (a, b) = (at(base, "a.tmp"), at(base, "b"));
    s.open(&a, OpenMode::CreateNew)
        .unwrap()
        .write_at(b"new", 0)
        .unwrap();
    s.open(&b, OpenMode::CreateNew)
        .unwrap()
        .write_at(b"old!", 0)
        .unwrap();
    s.rename(&a, &b).unwrap();
    assert!(!s.exists(&a));
    let f = s.open(&b, OpenMode::Read).unwrap();
    assert_eq!(f.len().unwrap(), 3);
    s.sync_dir(base).unwrap();
    assert_eq!(kind(&s.rename(&a, &b).unwrap_err()), ErrorKind::NotFound);
}

fn list_dir_is_sorted(s: &dyn Storage, base: &Path) {
    for name in [
        "b.log",
        "a.index",
        "B",
        "00000000000000000010.log",
        "00000000000000000002.log",
    ] {
        s.open(&at(base, name), OpenMode::CreateNew).unwrap();
    }
    s.create_dir_all(&at(base, "topic-0/nested")).unwrap();
    let listed = s.list_dir(base).unwrap();
    let names: Vec<&str> = listed.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "00000000000000000002.log",
            "00000000000000000010.log",
            "B",
            "a.index",
            "b.log",
            "topic-0"
        ]
    );
    assert!(listed.iter().all(|e| e.is_dir == (e.name == "topic-0")));
    let nested = s.list_dir(&at(base, "topic-0")).unwrap();
    assert_eq!(nested.len(), 1);
    assert!(nested[0].is_dir);
    assert_eq!(
        kind(&s.list_dir(&at(base, "nope")).unwrap_err()),
        ErrorKind::NotFound
    );
}

fn remove_file_and_dir(s: &dyn Storage, base: &Path) {
    let d = at(base, "p-0");
    s.create_dir_all(&d).unwrap();
    s.create_dir_all(&d).unwrap(); // idempotent
    let f = at(base, "p-0/x");
    let h = s.open(&f, OpenMode::CreateNew).unwrap();
    h.write_at(b"kept", 0).unwrap();
    assert!(
        s.remove_dir(&d).is_err(),
        "a non-empty dir cannot be removed"
    );
    s.remove_file(&f).unwrap();
    assert!(!s.exists(&f));
    let mut buf = [0u8; 4];
    h.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(&buf, b"kept", "an open handle outlives the name");
    assert_eq!(kind(&s.remove_file(&f).unwrap_err()), ErrorKind::NotFound);
    s.remove_dir(&d).unwrap();
    assert!(!s.exists(&d));
    s.sync_dir(base).unwrap();
}

fn lock_conflicts_until_dropped(s: &dyn Storage, base: &Path) {
    let d = at(base, "logdir");
    s.create_dir_all(&d).unwrap();
    let guard = s.lock_dir(&d).unwrap();
    assert_eq!(guard.dir(), d.as_path());
    assert!(matches!(s.lock_dir(&d), Err(Error::DirLocked { .. })));
    drop(guard);
    let again = s.lock_dir(&d).unwrap();
    drop(again);
    assert!(s.lock_dir(&at(base, "missing")).is_err());
}

fn map_writes_reach_the_file(s: &dyn Storage, base: &Path) {
    let f = s.open(&at(base, "0.index"), OpenMode::CreateNew).unwrap();
    f.set_len(4096).unwrap();
    let mut map = f.map_mut(4096).unwrap();
    assert_eq!(map.bytes().len(), 4096);
    assert!(map.as_mut_slice().iter().all(|&b| b == 0));
    map.as_mut_slice()[8..16].copy_from_slice(&42u64.to_be_bytes());
    map.flush().unwrap();
    let mut buf = [0u8; 8];
    f.read_exact_at(&mut buf, 8).unwrap();
    assert_eq!(u64::from_be_bytes(buf), 42);
    // A store through the shared view: what the other view and the file see.
    map.store(200, b"abc");
    let seen: Vec<u8> = map.bytes()[200..203]
        .iter()
        .map(|b| b.load(Ordering::Relaxed))
        .collect();
    assert_eq!(seen, b"abc");
    assert_eq!(&map.as_mut_slice()[200..203], b"abc");
    map.flush().unwrap();
    f.read_exact_at(&mut buf[..3], 200).unwrap();
    assert_eq!(&buf[..3], b"abc");
    map.as_mut_slice()[100] = 1;
    drop(map);
    f.read_exact_at(&mut buf[..1], 100).unwrap();
    assert_eq!(buf[0], 1, "a dropped map's writes reach the file");
}

/// Pieces of odd sizes, across the backends' chunks, and a leftover to replace: the
/// stream's file holds exactly what was appended, whatever alignment a backend writes at.
fn stream_holds_exactly_what_was_appended(s: &dyn Storage, base: &Path) {
    let path = at(base, "0.log.cleaned");
    s.open(&path, OpenMode::CreateNew)
        .unwrap()
        .write_at(&[b'z'; 5000], 0)
        .unwrap();
    let mut stream = s.create_stream(&path).unwrap();
    assert!(stream.is_empty());
    let mut expected = Vec::new();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for size in [1, 4095, 4096, 1 << 20, 3, (1 << 20) + 5, 777, 0, 10_000] {
        let piece: Vec<u8> = (0..size)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        stream.append(&piece).unwrap();
        expected.extend_from_slice(&piece);
        assert_eq!(stream.len(), expected.len() as u64);
    }
    assert_eq!(stream.finish().unwrap(), expected.len() as u64);
    let f = s.open(&path, OpenMode::Read).unwrap();
    assert_eq!(f.len().unwrap(), expected.len() as u64);
    let mut read = vec![0u8; expected.len()];
    f.read_exact_at(&mut read, 0).unwrap();
    assert!(read == expected, "the stream's bytes read back as appended");

    let empty = at(base, "1.log.cleaned");
    assert_eq!(s.create_stream(&empty).unwrap().finish().unwrap(), 0);
    assert_eq!(s.open(&empty, OpenMode::Read).unwrap().len().unwrap(), 0);
}

macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod real {
            $(
                #[test]
                fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    super::$name(&super::RealStorage, dir.path());
                }
            )*
        }
        mod sim {
            $(
                #[test]
                fn $name() {
                    let sim = super::SimStorage::new(7);
                    let base = std::path::Path::new("/tmp/sim-base");
                    super::Storage::create_dir_all(&*sim, base).unwrap();
                    super::$name(&*sim, base);
                }
            )*
        }
    };
}

contract!(
    open_modes,
    read_at_is_short_only_at_eof,
    write_at_extends_with_a_zero_hole,
    vectored_writes_land_one_after_another,
    set_len_and_allocate,
    rename_replaces_the_destination,
    list_dir_is_sorted,
    remove_file_and_dir,
    lock_conflicts_until_dropped,
    map_writes_reach_the_file,
    stream_holds_exactly_what_was_appended,
);

/// A failed allocation reports the OS's own error (here `EBADF`: the handle is read-only),
/// so that a full disk shows as `ENOSPC` and `Error::is_disk_full` holds: `fs2`'s
/// allocation returned `posix_fallocate`'s result as if it set `errno`, and reported
/// whatever `errno` held before (often "Success").
#[cfg(target_os = "linux")]
#[test]
fn a_failed_allocation_reports_the_os_error() {
    let tmp = tempfile::tempdir().unwrap();
    let s = RealStorage;
    let path = tmp.path().join("f");
    s.open(&path, OpenMode::CreateNew).unwrap();
    let read_only = s.open(&path, OpenMode::Read).unwrap();
    match read_only.allocate(4096).unwrap_err() {
        Error::Io { op, source, .. } => {
            assert_eq!(op, "fallocate");
            assert_eq!(source.raw_os_error(), Some(libc::EBADF), "{source}");
        }
        other => panic!("expected an Io error, got {other:?}"),
    }
}

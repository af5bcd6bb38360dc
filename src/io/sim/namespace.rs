//! The simulated directory tree: the entries processes see now, the entries that survived the
//! last `sync_dir`, and the namespace operations in between.
//!
//! Directories and files are inodes; a directory maps names to inodes. Operations carry the
//! inodes they move, so they can be made durable one directory at a time (`sync_dir`) in any
//! order and still mean the same thing. A crash keeps the durable tree plus a random prefix of
//! the operations not yet synced, as a journaling file system replays a prefix of its journal.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Component, Path, PathBuf};

use super::rng::SimRng;

/// An inode number.
pub(crate) type Ino = u64;

/// The root of relative paths; it holds the `/` entry that absolute paths start from.
pub(crate) const ROOT: Ino = 0;
/// The directory `/`.
const SLASH: Ino = 1;
/// Name under [`ROOT`] of the directory `/`.
const SLASH_NAME: &str = "/";

/// Directory inode → its entries.
pub(crate) type Dirs = BTreeMap<Ino, BTreeMap<String, Ino>>;

/// One change to the directory tree that is not durable yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NsOp {
    Link {
        dir: Ino,
        name: String,
        ino: Ino,
    },
    Unlink {
        dir: Ino,
        name: String,
        ino: Ino,
    },
    Rename {
        from_dir: Ino,
        from_name: String,
        to_dir: Ino,
        to_name: String,
        ino: Ino,
    },
}

impl NsOp {
    fn touches(&self, d: Ino) -> bool {
        match self {
            NsOp::Link { dir, .. } | NsOp::Unlink { dir, .. } => *dir == d,
            NsOp::Rename {
                from_dir, to_dir, ..
            } => *from_dir == d || *to_dir == d,
        }
    }

    fn mentions(&self, i: Ino) -> bool {
        match self {
            NsOp::Link { dir, ino, .. } | NsOp::Unlink { dir, ino, .. } => *dir == i || *ino == i,
            NsOp::Rename {
                from_dir,
                to_dir,
                ino,
                ..
            } => *from_dir == i || *to_dir == i || *ino == i,
        }
    }

    fn apply(&self, dirs: &mut Dirs, dir_inos: &BTreeSet<Ino>) {
        match self {
            NsOp::Link { dir, name, ino } => link_in(dirs, dir_inos, *dir, name, *ino),
            NsOp::Unlink { dir, name, ino } => unlink_in(dirs, *dir, name, *ino),
            NsOp::Rename {
                from_dir,
                from_name,
                to_dir,
                to_name,
                ino,
            } => {
                unlink_in(dirs, *from_dir, from_name, *ino);
                link_in(dirs, dir_inos, *to_dir, to_name, *ino);
            }
        }
    }
}

fn link_in(dirs: &mut Dirs, dir_inos: &BTreeSet<Ino>, dir: Ino, name: &str, ino: Ino) {
    dirs.entry(dir).or_default().insert(name.to_owned(), ino);
    if dir_inos.contains(&ino) {
        dirs.entry(ino).or_default();
    }
}

fn unlink_in(dirs: &mut Dirs, dir: Ino, name: &str, ino: Ino) {
    if let Some(entries) = dirs.get_mut(&dir) {
        if entries.get(name) == Some(&ino) {
            entries.remove(name);
        }
    }
}

/// Splits a path into the names walked from [`ROOT`]: `/a/./b/../c` → `["/", "a", "c"]`.
/// The empty path names nothing (`ENOENT`), as on Linux.
pub(crate) fn components(path: &Path) -> io::Result<Vec<String>> {
    if path.as_os_str().is_empty() {
        return Err(io::Error::from_raw_os_error(super::ENOENT));
    }
    let mut out: Vec<String> = Vec::new();
    for c in path.components() {
        match c {
            Component::RootDir => {
                out.clear();
                out.push(SLASH_NAME.to_owned());
            }
            Component::CurDir => {}
            Component::ParentDir => {
                if out.last().is_some_and(|l| l != SLASH_NAME) {
                    out.pop();
                }
            }
            Component::Normal(s) => match s.to_str() {
                Some(s) => out.push(s.to_owned()),
                None => return Err(io::Error::from_raw_os_error(super::EINVAL)),
            },
            Component::Prefix(_) => return Err(io::Error::from_raw_os_error(super::EINVAL)),
        }
    }
    Ok(out)
}

/// The normalized path of `comps`, used as the key of directory locks.
pub(crate) fn key(comps: &[String]) -> PathBuf {
    comps.iter().collect()
}

/// The directory tree, now and as durable.
#[derive(Debug)]
pub(crate) struct Namespace {
    pub(crate) dirs: Dirs,
    durable: Dirs,
    pending: Vec<NsOp>,
    dir_inos: BTreeSet<Ino>,
    next_ino: Ino,
}

impl Namespace {
    pub(crate) fn new() -> Self {
        let mut dirs = Dirs::new();
        dirs.entry(ROOT)
            .or_default()
            .insert(SLASH_NAME.to_owned(), SLASH);
        dirs.entry(SLASH).or_default();
        Namespace {
            durable: dirs.clone(),
            dirs,
            pending: Vec::new(),
            dir_inos: [ROOT, SLASH].into_iter().collect(),
            next_ino: SLASH + 1,
        }
    }

    pub(crate) fn new_ino(&mut self, is_dir: bool) -> Ino {
        let ino = self.next_ino;
        self.next_ino += 1;
        if is_dir {
            self.dir_inos.insert(ino);
            self.dirs.entry(ino).or_default();
        }
        ino
    }

    pub(crate) fn is_dir(&self, ino: Ino) -> bool {
        self.dir_inos.contains(&ino)
    }

    /// The inode `comps` names now.
    pub(crate) fn lookup(&self, comps: &[String]) -> Option<Ino> {
        let mut cur = ROOT;
        for name in comps {
            cur = *self.dirs.get(&cur)?.get(name)?;
        }
        Some(cur)
    }

    /// The existing parent directory of `comps` and the last name.
    pub(crate) fn parent<'a>(&self, comps: &'a [String]) -> io::Result<(Ino, &'a str)> {
        let (name, dir_comps) = match comps.split_last() {
            Some((name, rest)) if name != SLASH_NAME => (name, rest),
            _ => return Err(io::Error::from_raw_os_error(super::EINVAL)),
        };
        let dir = self
            .lookup(dir_comps)
            .ok_or_else(|| io::Error::from_raw_os_error(super::ENOENT))?;
        if !self.is_dir(dir) {
            return Err(io::Error::from_raw_os_error(super::ENOTDIR));
        }
        Ok((dir, name.as_str()))
    }

    pub(crate) fn entries(&self, dir: Ino) -> Option<&BTreeMap<String, Ino>> {
        self.dirs.get(&dir)
    }

    fn record(&mut self, op: NsOp) {
        op.apply(&mut self.dirs, &self.dir_inos);
        self.pending.push(op);
    }

    pub(crate) fn link(&mut self, dir: Ino, name: &str, ino: Ino) {
        self.record(NsOp::Link {
            dir,
            name: name.to_owned(),
            ino,
        });
    }

    pub(crate) fn unlink(&mut self, dir: Ino, name: &str, ino: Ino) {
        self.record(NsOp::Unlink {
            dir,
            name: name.to_owned(),
            ino,
        });
    }

    pub(crate) fn rename(&mut self, from: (Ino, &str), to: (Ino, &str), ino: Ino) {
        self.record(NsOp::Rename {
            from_dir: from.0,
            from_name: from.1.to_owned(),
            to_dir: to.0,
            to_name: to.1.to_owned(),
            ino,
        });
    }

    /// `sync_dir`: the operations that touch `dir` become durable, in order.
    pub(crate) fn commit_dir(&mut self, dir: Ino) {
        let (now, later): (Vec<NsOp>, Vec<NsOp>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|op| op.touches(dir));
        for op in &now {
            op.apply(&mut self.durable, &self.dir_inos);
        }
        self.pending = later;
    }

    /// Every pending operation becomes durable.
    pub(crate) fn commit_all(&mut self) {
        self.durable = self.dirs.clone();
        self.pending.clear();
    }

    /// Links `comps` to `ino` both now and durably, creating missing parent directories the
    /// same way; for test set-up that bypasses the crash model.
    pub(crate) fn link_durably(&mut self, comps: &[String], ino: Ino) -> io::Result<()> {
        let Some((last, parents)) = comps.split_last() else {
            return Err(io::Error::from_raw_os_error(super::EINVAL));
        };
        let mut cur = ROOT;
        for name in parents {
            let next = match self.dirs.get(&cur).and_then(|d| d.get(name)) {
                Some(&i) if self.is_dir(i) => i,
                Some(_) => return Err(io::Error::from_raw_os_error(super::ENOTDIR)),
                None => self.new_ino(true),
            };
            link_in(&mut self.dirs, &self.dir_inos, cur, name, next);
            link_in(&mut self.durable, &self.dir_inos, cur, name, next);
            cur = next;
        }
        link_in(&mut self.dirs, &self.dir_inos, cur, last, ino);
        link_in(&mut self.durable, &self.dir_inos, cur, last, ino);
        Ok(())
    }

    /// Removes the entry `dir/name` now and durably, and forgets pending operations on it.
    pub(crate) fn unlink_durably(&mut self, dir: Ino, name: &str, ino: Ino) {
        unlink_in(&mut self.dirs, dir, name, ino);
        unlink_in(&mut self.durable, dir, name, ino);
        self.pending.retain(|op| !op.mentions(ino));
    }

    /// Power loss: the durable tree plus a random prefix of the pending operations.
    pub(crate) fn crash(&mut self, rng: &mut SimRng) {
        let keep = rng.range_inclusive(0, self.pending.len() as u64) as usize;
        for op in self.pending.iter().take(keep) {
            op.apply(&mut self.durable, &self.dir_inos);
        }
        self.pending.clear();
        self.prune_unreachable();
        self.dirs = self.durable.clone();
    }

    /// Drops directory inodes that no path reaches any more (after a crash, nothing else can).
    fn prune_unreachable(&mut self) {
        let live = reachable(&self.durable);
        self.durable.retain(|ino, _| live.contains(ino));
        self.dir_inos.retain(|ino| live.contains(ino));
    }

    /// Inodes reachable from the root now (after a crash: the only ones that exist).
    pub(crate) fn reachable_now(&self) -> BTreeSet<Ino> {
        reachable(&self.dirs)
    }

    /// Every inode some tree or pending operation still mentions.
    pub(crate) fn mentioned(&self) -> BTreeSet<Ino> {
        let mut out: BTreeSet<Ino> = [ROOT].into_iter().collect();
        for dirs in [&self.dirs, &self.durable] {
            for entries in dirs.values() {
                out.extend(entries.values().copied());
            }
        }
        for op in &self.pending {
            match op {
                NsOp::Link { dir, ino, .. } | NsOp::Unlink { dir, ino, .. } => {
                    out.extend([*dir, *ino]);
                }
                NsOp::Rename {
                    from_dir,
                    to_dir,
                    ino,
                    ..
                } => {
                    out.extend([*from_dir, *to_dir, *ino]);
                }
            }
        }
        out
    }

    /// Forgets directory inodes nothing mentions (they were removed and the removal synced).
    pub(crate) fn forget_dirs_except(&mut self, keep: &BTreeSet<Ino>) {
        self.dir_inos.retain(|i| keep.contains(i));
        self.dirs.retain(|i, _| keep.contains(i));
        self.durable.retain(|i, _| keep.contains(i));
    }
}

fn reachable(dirs: &Dirs) -> BTreeSet<Ino> {
    let mut seen = BTreeSet::new();
    let mut stack = vec![ROOT];
    while let Some(ino) = stack.pop() {
        if !seen.insert(ino) {
            continue;
        }
        if let Some(entries) = dirs.get(&ino) {
            stack.extend(entries.values().copied());
        }
    }
    seen
}

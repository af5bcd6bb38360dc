//! `Storage` for [`SimStorage`]: the namespace calls.

use std::path::Path;
use std::sync::Arc;

use super::namespace::{components, key};
use super::{
    err, os, DirEntry, DirLock, FileData, OpenMode, SimDirLock, SimOp, SimStorage, Storage,
    StorageFile, EEXIST, EINVAL, EISDIR, ENOENT, ENOTDIR, ENOTEMPTY, LOCK_FILE_NAME,
};
use crate::error::{Error, Result};

impl Storage for SimStorage {
    fn open(&self, path: &Path, mode: OpenMode) -> Result<Arc<dyn StorageFile>> {
        let mut inner = self.inner();
        let comps = components(path).map_err(err("open", path))?;
        if let Some(ino) = inner.ns.lookup(&comps) {
            if inner.ns.is_dir(ino) {
                return Err(Error::io("open", path, os(EISDIR)));
            }
            if mode == OpenMode::CreateNew {
                return Err(Error::io("open", path, os(EEXIST)));
            }
            return Ok(Arc::new(inner.open_handle(&self.shared, path, ino, mode)));
        }
        if matches!(mode, OpenMode::Read | OpenMode::ReadWrite) {
            return Err(Error::io("open", path, os(ENOENT)));
        }
        let (dir, name) = inner.ns.parent(&comps).map_err(err("open", path))?;
        if let Some(kind) = inner.roll(SimOp::Create, path) {
            return Err(Error::io("open", path, inner.fault(kind)));
        }
        let ino = inner.ns.new_ino(false);
        inner.files.insert(ino, FileData::default());
        inner.ns.link(dir, name, ino);
        Ok(Arc::new(inner.open_handle(&self.shared, path, ino, mode)))
    }

    fn try_exists(&self, path: &Path) -> Result<bool> {
        let inner = self.inner();
        Ok(components(path)
            .ok()
            .is_some_and(|c| inner.ns.lookup(&c).is_some()))
    }

    fn create_dir_all(&self, path: &Path) -> Result<()> {
        let mut inner = self.inner();
        let comps = components(path).map_err(err("create_dir", path))?;
        for i in 1..=comps.len() {
            match inner.ns.lookup(&comps[..i]) {
                Some(ino) if inner.ns.is_dir(ino) => continue,
                Some(_) => return Err(Error::io("create_dir", path, os(ENOTDIR))),
                None => {
                    let (dir, name) = inner
                        .ns
                        .parent(&comps[..i])
                        .map_err(err("create_dir", path))?;
                    let ino = inner.ns.new_ino(true);
                    inner.ns.link(dir, name, ino);
                }
            }
        }
        Ok(())
    }

    fn list_dir(&self, dir: &Path) -> Result<Vec<DirEntry>> {
        let inner = self.inner();
        let comps = components(dir).map_err(err("list", dir))?;
        let ino = inner
            .ns
            .lookup(&comps)
            .ok_or_else(|| Error::io("list", dir, os(ENOENT)))?;
        let entries = match inner.ns.entries(ino) {
            Some(e) if inner.ns.is_dir(ino) => e,
            _ => return Err(Error::io("list", dir, os(ENOTDIR))),
        };
        // BTreeMap order is byte order of the names, the order `list_dir` promises.
        Ok(entries
            .iter()
            .map(|(name, &i)| DirEntry {
                name: name.clone(),
                is_dir: inner.ns.is_dir(i),
            })
            .collect())
    }

    fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        let mut inner = self.inner();
        let from_c = components(from).map_err(err("rename", from))?;
        let to_c = components(to).map_err(err("rename", to))?;
        let ino = inner
            .ns
            .lookup(&from_c)
            .ok_or_else(|| Error::io("rename", from, os(ENOENT)))?;
        let (from_dir, from_name) = inner.ns.parent(&from_c).map_err(err("rename", from))?;
        let (to_dir, to_name) = inner.ns.parent(&to_c).map_err(err("rename", to))?;
        let moving_dir = inner.ns.is_dir(ino);
        if moving_dir && to_c.len() > from_c.len() && to_c.starts_with(&from_c) {
            return Err(Error::io("rename", from, os(EINVAL)));
        }
        if let Some(target) = inner.ns.lookup(&to_c) {
            if target == ino {
                return Ok(());
            }
            match (moving_dir, inner.ns.is_dir(target)) {
                (false, true) => return Err(Error::io("rename", to, os(EISDIR))),
                (true, false) => return Err(Error::io("rename", to, os(ENOTDIR))),
                (true, true) if inner.ns.entries(target).is_some_and(|e| !e.is_empty()) => {
                    return Err(Error::io("rename", to, os(ENOTEMPTY)))
                }
                _ => {}
            }
        }
        if let Some(kind) = inner.roll(SimOp::Rename, from) {
            return Err(Error::io("rename", from, inner.fault(kind)));
        }
        inner
            .ns
            .rename((from_dir, from_name), (to_dir, to_name), ino);
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> Result<()> {
        let mut inner = self.inner();
        let ino = inner.file_ino(path).map_err(err("remove", path))?;
        let comps = components(path).map_err(err("remove", path))?;
        let (dir, name) = inner.ns.parent(&comps).map_err(err("remove", path))?;
        inner.ns.unlink(dir, name, ino);
        Ok(())
    }

    fn remove_dir(&self, path: &Path) -> Result<()> {
        let mut inner = self.inner();
        let comps = components(path).map_err(err("remove_dir", path))?;
        let ino = inner
            .ns
            .lookup(&comps)
            .ok_or_else(|| Error::io("remove_dir", path, os(ENOENT)))?;
        if !inner.ns.is_dir(ino) {
            return Err(Error::io("remove_dir", path, os(ENOTDIR)));
        }
        if inner.ns.entries(ino).is_some_and(|e| !e.is_empty()) {
            return Err(Error::io("remove_dir", path, os(ENOTEMPTY)));
        }
        let (dir, name) = inner.ns.parent(&comps).map_err(err("remove_dir", path))?;
        inner.ns.unlink(dir, name, ino);
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> Result<()> {
        let mut inner = self.inner();
        let comps = components(dir).map_err(err("sync_dir", dir))?;
        let ino = inner
            .ns
            .lookup(&comps)
            .ok_or_else(|| Error::io("open_dir", dir, os(ENOENT)))?;
        if let Some(kind) = inner.roll(SimOp::SyncDir, dir) {
            return Err(Error::io("sync_dir", dir, inner.fault(kind)));
        }
        // fsync of a regular file's path is legal on Linux and commits nothing of interest.
        inner.ns.commit_dir(ino);
        inner.gc();
        Ok(())
    }

    fn lock_dir(&self, dir: &Path) -> Result<Box<dyn DirLock>> {
        let mut inner = self.inner();
        let comps = components(dir).map_err(err("lock", dir))?;
        let ino = inner
            .ns
            .lookup(&comps)
            .ok_or_else(|| Error::io("open", dir, os(ENOENT)))?;
        if !inner.ns.is_dir(ino) {
            return Err(Error::io("open", dir, os(ENOTDIR)));
        }
        let lock_key = key(&comps);
        if inner.locks.contains(&lock_key) {
            return Err(Error::DirLocked {
                dir: dir.to_path_buf(),
            });
        }
        let has_lock_file = inner
            .ns
            .entries(ino)
            .is_some_and(|e| e.contains_key(LOCK_FILE_NAME));
        if !has_lock_file {
            let file = inner.ns.new_ino(false);
            inner.files.insert(file, FileData::default());
            inner.ns.link(ino, LOCK_FILE_NAME, file);
        }
        inner.locks.insert(lock_key.clone());
        let generation = inner.generation;
        Ok(Box::new(SimDirLock::new(
            self.shared.clone(),
            dir,
            lock_key,
            generation,
        )))
    }
}

//! A piece of the offsets log decoded on the load's reading thread, for the view to apply.
//!
//! A load's work divides into what needs only the log's bytes (walking the records,
//! decoding keys and values) and what needs the view (finding tables, filling slots).
//! The reading thread does the first for the next piece while the loading thread does
//! the second for this one, so that each does about half. The usual batch (offset
//! commits of one group, with values) becomes a list of offsets by group and topic;
//! anything else (tombstones, group metadata, transactions, markers, a record that does
//! not decode) stays a batch that the view replays itself, and that reports any error.

use std::ops::Range;

use super::{same_bytes, Batch};
use crate::offsets::codec::{self, KeyRef};

/// Bytes of a name in [`Decoded::names`], or of a text in [`Decoded::texts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Span {
    at: u32,
    len: u32,
}

impl Span {
    const EMPTY: Span = Span { at: 0, len: 0 };

    fn range(self) -> Range<usize> {
        self.at as usize..(self.at + self.len) as usize
    }
}

/// One committed offset of a run.
#[derive(Debug, Clone, Copy)]
pub(super) struct Entry {
    pub partition: i32,
    pub leader_epoch: i32,
    pub offset: i64,
    pub commit_timestamp: i64,
    pub metadata: Span,
}

/// Offsets of one topic: `entries` of [`Decoded::entries`], in log order, the highest
/// partition among them `top` (for the view to size a new table once).
#[derive(Debug, Clone)]
pub(super) struct Run {
    pub topic: Span,
    pub entries: Range<usize>,
    pub top: i32,
}

/// What the view applies, in log order.
#[derive(Debug, Clone)]
pub(super) enum Item {
    /// Runs of one group: `runs` of [`Decoded::runs`].
    Group { group: Span, runs: Range<usize> },
    /// A batch at these bytes of the piece, for the view's own replay.
    Batch(Range<usize>),
}

/// A decoded piece. Its vectors are kept from one piece to the next.
#[derive(Debug, Default)]
pub struct Decoded {
    pub(super) items: Vec<Item>,
    pub(super) runs: Vec<Run>,
    pub(super) entries: Vec<Entry>,
    names: Vec<u8>,
    texts: String,
    next_offset: Option<i64>,
}

impl Decoded {
    /// The offset after the piece's last batch (none for a piece without one).
    pub fn next_offset(&self) -> Option<i64> {
        self.next_offset
    }

    pub(super) fn name(&self, span: Span) -> &[u8] {
        &self.names[span.range()]
    }

    pub(super) fn text(&self, span: Span) -> &str {
        &self.texts[span.range()]
    }

    fn clear(&mut self) {
        self.items.clear();
        self.runs.clear();
        self.entries.clear();
        self.names.clear();
        self.texts.clear();
        self.next_offset = None;
    }

    /// Decodes `piece`, whole batches from its start (the last may be torn), into `self`.
    pub fn decode_piece(&mut self, piece: &[u8]) {
        self.clear();
        let mut at = 0;
        while at < piece.len() {
            let Ok(batch) = Batch::parse(&piece[at..]) else {
                // The view's replay of the rest says what is wrong with it.
                self.items.push(Item::Batch(at..piece.len()));
                return;
            };
            let len = batch.as_bytes().len();
            if !self.decode_batch(&batch) {
                self.items.push(Item::Batch(at..at + len));
            }
            self.next_offset = Some(batch.header().next_offset());
            at += len;
        }
    }

    /// Adds a usual batch's offsets; false, adding nothing, for any other batch.
    fn decode_batch(&mut self, batch: &Batch<'_>) -> bool {
        let header = batch.header();
        if header.is_control() || header.is_transactional() {
            return false;
        }
        let marks = (
            self.items.len(),
            self.runs.len(),
            self.entries.len(),
            self.names.len(),
            self.texts.len(),
        );
        // A group run that the batch before left open takes this batch's runs only if
        // the group is the same; it is never reopened after a failure, as it is cut
        // back to its length here.
        let open = match self.items.last() {
            Some(Item::Group { runs, .. }) => Some(runs.end),
            _ => None,
        };
        if self.decode_records(batch).is_some() {
            return true;
        }
        let (items, runs, entries, names, texts) = marks;
        self.items.truncate(items);
        if let (Some(end), Some(Item::Group { runs, .. })) = (open, self.items.last_mut()) {
            runs.end = end;
        }
        self.runs.truncate(runs);
        self.entries.truncate(entries);
        self.names.truncate(names);
        self.texts.truncate(texts);
        false
    }

    /// The records of a batch as runs; `None` at the first record that is not an offset
    /// commit with a value.
    fn decode_records(&mut self, batch: &Batch<'_>) -> Option<()> {
        // A key that repeats the bytes up to the partition (version, group, topic) of a
        // key decoded before in this batch continues its run without decoding the names.
        // Only a decoded key opens a run: a batch's first key always decodes.
        let mut prefix: Option<&[u8]> = None;
        let mut records = batch.usual_records().ok()?;
        records.try_for_each(|record| {
            let (key, value) = (record.key?, record.value?);
            let partition = match prefix {
                Some(p) if key.len() == p.len() + 4 && same_bytes(&key[..p.len()], p) => {
                    let mut id = [0u8; 4];
                    id.copy_from_slice(&key[p.len()..]);
                    i32::from_be_bytes(id)
                }
                _ => {
                    let KeyRef::OffsetCommit {
                        group,
                        topic,
                        partition,
                    } = codec::decode_key_ref(key).ok()?
                    else {
                        return None;
                    };
                    self.start_run(group.as_bytes(), topic.as_bytes())?;
                    prefix = Some(&key[..key.len() - 4]);
                    partition
                }
            };
            let v = codec::decode_offset_commit_value_ref(value).ok()?;
            if v.expire_timestamp >= 0 {
                // An explicit expiry (version 1) has no place in an entry: the replay
                // takes such a batch the general way, and keeps it.
                return None;
            }
            let metadata = match v.metadata {
                "" => Span::EMPTY,
                text => {
                    let at = u32::try_from(self.texts.len()).ok()?;
                    self.texts.push_str(text);
                    Span {
                        at,
                        len: u32::try_from(text.len()).ok()?,
                    }
                }
            };
            if let Some(run) = self.runs.last_mut() {
                run.top = run.top.max(partition);
            }
            self.entries.push(Entry {
                partition,
                leader_epoch: v.leader_epoch,
                offset: v.offset,
                commit_timestamp: v.commit_timestamp,
                metadata,
            });
            Some(())
        })?;
        // Every record was usual, and nothing follows them.
        if records.rest().next().is_some() {
            return None;
        }
        self.close_run();
        Some(())
    }

    /// Ends the last run at the last entry.
    fn close_run(&mut self) {
        if let Some(run) = self.runs.last_mut() {
            run.entries.end = self.entries.len();
        }
    }

    /// Opens a run for `topic`, in the group run open when it is `group`'s, else in a new
    /// one.
    fn start_run(&mut self, group: &[u8], topic: &[u8]) -> Option<()> {
        self.close_run();
        let topic = push_name(&mut self.names, topic)?;
        let same_group = match self.items.last() {
            Some(Item::Group { group: g, .. }) => same_bytes(&self.names[g.range()], group),
            _ => false,
        };
        if !same_group {
            let group = push_name(&mut self.names, group)?;
            let at = self.runs.len();
            self.items.push(Item::Group {
                group,
                runs: at..at,
            });
        }
        let at = self.entries.len();
        self.runs.push(Run {
            topic,
            entries: at..at,
            top: -1,
        });
        if let Some(Item::Group { runs, .. }) = self.items.last_mut() {
            runs.end = self.runs.len();
        }
        Some(())
    }
}

fn push_name(names: &mut Vec<u8>, name: &[u8]) -> Option<Span> {
    let at = u32::try_from(names.len()).ok()?;
    names.extend_from_slice(name);
    Some(Span {
        at,
        len: u32::try_from(name.len()).ok()?,
    })
}

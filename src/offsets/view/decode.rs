//! A piece of the offsets log decoded on the load's reading thread, for the view to apply.
//!
//! A load's work divides into what needs only the log's bytes (walking the records,
//! decoding keys and values) and what needs the view (finding tables, filling slots).
//! The reading thread does the first for the next piece while the loading thread does
//! the second for this one, so that each does about half (a piece the reading thread
//! had no time for, the loading thread decodes itself). The usual batch (offset commits
//! of one group, with values) becomes a list of offsets by group and topic; anything
//! else (tombstones, group metadata, transactions, markers, a record that does not
//! decode) stays a batch that the view replays itself, and that reports any error.
//!
//! A commit's records mostly repeat the one before but for their partition, offset
//! delta, offset and leader epoch, so the decoder reads them by that record's
//! [`Template`]: a few word compares and the fields' loads, where walking every varint
//! and comparing the names cost twice as much. Their commit time and metadata, the same
//! for a whole commit, are kept once per run: an entry is 16 bytes, which the loading
//! thread reads back out of the other core's cache.

use std::ops::Range;

use super::{same_bytes, Batch};
use crate::offsets::codec::{self, KeyRef};
use crate::record::{short_bytes, short_unsigned, unzigzag, Compression, HEADER_LEN};

/// Bytes of a name in [`Decoded::names`], or of a text in [`Decoded::texts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Span {
    at: u32,
    len: u32,
}

impl Span {
    const EMPTY: Span = Span { at: 0, len: 0 };

    /// The span of `len` bytes from `at`, if both fit.
    fn of(at: usize, len: usize) -> Option<Span> {
        Some(Span {
            at: u32::try_from(at).ok()?,
            len: u32::try_from(len).ok()?,
        })
    }

    fn range(self) -> Range<usize> {
        self.at as usize..(self.at + self.len) as usize
    }
}

/// One committed offset of a run: 16 bytes, written by one thread and read by the other.
#[derive(Debug, Clone, Copy)]
pub(super) struct Entry {
    pub partition: i32,
    pub leader_epoch: i32,
    pub offset: i64,
}

/// Offsets of one topic, committed at one time with the same metadata: `entries` of
/// [`Decoded::entries`], in log order, the highest partition among them `top` (for the
/// view to size a new table once). A commit's offsets share their commit time and nearly
/// always their metadata, so these live here rather than in every entry; a record with
/// others starts another run.
#[derive(Debug, Clone)]
pub(super) struct Run {
    pub topic: Span,
    pub entries: Range<usize>,
    pub top: i32,
    pub commit_timestamp: i64,
    pub metadata: Span,
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
    /// commit with a value, or not usual (as [`crate::record::UsualRecords`] takes them:
    /// one- or two-byte varints, no headers).
    fn decode_records(&mut self, batch: &Batch<'_>) -> Option<()> {
        let header = batch.header();
        if header.compression() != Compression::None {
            return None;
        }
        let count = usize::try_from(header.records_count).ok()?;
        let mut rest = batch.as_bytes().get(HEADER_LEN..)?;
        let mut previous = -1i32;
        // A key that repeats the bytes up to the partition (version, group, topic) of a
        // key decoded before in this batch continues its run without decoding the names.
        // Only a decoded key opens a run: a batch's first key always decodes.
        let mut prefix: Option<&[u8]> = None;
        let mut top = -1i32;
        // The record before, when the next ones may repeat it (see `Template`).
        let mut template: Option<Template> = None;
        for _ in 0..count {
            if let Some((offset_delta, entry, len)) = template.as_ref().and_then(|t| t.read(rest)) {
                // The same commit time and metadata as the template, so the same run.
                if offset_delta <= previous || offset_delta > header.last_offset_delta {
                    return None;
                }
                previous = offset_delta;
                top = top.max(entry.partition);
                self.entries.push(entry);
                rest = &rest[len..];
                continue;
            }
            let record = rest;
            let mut head = 0;
            let length = short_unsigned(rest, &mut head)?;
            if length & 1 == 1 {
                return None;
            }
            let body = rest.get(head..head + (length >> 1) as usize)?;
            rest = &rest[head + body.len()..];
            // No headers: the count, zero, is the record's last byte.
            if *body.last()? != 0 {
                return None;
            }
            let mut at = 1; // past the attributes
            short_unsigned(body, &mut at)?; // the timestamp delta
            let offset_delta_at = at;
            let offset_delta = unzigzag(short_unsigned(body, &mut at)?);
            if offset_delta <= previous || offset_delta > header.last_offset_delta {
                return None;
            }
            let offset_delta_len = at - offset_delta_at;
            let short_timestamp = offset_delta_at == 2; // a one-byte delta
            previous = offset_delta;
            let key = short_bytes(body, &mut at)??;
            let key_end = at;
            let value = short_bytes(body, &mut at)??;
            let value_at = at - value.len();
            if at + 1 != body.len() {
                return None;
            }
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
                    self.set_top(top);
                    top = -1;
                    self.start_run(group.as_bytes(), topic.as_bytes())?;
                    prefix = Some(&key[..key.len() - 4]);
                    partition
                }
            };
            let v = codec::decode_offset_commit_value_ref(value).ok()?;
            if v.expire_timestamp >= 0 {
                // An explicit expiry (version 1) has no place in a run: the replay takes
                // such a batch the general way, and keeps it.
                return None;
            }
            if !self.run_takes(v.commit_timestamp, v.metadata) {
                self.set_top(top);
                top = -1;
                self.split_run(v.commit_timestamp, v.metadata)?;
            }
            top = top.max(partition);
            self.entries.push(Entry {
                partition,
                leader_epoch: v.leader_epoch,
                offset: v.offset,
            });
            template = short_timestamp
                .then(|| {
                    let fields = Fields {
                        offset_delta: (head + offset_delta_at, offset_delta_len),
                        partition: head + key_end - 4,
                        value: head + value_at,
                    };
                    Template::new(&record[..head + body.len()], fields, value)
                })
                .flatten();
        }
        // Every record was usual, and nothing follows them.
        if !rest.is_empty() {
            return None;
        }
        self.set_top(top);
        self.close_run();
        Some(())
    }

    /// Raises the last run's highest partition to `top`.
    fn set_top(&mut self, top: i32) {
        if let Some(run) = self.runs.last_mut() {
            run.top = run.top.max(top);
        }
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
        self.push_run(topic, 0, Span::EMPTY);
        Some(())
    }

    /// Whether the last run takes an offset committed at `commit_timestamp` with
    /// `metadata`: it has them, or no offsets yet (and then takes them).
    fn run_takes(&mut self, commit_timestamp: i64, metadata: &str) -> bool {
        let Some(run) = self.runs.last_mut() else {
            return false;
        };
        if run.entries.start == self.entries.len() {
            run.commit_timestamp = commit_timestamp;
            run.metadata = match push_text(&mut self.texts, metadata) {
                Some(span) => span,
                None => return false,
            };
            return true;
        }
        run.commit_timestamp == commit_timestamp && &self.texts[run.metadata.range()] == metadata
    }

    /// Ends the last run and opens another for its topic, committed at `commit_timestamp`
    /// with `metadata`.
    fn split_run(&mut self, commit_timestamp: i64, metadata: &str) -> Option<()> {
        self.close_run();
        let topic = self.runs.last()?.topic;
        let metadata = push_text(&mut self.texts, metadata)?;
        self.push_run(topic, commit_timestamp, metadata);
        Some(())
    }

    /// Adds a run without offsets to the group run open.
    fn push_run(&mut self, topic: Span, commit_timestamp: i64, metadata: Span) {
        let at = self.entries.len();
        self.runs.push(Run {
            topic,
            entries: at..at,
            top: -1,
            commit_timestamp,
            metadata,
        });
        if let Some(Item::Group { runs, .. }) = self.items.last_mut() {
            runs.end = self.runs.len();
        }
    }
}

/// Bytes of a record a [`Template`] holds at most.
const TEMPLATE_BYTES: usize = 128;

/// Where a record's varying fields lie, from its first byte.
#[derive(Debug, Clone, Copy)]
struct Fields {
    /// The offset delta, and its length (one or two bytes).
    offset_delta: (usize, usize),
    /// The key's last four bytes.
    partition: usize,
    /// The value (version 3, empty metadata: 24 bytes).
    value: usize,
}

/// A record of a commit that the next ones usually repeat byte for byte, but for their
/// offset delta, partition, offset and leader epoch: a commit's records share their
/// group, topic, timestamps, metadata and layout. A record that repeats it reads from
/// those fields' places alone, where the general decoding walks every varint and
/// compares the key's names; it is then exactly the record the general decoding would
/// read (every byte that tells the layout is the same, and the offset delta is as long),
/// and belongs to the same run (its commit time and metadata are the template's).
struct Template {
    record: [u8; TEMPLATE_BYTES],
    len: usize,
    /// Per word of `record`: the bits that a repeat has the same.
    same: [u64; TEMPLATE_BYTES / 8],
    fields: Fields,
}

impl Template {
    /// The template of `record`, whose fields lie at `fields`, if it is short enough and
    /// its value is the usual one (the fixed layout `Template::read` reads).
    fn new(record: &[u8], fields: Fields, value: &[u8]) -> Option<Template> {
        let usual = value.len() == 24 && value[..2] == [0, 3] && value[14..16] == [0, 0];
        if !usual || record.len() > TEMPLATE_BYTES {
            return None;
        }
        let mut copy = [0u8; TEMPLATE_BYTES];
        copy[..record.len()].copy_from_slice(record);
        let mut mask = [0u8; TEMPLATE_BYTES];
        mask[..record.len()].fill(0xff);
        let (delta, delta_len) = fields.offset_delta;
        mask[delta..delta + delta_len].fill(0);
        mask[fields.partition..fields.partition + 4].fill(0);
        // The value's offset and leader epoch.
        mask[fields.value + 2..fields.value + 14].fill(0);
        let mut same = [0u64; TEMPLATE_BYTES / 8];
        for (word, bytes) in same.iter_mut().zip(mask.chunks_exact(8)) {
            *word = u64::from_ne_bytes(word_of(bytes));
        }
        Some(Template {
            record: copy,
            len: record.len(),
            same,
            fields,
        })
    }

    /// The offset delta, the entry and the length of the record at the start of `rest`
    /// if it repeats the template; `None` otherwise (or when fewer than the template's
    /// whole words are left, at a batch's last record: the general decoding reads it).
    #[inline(always)]
    fn read(&self, rest: &[u8]) -> Option<(i32, Entry, usize)> {
        let words = self.len.div_ceil(8);
        let next = rest.get(..words * 8)?;
        let mut differ = 0u64;
        for ((a, b), same) in next
            .chunks_exact(8)
            .zip(self.record.chunks_exact(8))
            .zip(&self.same)
        {
            differ |= (u64::from_ne_bytes(word_of(a)) ^ u64::from_ne_bytes(word_of(b))) & same;
        }
        // The offset delta is as long as the template's: its bytes but the last have the
        // high bit set.
        let (at, len) = self.fields.offset_delta;
        let first = u32::from(next[at]);
        let delta = match len {
            1 if first < 0x80 => first,
            2 if first >= 0x80 && next[at + 1] < 0x80 => {
                (first & 0x7f) | u32::from(next[at + 1]) << 7
            }
            _ => return None,
        };
        if differ != 0 {
            return None;
        }
        let value = self.fields.value;
        let at = |i: usize| u64::from_be_bytes(word_of(&next[i..i + 8])) as i64;
        let at4 = |i: usize| {
            let mut b = [0u8; 4];
            b.copy_from_slice(&next[i..i + 4]);
            i32::from_be_bytes(b)
        };
        let entry = Entry {
            partition: at4(self.fields.partition),
            leader_epoch: at4(value + 10),
            offset: at(value + 2),
        };
        Some((unzigzag(delta), entry, self.len))
    }
}

#[inline(always)]
fn word_of(bytes: &[u8]) -> [u8; 8] {
    let mut w = [0u8; 8];
    w.copy_from_slice(&bytes[..8]);
    w
}

fn push_text(texts: &mut String, text: &str) -> Option<Span> {
    if text.is_empty() {
        return Some(Span::EMPTY);
    }
    let span = Span::of(texts.len(), text.len())?;
    texts.push_str(text);
    Some(span)
}

fn push_name(names: &mut Vec<u8>, name: &[u8]) -> Option<Span> {
    let span = Span::of(names.len(), name.len())?;
    names.extend_from_slice(name);
    Some(span)
}

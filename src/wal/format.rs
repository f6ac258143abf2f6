//! The on-disk format of the WAL, in one place: file naming, the segment header, the record
//! frame, and the pure functions that encode and check them. Nothing here does I/O.
//!
//! `wal-format.md` is the prose spec of these bytes; keep the two in step. Every integer on disk
//! is little-endian and has a fixed width (`to_le_bytes` / `from_le_bytes` only, never `usize`).

/// Largest payload a record may carry, in bytes. The writer refuses a larger one before
/// writing anything; the scanner treats a larger length field as damage; the event decoder
/// allocates no more.
pub const PAYLOAD_BYTES_MAX: usize = 1 << 20;

/// Permissions of the files the writer creates (segments, `.compact` files, `LOCK`): the
/// owner's only, since the log names servers, tables, the predicate and key values.
pub const FILE_MODE: u32 = 0o600;
/// Permissions of a WAL directory the writer creates (and of missing parents it creates).
pub const FILE_MODE_DIR: u32 = 0o700;

/// The first 8 bytes of every segment.
pub const SEGMENT_MAGIC: [u8; 8] = *b"ARCHWAL\0";
/// The format version this code writes and the only one it reads.
pub const FORMAT_VERSION: u16 = 1;
/// Size of the segment header, in bytes. Records start at this offset.
pub const HEADER_BYTES: usize = 64;
/// Bytes a record frame adds around its payload: len (4) + type (2) + flags (2) + lsn (8) before
/// it, crc (4) after it.
pub const FRAME_OVERHEAD_BYTES: usize = 20;
/// Bytes of the frame before the payload.
pub const FRAME_PREFIX_BYTES: usize = 16;
/// Largest payload a record may carry (the event vocabulary's limit), as the frame's `u32`
/// length field holds it.
#[allow(
    clippy::cast_possible_truncation,
    reason = "exact: the assertion below checks that the value survives the cast"
)]
pub const PAYLOAD_BYTES_MAX_U32: u32 = PAYLOAD_BYTES_MAX as u32;
const _: () = assert!(PAYLOAD_BYTES_MAX_U32 as usize == PAYLOAD_BYTES_MAX);
/// Default segment size: 64 MiB. It is the *largest* size a log's segments grow to
/// ([`crate::wal::WalOptions::segment_bytes`]); a new log starts at [`SEGMENT_BYTES_FIRST`].
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;
/// Size of a new log's first segment: 2 MiB, so that a small job's WAL directory stays small.
/// Each next segment doubles the previous one's size, up to the configured maximum
/// ([`next_segment_bytes`]).
pub const SEGMENT_BYTES_FIRST: u64 = 2 << 20;
/// Smallest segment size accepted. Segments smaller than a header plus a frame of the largest
/// payload ([`SEGMENT_BYTES_FULL_PAYLOAD`]) refuse payloads that would not fit an empty segment.
pub const SEGMENT_BYTES_MIN: u64 = 4096;
/// Smallest segment size that accepts every payload up to `PAYLOAD_BYTES_MAX`.
pub const SEGMENT_BYTES_FULL_PAYLOAD: u64 =
    (HEADER_BYTES + FRAME_OVERHEAD_BYTES + PAYLOAD_BYTES_MAX) as u64;
/// Largest segment size accepted: 1 GiB.
pub const SEGMENT_BYTES_MAX: u64 = 1 << 30;
// A whole segment is read into memory (the last one) or indexed with `usize` offsets.
const _: () = assert!(SEGMENT_BYTES_MAX <= usize::MAX as u64);
/// Name of the lock file inside the WAL directory.
pub const LOCK_FILE_NAME: &str = "LOCK";

// How the constants above depend on each other, checked when compiling.
// The frame: len (4) + type (2) + flags (2) + lsn (8) before the payload, crc (4) after it.
const _: () = assert!(FRAME_PREFIX_BYTES == 4 + 2 + 2 + 8);
const _: () = assert!(FRAME_OVERHEAD_BYTES == FRAME_PREFIX_BYTES + 4);
// The header records its own length in a u16 field.
const _: () = assert!(HEADER_BYTES < 1 << 16);
// The default segment size is an accepted size, and accepts every payload.
const _: () = assert!(SEGMENT_BYTES_MIN <= DEFAULT_SEGMENT_BYTES);
const _: () = assert!(DEFAULT_SEGMENT_BYTES <= SEGMENT_BYTES_MAX);
const _: () = assert!(SEGMENT_BYTES_FULL_PAYLOAD <= DEFAULT_SEGMENT_BYTES);
// The first segment is an accepted size no larger than the default maximum, and it holds every
// payload, so that growing segments never refuse a payload the maximum size accepts.
const _: () = assert!(SEGMENT_BYTES_MIN <= SEGMENT_BYTES_FIRST);
const _: () = assert!(SEGMENT_BYTES_FIRST <= DEFAULT_SEGMENT_BYTES);
const _: () = assert!(SEGMENT_BYTES_FULL_PAYLOAD <= SEGMENT_BYTES_FIRST);
// The smallest segment still holds a header and a record with a non-empty payload (only
// segments of at least SEGMENT_BYTES_FULL_PAYLOAD hold every payload).
const _: () = assert!(SEGMENT_BYTES_MIN > (HEADER_BYTES + FRAME_OVERHEAD_BYTES) as u64);

/// Header flag bit 0: the segment is a *base segment*. The log begins at the base segment with
/// the highest seq; every segment with a lower seq is superseded (written by a compaction,
/// `WalWriter::replace_with`).
pub const FLAG_BASE: u32 = 1;
/// Every header flag this version knows; a header with another bit set is refused.
pub const FLAGS_KNOWN: u32 = FLAG_BASE;
/// Suffix of the file a compaction writes before its atomic rename to the segment name:
/// `wal-{seq:016x}.seg.compact`.
pub const COMPACT_SUFFIX: &str = ".compact";

/// The file name of segment `seq`: `wal-{seq:016x}.seg`.
pub fn segment_file_name(seq: u64) -> String {
    format!("wal-{seq:016x}.seg")
}

/// The name a compaction writes segment `seq` under before renaming it to
/// [`segment_file_name`]: `wal-{seq:016x}.seg.compact`.
pub fn compact_file_name(seq: u64) -> String {
    format!("{}{COMPACT_SUFFIX}", segment_file_name(seq))
}

/// The sequence number of a compaction's unfinished file name, or `None` if `name` is not one.
pub fn parse_compact_file_name(name: &str) -> Option<u64> {
    parse_segment_file_name(name.strip_suffix(COMPACT_SUFFIX)?)
}

/// Size of a new log's first segment when segments may grow to `segment_bytes_max`: the
/// smaller of [`SEGMENT_BYTES_FIRST`] and the maximum.
pub fn first_segment_bytes(segment_bytes_max: u64) -> u64 {
    SEGMENT_BYTES_FIRST.min(segment_bytes_max)
}

/// Size of the segment after one of `previous_bytes`: double it, at least the first size and at
/// most `segment_bytes_max` (so a log written with a larger maximum shrinks back to it).
pub fn next_segment_bytes(previous_bytes: u64, segment_bytes_max: u64) -> u64 {
    previous_bytes
        .saturating_mul(2)
        .clamp(first_segment_bytes(segment_bytes_max), segment_bytes_max)
}

/// The sequence number encoded in a segment file name, or `None` if `name` is not one.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let hex = name.strip_prefix("wal-")?.strip_suffix(".seg")?;
    if hex.len() != 16
        || !hex
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// The largest payload a writer with segments of `segment_bytes` accepts.
pub fn payload_bytes_max(segment_bytes: u64) -> usize {
    let fits = segment_bytes.saturating_sub((HEADER_BYTES + FRAME_OVERHEAD_BYTES) as u64);
    PAYLOAD_BYTES_MAX.min(usize::try_from(fits).unwrap_or(usize::MAX))
}

/// The decoded segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Segment sequence number, 1 for the first segment of a log; equals the file name's.
    pub seq: u64,
    /// LSN of the first record in this segment (the previous segment's last LSN + 1).
    pub first_lsn: u64,
    /// Random identifier of the log, the same in every segment of it.
    pub log_id: u128,
    /// Flag [`FLAG_BASE`]: the log begins at this segment; lower seqs are superseded.
    pub base: bool,
}

impl SegmentHeader {
    /// The 64 header bytes.
    pub fn encode(&self) -> [u8; HEADER_BYTES] {
        let mut b = [0u8; HEADER_BYTES];
        b[0..8].copy_from_slice(&SEGMENT_MAGIC);
        b[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        let header_len = u16::try_from(HEADER_BYTES).expect("HEADER_BYTES < 2^16, asserted above");
        b[10..12].copy_from_slice(&header_len.to_le_bytes());
        let flags = if self.base { FLAG_BASE } else { 0 };
        b[12..16].copy_from_slice(&flags.to_le_bytes());
        b[16..24].copy_from_slice(&self.seq.to_le_bytes());
        b[24..32].copy_from_slice(&self.first_lsn.to_le_bytes());
        b[32..48].copy_from_slice(&self.log_id.to_le_bytes());
        // 48..60 reserved, zero.
        let crc = crc32fast::hash(&b[0..60]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes and checks a header from the start of a segment file's bytes.
    pub fn decode(bytes: &[u8]) -> Result<SegmentHeader, HeaderProblem> {
        if bytes.len() < HEADER_BYTES {
            return Err(HeaderProblem::Short { bytes: bytes.len() });
        }
        let b = &bytes[..HEADER_BYTES];
        if all_zero(b) {
            return Err(HeaderProblem::Zero);
        }
        if b[0..8] != SEGMENT_MAGIC {
            return Err(HeaderProblem::Magic);
        }
        // A newer version may lay its header out differently, so it is recognised before the
        // checksum; version 0 (bytes never written) goes on to fail the checksum as torn.
        let version = u16_at(b, 8);
        if version > FORMAT_VERSION {
            return Err(HeaderProblem::Version(version));
        }
        let stored_crc = u32_at(b, 60);
        let computed_crc = crc32fast::hash(&b[0..60]);
        if stored_crc != computed_crc {
            return Err(HeaderProblem::Checksum {
                stored: stored_crc,
                computed: computed_crc,
            });
        }
        if version != FORMAT_VERSION {
            return Err(HeaderProblem::Version(version));
        }
        let header_len = u16_at(b, 10);
        let flags = u32_at(b, 12);
        if usize::from(header_len) != HEADER_BYTES
            || flags & !FLAGS_KNOWN != 0
            || !all_zero(&b[48..60])
        {
            return Err(HeaderProblem::Fields);
        }
        Ok(SegmentHeader {
            seq: u64_at(b, 16),
            first_lsn: u64_at(b, 24),
            log_id: u128::from_le_bytes(b[32..48].try_into().expect("16 bytes")),
            base: flags & FLAG_BASE != 0,
        })
    }
}

/// Why a segment header is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderProblem {
    /// The file is shorter than a header.
    Short {
        /// File length.
        bytes: usize,
    },
    /// The header bytes are all zero (allocated, never written).
    Zero,
    /// The file does not start with the magic bytes.
    Magic,
    /// The header checksum does not match.
    Checksum {
        /// CRC stored in bytes 60..64.
        stored: u32,
        /// CRC of bytes 0..60.
        computed: u32,
    },
    /// A format version this code does not know (with a valid checksum).
    Version(u16),
    /// Header length, flags (a bit other than [`FLAG_BASE`]) or reserved bytes are not what
    /// version 1 writes.
    Fields,
}

impl HeaderProblem {
    /// Whether the header may simply never have been written completely (a crash while the
    /// segment was being created), as opposed to a complete header this code refuses.
    pub fn may_be_torn(&self) -> bool {
        !matches!(self, HeaderProblem::Version(_) | HeaderProblem::Fields)
    }
}

impl std::fmt::Display for HeaderProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeaderProblem::Short { bytes } => write!(
                f,
                "file is {bytes} bytes, shorter than the {HEADER_BYTES}-byte segment header"
            ),
            HeaderProblem::Zero => write!(f, "segment header is all zeros (never written)"),
            HeaderProblem::Magic => write!(f, "not a WAL segment: expected magic \"ARCHWAL\\0\""),
            HeaderProblem::Checksum { stored, computed } => write!(
                f,
                "segment header checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
            ),
            HeaderProblem::Version(v) => write!(
                f,
                "unknown WAL format version {v} (this archiver reads version {FORMAT_VERSION})"
            ),
            HeaderProblem::Fields => write!(
                f,
                "segment header has unexpected header length, flags or reserved bytes"
            ),
        }
    }
}

/// Appends the frame of one record to `out`.
pub fn encode_frame(out: &mut Vec<u8>, record_type: u16, lsn: u64, payload: &[u8]) {
    debug_assert!(payload.len() <= PAYLOAD_BYTES_MAX);
    debug_assert!(record_type != 0);
    let start = out.len();
    let len = u32::try_from(payload.len())
        .expect("a payload is at most PAYLOAD_BYTES_MAX bytes, which fits the u32 length field");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&record_type.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&lsn.to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// A well-formed frame found in a segment's bytes.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// Offset of the frame in the segment file.
    pub offset: usize,
    /// The record's LSN.
    pub lsn: u64,
    /// The record's type (never 0).
    pub record_type: u16,
    /// The payload bytes.
    pub payload: &'a [u8],
}

impl Frame<'_> {
    /// Offset just past this frame.
    pub fn end(&self) -> usize {
        self.offset + FRAME_OVERHEAD_BYTES + self.payload.len()
    }
}

/// What is at one offset of a segment.
#[derive(Debug)]
pub enum FrameCheck<'a> {
    /// A valid frame with the expected LSN.
    Valid(Frame<'a>),
    /// Every byte from the offset to the end of the segment is zero: the clean end.
    End,
    /// Not a valid frame with the expected LSN.
    Bad {
        /// What is wrong, and what was expected.
        detail: String,
        /// The frame is complete and its checksum is right (so it is not a torn write: only
        /// its LSN is wrong).
        checksum_valid: bool,
    },
}

/// Checks the bytes at `offset` of a segment (`data` is the whole file) against a record with
/// LSN `expected_lsn`. Never allocates from, or trusts, a length field before bounds-checking it.
pub fn check_frame(data: &[u8], offset: usize, expected_lsn: u64) -> FrameCheck<'_> {
    let rest = &data[offset.min(data.len())..];
    if rest.len() < FRAME_OVERHEAD_BYTES {
        if all_zero(rest) {
            return FrameCheck::End;
        }
        return bad(format!(
            "incomplete record: {} bytes left in the segment, a record needs at least {FRAME_OVERHEAD_BYTES}",
            rest.len()
        ));
    }
    let len = u32_at(rest, 0);
    let record_type = u16_at(rest, 4);
    let flags = u16_at(rest, 6);
    let lsn = u64_at(rest, 8);
    if record_type == 0 {
        if all_zero(rest) {
            return FrameCheck::End;
        }
        return bad(format!(
            "expected a record with lsn {expected_lsn} or zeros to the end of the segment, found record type 0 followed by non-zero bytes"
        ));
    }
    if flags != 0 {
        return bad(format!("record flags are {flags:#06x}, expected 0"));
    }
    if len > PAYLOAD_BYTES_MAX_U32 {
        return bad(format!(
            "record length field is {len} bytes, more than the maximum payload of {PAYLOAD_BYTES_MAX} bytes"
        ));
    }
    let frame_bytes = FRAME_OVERHEAD_BYTES + len as usize;
    if frame_bytes > rest.len() {
        return bad(format!(
            "incomplete record: its length field says {frame_bytes} bytes with framing, only {} bytes are left in the segment",
            rest.len()
        ));
    }
    let body_end = FRAME_PREFIX_BYTES + len as usize;
    let stored_crc = u32_at(rest, body_end);
    let computed_crc = crc32fast::hash(&rest[..body_end]);
    if stored_crc != computed_crc {
        return bad(format!(
            "record checksum mismatch: stored {stored_crc:#010x}, computed {computed_crc:#010x} (expected lsn {expected_lsn})"
        ));
    }
    if lsn != expected_lsn {
        return FrameCheck::Bad {
            detail: format!("record has lsn {lsn}, expected lsn {expected_lsn}"),
            checksum_valid: true,
        };
    }
    FrameCheck::Valid(Frame {
        offset,
        lsn,
        record_type,
        payload: &rest[FRAME_PREFIX_BYTES..body_end],
    })
}

fn bad(detail: String) -> FrameCheck<'static> {
    FrameCheck::Bad {
        detail,
        checksum_valid: false,
    }
}

/// Bytes a search for a valid frame may checksum before it gives up. Bounds the time spent on
/// adversarial input (e.g. a pattern that looks like a 1 MiB frame header at every offset).
pub const RESYNC_CRC_BYTES_MAX: usize = 64 << 20;
// The search can always afford to checksum one frame of the largest payload.
const _: () = assert!(RESYNC_CRC_BYTES_MAX >= FRAME_PREFIX_BYTES + PAYLOAD_BYTES_MAX);

/// The outcome of searching for a valid frame after damage.
#[derive(Debug)]
pub enum Resync<'a> {
    /// The first complete, checksum-valid frame after the damage with a greater LSN.
    Found(Frame<'a>),
    /// No such frame exists.
    NotFound,
    /// The search spent its checksum budget at this offset without an answer.
    GaveUp {
        /// Offset the search had reached.
        offset: usize,
    },
}

/// Finds the first offset after `from` holding a complete, checksum-valid frame whose LSN is
/// greater than `last_good_lsn`. Used to tell a torn tail (nothing valid follows) from
/// corruption (valid records follow a hole), and by `inspect` to resynchronise after damage.
pub fn find_valid_frame_after(data: &[u8], from: usize, last_good_lsn: u64) -> Resync<'_> {
    let mut budget = RESYNC_CRC_BYTES_MAX;
    let mut o = from + 1;
    while o + FRAME_OVERHEAD_BYTES <= data.len() {
        // A frame's type field (bytes 4..6) is never zero: skip zero runs in one step.
        if data[o + 4] == 0 && data[o + 5] == 0 {
            let Some(k) = data[o + 4..].iter().position(|&b| b != 0) else {
                return Resync::NotFound;
            };
            // The first non-zero byte n = o+4+k is >= o+6, so n-5 > o.
            o = o + 4 + k - 5;
            continue;
        }
        if let Some(body_end) = plausible_frame_at(data, o, last_good_lsn) {
            if budget < body_end {
                return Resync::GaveUp { offset: o };
            }
            budget -= body_end;
            let rest = &data[o..];
            if u32_at(rest, body_end) == crc32fast::hash(&rest[..body_end]) {
                return Resync::Found(Frame {
                    offset: o,
                    lsn: u64_at(rest, 8),
                    record_type: u16_at(rest, 4),
                    payload: &rest[FRAME_PREFIX_BYTES..body_end],
                });
            }
        }
        o += 1;
    }
    Resync::NotFound
}

/// If the bytes at `o` look like a complete frame with an LSN above `last_good_lsn` (before its
/// checksum is checked), the end of its checksummed part.
fn plausible_frame_at(data: &[u8], o: usize, last_good_lsn: u64) -> Option<usize> {
    let rest = &data[o..];
    let len = u32_at(rest, 0);
    if u16_at(rest, 4) == 0 || u16_at(rest, 6) != 0 || len > PAYLOAD_BYTES_MAX_U32 {
        return None;
    }
    let body_end = FRAME_PREFIX_BYTES + len as usize;
    if body_end + 4 > rest.len() || u64_at(rest, 8) <= last_good_lsn {
        return None;
    }
    Some(body_end)
}

/// Whether every byte is zero.
pub fn all_zero(bytes: &[u8]) -> bool {
    // Chunked so the compiler vectorises it; segments are mostly zeros after their records.
    let mut chunks = bytes.chunks_exact(64);
    for chunk in &mut chunks {
        if chunk.iter().fold(0u8, |acc, &b| acc | b) != 0 {
            return false;
        }
    }
    chunks.remainder().iter().all(|&b| b == 0)
}

/// One past the index of the last non-zero byte (0 if all zero).
pub fn nonzero_end(bytes: &[u8]) -> usize {
    bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1)
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().expect("2 bytes"))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(segment_file_name(1), "wal-0000000000000001.seg");
        assert_eq!(
            parse_segment_file_name("wal-000000000000001a.seg"),
            Some(26)
        );
        assert_eq!(parse_segment_file_name("wal-000000000000001A.seg"), None);
        assert_eq!(parse_segment_file_name("wal-1.seg"), None);
        assert_eq!(parse_segment_file_name("LOCK"), None);
    }

    #[test]
    fn header_round_trip() {
        let h = SegmentHeader {
            seq: 7,
            first_lsn: 99,
            log_id: 0x0123_4567_89ab_cdef_0011_2233_4455_6677,
            base: false,
        };
        assert_eq!(SegmentHeader::decode(&h.encode()), Ok(h));
        let base = SegmentHeader { base: true, ..h };
        let bytes = base.encode();
        assert_eq!(bytes[12..16], FLAG_BASE.to_le_bytes());
        assert_eq!(SegmentHeader::decode(&bytes), Ok(base));
        // An unknown flag bit is refused (with a valid checksum).
        let mut unknown = h.encode();
        unknown[12] = 2;
        let crc = crc32fast::hash(&unknown[0..60]);
        unknown[60..64].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(SegmentHeader::decode(&unknown), Err(HeaderProblem::Fields));
    }

    #[test]
    fn segments_grow_from_the_first_size_to_the_maximum() {
        const MIB: u64 = 1 << 20;
        // (maximum, sizes of the first five segments)
        let cases: [(u64, [u64; 5]); 4] = [
            (64 * MIB, [2 * MIB, 4 * MIB, 8 * MIB, 16 * MIB, 32 * MIB]),
            (6 * MIB, [2 * MIB, 4 * MIB, 6 * MIB, 6 * MIB, 6 * MIB]),
            (MIB + 4096, [MIB + 4096; 5]),
            (4096, [4096; 5]),
        ];
        for (max, want) in cases {
            let mut sizes = vec![first_segment_bytes(max)];
            for _ in 1..5 {
                sizes.push(next_segment_bytes(*sizes.last().unwrap(), max));
            }
            assert_eq!(sizes, want, "maximum {max}");
        }
        // A log written with a larger maximum shrinks back to the configured one.
        assert_eq!(next_segment_bytes(64 * MIB, 8 * MIB), 8 * MIB);
        assert_eq!(compact_file_name(5), "wal-0000000000000005.seg.compact");
        assert_eq!(
            parse_compact_file_name("wal-0000000000000005.seg.compact"),
            Some(5)
        );
        assert_eq!(parse_compact_file_name("wal-0000000000000005.seg"), None);
    }

    #[test]
    fn frame_round_trip_and_skip() {
        let mut data = vec![0u8; 64];
        encode_frame(&mut data, 3, 5, b"hello");
        data.extend_from_slice(&[0u8; 40]);
        match check_frame(&data, 64, 5) {
            FrameCheck::Valid(f) => {
                assert_eq!(f.payload, b"hello");
                assert!(matches!(check_frame(&data, f.end(), 6), FrameCheck::End));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(find_valid_frame_after(&data, 0, 4), Resync::Found(f) if f.offset == 64));
        assert!(matches!(
            find_valid_frame_after(&data, 64, 4),
            Resync::NotFound
        ));
        assert!(matches!(
            find_valid_frame_after(&data, 0, 5),
            Resync::NotFound
        ));
    }

    #[test]
    fn resync_gives_up_on_adversarial_input() {
        // A 1 MiB frame header with lsn 2 repeated every 16 bytes, over 8 MiB.
        let mut prefix = Vec::new();
        prefix.extend_from_slice(&(1u32 << 20).to_le_bytes());
        prefix.extend_from_slice(&1u16.to_le_bytes());
        prefix.extend_from_slice(&0u16.to_le_bytes());
        prefix.extend_from_slice(&2u64.to_le_bytes());
        let data: Vec<u8> = prefix.iter().copied().cycle().take(8 << 20).collect();
        let start = std::time::Instant::now();
        assert!(matches!(
            find_valid_frame_after(&data, 0, 1),
            Resync::GaveUp { .. }
        ));
        assert!(start.elapsed() < std::time::Duration::from_secs(2));
    }
}

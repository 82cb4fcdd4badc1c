//! RFC 4978's DEFLATE (raw RFC 1951, no zlib header) for one connection,
//! without I/O: a [`Deflater`] for what mailgate sends, an [`Inflater`]
//! for what it receives.
//!
//! Every [`Deflater::write`] ends on a byte boundary with a sync flush, so
//! the peer can inflate everything written so far at once: IMAP stays
//! interactive (a tagged answer or an IDLE notification is never held
//! back waiting for more data to fill a block). Small writes (IMAP
//! commands) go as *stored* blocks, which need no compressor; a large
//! write (an APPEND's literal) takes a compressor, kept while writes stay
//! large and dropped at the next small one — so a quiet connection holds
//! no compressor (miniz_oxide's is ~300 KiB). Once stored blocks follow a
//! compressor's output, that compressor's history no longer matches the
//! peer's window, which is why it is dropped rather than kept: a fresh
//! compressor only refers back into its own output.
//!
//! The inflater's window (32 KiB) must live as long as the connection.
//! [`Inflater::read`] writes at most the room its caller gives it, so a
//! highly compressible stream is inflated as fast as the caller takes it,
//! never buffered whole.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use std::io;

/// Writes shorter than this go as stored blocks (no compressor).
pub const MIN_COMPRESSED_WRITE: usize = 512;
/// Largest stored block (RFC 1951 §3.2.4: a 16-bit length).
const MAX_STORED: usize = 65_535;

/// The sending half: mailgate's bytes → deflate.
pub struct Deflater {
    level: u32,
    compressor: Option<Box<Compress>>,
}

impl std::fmt::Debug for Deflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deflater")
            .field("level", &self.level)
            .field("compressor", &self.compressor.is_some())
            .finish()
    }
}

impl Deflater {
    /// Compresses at `level` (1 fastest … 9 smallest).
    pub fn new(level: u32) -> Self {
        Self {
            level: level.clamp(1, 9),
            compressor: None,
        }
    }

    /// Appends `data`, deflated and sync-flushed, to `out`.
    pub fn write(&mut self, data: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        if data.len() < MIN_COMPRESSED_WRITE {
            // The compressor's history would no longer match the peer's
            // window once stored bytes follow: a later one starts afresh.
            self.compressor = None;
            stored(data, out);
            return Ok(());
        }
        let level = self.level;
        let compressor = self
            .compressor
            .get_or_insert_with(|| Box::new(Compress::new(Compression::new(level), false)));
        let start_in = compressor.total_in();
        loop {
            let consumed = (compressor.total_in() - start_in) as usize;
            out.reserve((data.len() - consumed) / 2 + 1024);
            compressor
                .compress_vec(&data[consumed..], out, FlushCompress::Sync)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            // Done when all input is in and the flush stopped short of the
            // room it had (a full buffer may hide more flushed bytes).
            let consumed = (compressor.total_in() - start_in) as usize;
            if consumed == data.len() && out.len() < out.capacity() {
                return Ok(());
            }
        }
    }

    /// Whether a compressor is held (for memory accounting).
    pub fn holds_compressor(&self) -> bool {
        self.compressor.is_some()
    }
}

/// `data` as stored blocks, each byte-aligned (the stream is aligned after
/// every sync flush, so a stored block's header is one byte: BFINAL 0,
/// BTYPE 00, padding).
fn stored(data: &[u8], out: &mut Vec<u8>) {
    if data.is_empty() {
        return;
    }
    for chunk in data.chunks(MAX_STORED) {
        let len = chunk.len() as u16;
        out.push(0);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
}

/// The receiving half: deflate → the peer's bytes.
pub struct Inflater {
    decompressor: Box<Decompress>,
    ended: bool,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater")
            .field("ended", &self.ended)
            .finish()
    }
}

impl Default for Inflater {
    fn default() -> Self {
        Self::new()
    }
}

impl Inflater {
    /// A fresh inflater (raw deflate).
    pub fn new() -> Self {
        Self {
            decompressor: Box::new(Decompress::new(false)),
            ended: false,
        }
    }

    /// Inflates from `input` into the spare room of `out` (never beyond
    /// its capacity): (input bytes consumed, bytes appended). Fewer bytes
    /// consumed than given means `out` is full or the stream ended.
    pub fn read(&mut self, input: &[u8], out: &mut Vec<u8>) -> io::Result<(usize, usize)> {
        if self.ended {
            return if input.is_empty() {
                Ok((0, 0))
            } else {
                Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "data after the end of the deflate stream",
                ))
            };
        }
        let (in_before, out_before) = (self.decompressor.total_in(), out.len());
        let status = self
            .decompressor
            .decompress_vec(input, out, FlushDecompress::Sync)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        if status == Status::StreamEnd {
            self.ended = true;
        }
        let consumed = (self.decompressor.total_in() - in_before) as usize;
        Ok((consumed, out.len() - out_before))
    }

    /// Whether the peer ended its stream (a final block).
    pub fn ended(&self) -> bool {
        self.ended
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inflates `compressed` whole with a fresh inflater, `room` bytes at a
    /// time.
    fn inflate_all(compressed: &[u8], room: usize) -> Vec<u8> {
        let mut inflater = Inflater::new();
        let mut plain = Vec::new();
        let mut at = 0;
        loop {
            let mut out = Vec::with_capacity(room);
            let (used, made) = inflater.read(&compressed[at..], &mut out).unwrap();
            assert!(out.len() <= room, "never beyond the room given");
            at += used;
            plain.extend_from_slice(&out);
            if used == 0 && made == 0 {
                break;
            }
        }
        assert_eq!(at, compressed.len(), "all input consumed");
        plain
    }

    fn text(len: usize) -> Vec<u8> {
        b"Subject: a line of mail text that repeats itself now and then\r\n"
            .iter()
            .cycle()
            .take(len)
            .copied()
            .collect()
    }

    #[test]
    fn small_and_large_writes_interleave_into_one_stream_the_peer_inflates() {
        let mut deflater = Deflater::new(6);
        let mut wire = Vec::new();
        let mut sent = Vec::new();
        for len in [10, 5_000, 40, 100_000, 0, 511, 512, 70_000, 3] {
            let data = text(len);
            deflater.write(&data, &mut wire).unwrap();
            sent.extend_from_slice(&data);
            // After every write the peer can inflate everything so far.
            assert_eq!(inflate_all(&wire, 4096), sent, "after a write of {len}");
        }
        assert!(
            wire.len() < sent.len() / 3,
            "text compresses: {} of {}",
            wire.len(),
            sent.len()
        );
    }

    #[test]
    fn the_compressor_is_held_only_after_large_writes() {
        let mut deflater = Deflater::new(1);
        let mut wire = Vec::new();
        deflater
            .write(&text(MIN_COMPRESSED_WRITE - 1), &mut wire)
            .unwrap();
        assert!(!deflater.holds_compressor());
        deflater
            .write(&text(MIN_COMPRESSED_WRITE), &mut wire)
            .unwrap();
        assert!(deflater.holds_compressor());
        deflater.write(b"a1 NOOP\r\n", &mut wire).unwrap();
        assert!(
            !deflater.holds_compressor(),
            "dropped at the next small write"
        );
    }

    #[test]
    fn stored_blocks_split_at_their_length_limit() {
        let mut wire = Vec::new();
        let data: Vec<u8> = (0..(MAX_STORED + 10)).map(|i| i as u8).collect();
        stored(&data, &mut wire);
        assert_eq!(wire.len(), data.len() + 2 * 5);
        assert_eq!(inflate_all(&wire, 1 << 20), data);
    }

    #[test]
    fn inflating_a_bomb_is_bounded_by_the_room_given() {
        let mut compressor = Compress::new(Compression::best(), false);
        let zeros = vec![0u8; 8 << 20];
        let mut wire = Vec::with_capacity(64 << 10);
        compressor
            .compress_vec(&zeros, &mut wire, FlushCompress::Sync)
            .unwrap();
        assert!(
            wire.len() < 16 << 10,
            "8 MiB of zeros is tiny: {}",
            wire.len()
        );
        let mut inflater = Inflater::new();
        let mut out = Vec::with_capacity(4096);
        let (used, made) = inflater.read(&wire, &mut out).unwrap();
        assert_eq!(made, 4096, "one room's worth");
        assert!(used < wire.len(), "the rest of the input waits");
    }

    #[test]
    fn output_held_inside_the_inflater_comes_out_without_more_input() {
        // All the input consumed into a small room: what did not fit waits
        // inside the inflater, and an empty input must still yield it (the
        // stream reads the socket only when this yields nothing).
        let mut deflater = Deflater::new(6);
        let mut wire = Vec::new();
        let plain = text(100_000);
        deflater.write(&plain, &mut wire).unwrap();
        let mut inflater = Inflater::new();
        let mut got = Vec::new();
        let mut at = 0;
        while got.len() < plain.len() {
            let mut out = Vec::with_capacity(1000);
            let (used, made) = inflater.read(&wire[at..], &mut out).unwrap();
            at += used;
            assert!(
                used > 0 || made > 0,
                "stalled at {} of {}",
                got.len(),
                plain.len()
            );
            got.extend_from_slice(&out);
        }
        assert_eq!(got, plain);
    }

    #[test]
    fn corrupt_input_is_an_error_not_a_panic() {
        let mut inflater = Inflater::new();
        let mut out = Vec::with_capacity(100);
        assert!(inflater.read(&[0xff; 32], &mut out).is_err());
    }
}

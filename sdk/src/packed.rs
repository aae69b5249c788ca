//! The packed batch of `weir:plugin@0.2.0`: a whole batch crosses the component boundary as
//! one `list<u8>`, and its results come back as one. This module is the layout's one
//! implementation: the host writes batches and reads results with it, the SDK reads batches
//! and writes results with it. Readers validate every count, offset, length and string, so a
//! buffer from the other side can be wrong but cannot make the reader misbehave.
//!
//! All integers are little-endian; offsets are absolute in the buffer.
//!
//! **Batch** (host → plugin):
//!
//! ```text
//! 0   "WPB2"
//! 4   count u32 · topic_off u32 · topic_len u32
//! 16  count entries of 48 bytes:
//!       offset u64 · timestamp_ms u64 · partition u32
//!       key_off u32 · key_len u32 (u32::MAX: no key) · value_off u32 · value_len u32
//!       headers_off u32 · headers_len u32 (bytes) · headers_count u32
//!     data: the topic, then each message's key, value and header block, where a header
//!     block is headers_count × (name_len u32 · value_len u32 · name · value)
//! ```
//!
//! **Result** (plugin → host), one code per input, in input order:
//!
//! ```text
//! 0   "WPR2"
//! 4   count u32 · outputs u32 · topics u32 · failures u32 · reserved u32
//! 24  count codes of 8 bytes: kind u8 · 3 × 0 · arg u32
//!       0 keep (the input passes on unchanged)       1 drop
//!       2 emit: arg outputs, taken in order from the output table
//!       3 fail: arg indexes the failure table       4 forward unchanged to topic `arg`
//!     outputs × 32 bytes: key_off · key_len (u32::MAX: none) · value_off · value_len
//!       · headers_off · headers_len · headers_count · topic (u32::MAX: the next step)
//!     topics × 8 bytes: off · len                     (UTF-8 names)
//!     failures × 12 bytes: off · len · retryable u32  (UTF-8 messages)
//!     data
//! ```

use std::fmt;

/// Marks "none" for an optional key or topic.
pub const NONE: u32 = u32::MAX;

const BATCH_MAGIC: &[u8; 4] = b"WPB2";
const RESULT_MAGIC: &[u8; 4] = b"WPR2";
const BATCH_HEADER: usize = 16;
const ENTRY: usize = 48;
const RESULT_HEADER: usize = 24;
const CODE: usize = 8;
const OUTPUT: usize = 32;
const TOPIC: usize = 8;
const FAILURE: usize = 12;

/// Why a packed buffer was refused: what is wrong, where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackError(pub String);

impl fmt::Display for PackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed packed buffer: {}", self.0)
    }
}

impl std::error::Error for PackError {}

fn bad<T>(why: impl Into<String>) -> Result<T, PackError> {
    Err(PackError(why.into()))
}

// The readers below run for every field of every message on both sides of the boundary:
// inlined, with the errors' formatting kept out of line so that the checks stay a compare.

#[inline]
fn u32_at(buf: &[u8], at: usize) -> Result<u32, PackError> {
    match buf.get(at..at + 4) {
        Some(b) => Ok(u32::from_le_bytes(b.try_into().expect("4 bytes"))),
        None => Err(past_end("u32", at, buf.len())),
    }
}

#[inline]
fn u64_at(buf: &[u8], at: usize) -> Result<u64, PackError> {
    match buf.get(at..at + 8) {
        Some(b) => Ok(u64::from_le_bytes(b.try_into().expect("8 bytes"))),
        None => Err(past_end("u64", at, buf.len())),
    }
}

#[cold]
#[inline(never)]
fn past_end(what: &str, at: usize, len: usize) -> PackError {
    PackError(format!("a {what} at {at} is past the end ({len} bytes)"))
}

/// `len` bytes at `off`, inside the buffer.
#[inline]
fn slice(buf: &[u8], off: u32, len: u32, what: &str) -> Result<std::ops::Range<usize>, PackError> {
    let (off, len) = (off as usize, len as usize);
    match off.checked_add(len) {
        Some(end) if end <= buf.len() => Ok(off..end),
        _ => Err(outside(what, off, len, buf.len())),
    }
}

#[cold]
#[inline(never)]
fn outside(what: &str, off: usize, len: usize, buf: usize) -> PackError {
    PackError(format!("{what} at {off}..+{len} is outside the {buf} bytes"))
}

fn utf8<'a>(buf: &'a [u8], range: std::ops::Range<usize>, what: &str) -> Result<&'a str, PackError> {
    std::str::from_utf8(&buf[range]).or_else(|_| bad(format!("{what} is not UTF-8")))
}

/// A table of `count` rows of `row` bytes at `at`, inside the buffer; where it ends.
fn table(buf: &[u8], at: usize, count: u32, row: usize, what: &str) -> Result<usize, PackError> {
    match (count as usize).checked_mul(row).and_then(|n| n.checked_add(at)) {
        Some(end) if end <= buf.len() => Ok(end),
        _ => bad(format!("{count} {what} do not fit in {} bytes", buf.len())),
    }
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn set_u32(out: &mut [u8], at: usize, v: u32) {
    out[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// An offset or length in a buffer: buffers stay under 4 GiB (the host's batch and output
/// limits are far below).
fn u32_of(n: usize) -> u32 {
    u32::try_from(n).expect("packed buffers stay under 4 GiB")
}

/// Headers as a block of `(name_len, value_len, name, value)`.
fn put_headers<'a>(out: &mut Vec<u8>, headers: impl Iterator<Item = (&'a str, &'a str)>) -> (u32, u32, u32) {
    let start = out.len();
    let mut count = 0;
    for (name, value) in headers {
        put_u32(out, u32_of(name.len()));
        put_u32(out, u32_of(value.len()));
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(value.as_bytes());
        count += 1;
    }
    (u32_of(start), u32_of(out.len() - start), count)
}

/// A record's key, value and header block appended to `data`: where each went, as the seven
/// u32s batch entries and result outputs share (key off, key len or [`NONE`], value off, value
/// len, headers off, headers len, header count).
fn put_record<'a>(
    data: &mut Vec<u8>,
    key: Option<&[u8]>,
    value: &[u8],
    headers: impl Iterator<Item = (&'a str, &'a str)>,
) -> [u32; 7] {
    let (key_off, key_len) = match key {
        Some(k) => {
            let at = data.len();
            data.extend_from_slice(k);
            (u32_of(at), u32_of(k.len()))
        }
        None => (0, NONE),
    };
    let value_off = u32_of(data.len());
    data.extend_from_slice(value);
    let (h_off, h_len, h_count) = put_headers(data, headers);
    [key_off, key_len, value_off, u32_of(value.len()), h_off, h_len, h_count]
}

/// The headers of a block, validated: ranges inside `block`, UTF-8.
pub struct Headers<'a> {
    block: &'a [u8],
    left: u32,
}

impl<'a> Headers<'a> {
    fn new(buf: &'a [u8], off: u32, len: u32, count: u32) -> Result<Headers<'a>, PackError> {
        let range = slice(buf, off, len, "a header block")?;
        let h = Headers { block: &buf[range], left: count };
        // Walk it once so that iterating later cannot fail.
        let mut check = Headers { block: h.block, left: h.left };
        while check.left > 0 {
            check.step()?;
        }
        if !check.block.is_empty() {
            return bad("a header block has bytes after its last header");
        }
        Ok(h)
    }

    /// A block of `count` headers, checked as it is iterated (a malformed one ends early).
    pub fn validated(block: &'a [u8], count: u32) -> Headers<'a> {
        Headers { block, left: count }
    }

    fn step(&mut self) -> Result<(&'a str, &'a str), PackError> {
        let name_len = u32_at(self.block, 0)?;
        let value_len = u32_at(self.block, 4)?;
        let name = slice(self.block, 8, name_len, "a header name")?;
        let value = slice(self.block, name.end as u32, value_len, "a header value")?;
        let (n, v) = (utf8(self.block, name, "a header name")?, utf8(self.block, value.clone(), "a header value")?);
        self.block = &self.block[value.end..];
        self.left -= 1;
        Ok((n, v))
    }
}

impl<'a> Iterator for Headers<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        // Validated at construction, or (batches, read lazily) here: a malformed block ends.
        match self.step() {
            Ok(h) => Some(h),
            Err(_) => {
                self.left = 0;
                None
            }
        }
    }
}

/// Builds packed batches straight into one buffer, kept and reused from batch to batch: the
/// entry table is sized when the batch begins, so every offset is final when written and
/// each payload is copied once.
#[derive(Default)]
pub struct BatchWriter {
    packed: Vec<u8>,
    count: u32,
    expected: u32,
}

impl BatchWriter {
    /// Start a batch of `count` messages read from `topic`, dropping the previous one (keeping
    /// the memory).
    pub fn begin(&mut self, topic: &str, count: usize) {
        let out = &mut self.packed;
        out.clear();
        let table = BATCH_HEADER + count * ENTRY;
        out.extend_from_slice(BATCH_MAGIC);
        for v in [u32_of(count), u32_of(table), u32_of(topic.len())] {
            put_u32(out, v);
        }
        out.resize(table, 0);
        out.extend_from_slice(topic.as_bytes());
        self.count = 0;
        self.expected = u32_of(count);
    }

    /// Append one message (at most the `count` given to [`BatchWriter::begin`]).
    pub fn push<'a>(
        &mut self,
        offset: u64,
        timestamp_ms: u64,
        partition: u32,
        key: Option<&[u8]>,
        value: &[u8],
        headers: impl Iterator<Item = (&'a str, &'a str)>,
    ) {
        assert!(self.count < self.expected, "more messages than the batch began with");
        let placed = put_record(&mut self.packed, key, value, headers);
        let mut entry = [0u8; ENTRY];
        entry[..8].copy_from_slice(&offset.to_le_bytes());
        entry[8..16].copy_from_slice(&timestamp_ms.to_le_bytes());
        entry[16..20].copy_from_slice(&partition.to_le_bytes());
        for (i, v) in placed.into_iter().enumerate() {
            entry[20 + 4 * i..24 + 4 * i].copy_from_slice(&v.to_le_bytes());
        }
        let at = BATCH_HEADER + self.count as usize * ENTRY;
        self.packed[at..at + ENTRY].copy_from_slice(&entry);
        self.count += 1;
    }

    /// The packed batch.
    pub fn finish(&mut self) -> &[u8] {
        assert_eq!(self.count, self.expected, "fewer messages than the batch began with");
        &self.packed
    }
}

/// One message of a packed batch.
pub struct Entry<'a> {
    /// Source offset.
    pub offset: u64,
    /// Append time, ms since the epoch.
    pub timestamp_ms: u64,
    /// Source partition.
    pub partition: u32,
    /// Partitioning key.
    pub key: Option<&'a [u8]>,
    /// Payload.
    pub value: &'a [u8],
    /// The header block and how many headers it holds (walked once, by `parse`).
    headers: (&'a [u8], u32),
}

impl<'a> Entry<'a> {
    /// The headers, decoded as they are read.
    pub fn headers(&self) -> Headers<'a> {
        Headers::validated(self.headers.0, self.headers.1)
    }

    /// The header block and how many headers it holds.
    pub fn header_block(&self) -> (&'a [u8], u32) {
        self.headers
    }
}

/// A packed batch, validated.
pub struct BatchView<'a> {
    buf: &'a [u8],
    count: u32,
    /// Where the topic is (checked as UTF-8 by `parse`).
    topic: std::ops::Range<usize>,
}

impl<'a> BatchView<'a> {
    /// Check the batch: magic, table, and every entry's ranges (header blocks are walked as read).
    pub fn parse(buf: &'a [u8]) -> Result<BatchView<'a>, PackError> {
        if buf.get(..4) != Some(BATCH_MAGIC) {
            return bad("not a packed batch (magic)");
        }
        let count = u32_at(buf, 4)?;
        let topic = slice(buf, u32_at(buf, 8)?, u32_at(buf, 12)?, "the topic")?;
        utf8(buf, topic.clone(), "the topic")?;
        table(buf, BATCH_HEADER, count, ENTRY, "entries")?;
        let view = BatchView { buf, count, topic };
        // Every entry's ranges are checked here; header blocks are walked only when a plugin
        // lists or searches them (a plugin that never reads headers never pays for them). A
        // block the host packed wrong ends the iteration early; it cannot read outside it.
        for i in 0..count as usize {
            view.read(i)?;
        }
        Ok(view)
    }

    /// A batch [`BatchView::parse`] accepted before, read again without walking it or
    /// checking its topic again (a shared batch is opened once per message access).
    pub fn reopen(buf: &'a [u8]) -> BatchView<'a> {
        let count = u32_at(buf, 4).expect("parsed before");
        let topic = slice(buf, u32_at(buf, 8).expect("parsed"), u32_at(buf, 12).expect("parsed"), "").expect("parsed");
        BatchView { buf, count, topic }
    }

    /// How many messages.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The topic the batch was read from.
    pub fn topic(&self) -> &'a str {
        utf8(self.buf, self.topic.clone(), "the topic").expect("checked by parse")
    }

    /// Message `i` (`i < len()`).
    #[inline]
    pub fn get(&self, i: usize) -> Entry<'a> {
        self.read(i).expect("validated when the batch was read")
    }

    #[inline]
    fn read(&self, i: usize) -> Result<Entry<'a>, PackError> {
        let (b, e) = (self.buf, BATCH_HEADER + i * ENTRY);
        let key_len = u32_at(b, e + 24)?;
        let key = match key_len {
            NONE => None,
            len => Some(&b[slice(b, u32_at(b, e + 20)?, len, "a key")?]),
        };
        let value = &b[slice(b, u32_at(b, e + 28)?, u32_at(b, e + 32)?, "a value")?];
        Ok(Entry {
            offset: u64_at(b, e)?,
            timestamp_ms: u64_at(b, e + 8)?,
            partition: u32_at(b, e + 16)?,
            key,
            value,
            headers: (&b[slice(b, u32_at(b, e + 36)?, u32_at(b, e + 40)?, "a header block")?], u32_at(b, e + 44)?),
        })
    }
}

/// What a plugin did with one input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// The input passes on unchanged.
    Keep,
    /// Dropped on purpose.
    Drop,
    /// This many outputs, next in the output table.
    Emit(u32),
    /// Failed: index into the failure table.
    Fail(u32),
    /// The input, unchanged, routed to the topic at this index.
    Forward(u32),
}

/// One output as a plugin hands it over.
pub struct OutputRef<'a> {
    /// Key.
    pub key: Option<&'a [u8]>,
    /// Payload.
    pub value: &'a [u8],
    /// Headers.
    pub headers: Vec<(&'a str, &'a str)>,
    /// `None`: the next step; `Some`: routed there.
    pub topic: Option<&'a str>,
}

/// Builds a packed result. Used by the SDK inside the plugin.
pub struct ResultWriter {
    codes: Vec<u8>,
    outputs: Vec<u8>,
    topics: Vec<u8>,
    topic_names: Vec<(u32, String)>,
    failures: Vec<u8>,
    data: Vec<u8>,
    count: u32,
}

/// Where a data offset must be shifted once the tables' sizes are known.
#[derive(Clone, Copy)]
enum Fix {
    Output(usize),
    Topic(usize),
    Failure(usize),
}

impl ResultWriter {
    /// A result for `inputs` inputs.
    pub fn new(inputs: usize) -> ResultWriter {
        ResultWriter {
            codes: Vec::with_capacity(inputs * CODE),
            outputs: Vec::new(),
            topics: Vec::new(),
            topic_names: Vec::new(),
            failures: Vec::new(),
            data: Vec::new(),
            count: 0,
        }
    }

    fn code(&mut self, kind: u8, arg: u32) {
        let [a, b, c, d] = arg.to_le_bytes();
        self.codes.extend_from_slice(&[kind, 0, 0, 0, a, b, c, d]);
        self.count += 1;
    }

    /// The next input passes on unchanged.
    pub fn keep(&mut self) {
        self.code(0, 0);
    }

    /// The next input was dropped.
    pub fn drop_input(&mut self) {
        self.code(1, 0);
    }

    /// The next input failed.
    pub fn fail(&mut self, message: &str, retryable: bool) {
        let index = u32_of(self.failures.len() / FAILURE);
        let off = u32_of(self.data.len());
        self.data.extend_from_slice(message.as_bytes());
        for v in [off, u32_of(message.len()), u32::from(retryable)] {
            put_u32(&mut self.failures, v);
        }
        self.code(3, index);
    }

    /// The next input, unchanged, goes to `topic`.
    pub fn forward(&mut self, topic: &str) {
        let t = self.topic_index(topic);
        self.code(4, t);
    }

    /// The next input became these outputs.
    pub fn emit<'a>(&mut self, outputs: impl ExactSizeIterator<Item = OutputRef<'a>>) {
        self.code(2, u32_of(outputs.len()));
        for o in outputs {
            let placed = put_record(&mut self.data, o.key, o.value, o.headers.into_iter());
            let topic = o.topic.map_or(NONE, |t| self.topic_index(t));
            for v in placed.into_iter().chain([topic]) {
                put_u32(&mut self.outputs, v);
            }
        }
    }

    fn topic_index(&mut self, topic: &str) -> u32 {
        if let Some((i, _)) = self.topic_names.iter().find(|(_, t)| t == topic) {
            return *i;
        }
        let i = u32_of(self.topic_names.len());
        let off = u32_of(self.data.len());
        self.data.extend_from_slice(topic.as_bytes());
        put_u32(&mut self.topics, off);
        put_u32(&mut self.topics, u32_of(topic.len()));
        self.topic_names.push((i, topic.to_string()));
        i
    }

    /// The packed result.
    pub fn finish(self) -> Vec<u8> {
        let outputs_at = RESULT_HEADER + self.codes.len();
        let topics_at = outputs_at + self.outputs.len();
        let failures_at = topics_at + self.topics.len();
        let base = u32_of(failures_at + self.failures.len());
        let mut out = Vec::with_capacity(base as usize + self.data.len());
        out.extend_from_slice(RESULT_MAGIC);
        let (outputs, topics, failures) =
            (self.outputs.len() / OUTPUT, self.topics.len() / TOPIC, self.failures.len() / FAILURE);
        for v in [self.count, u32_of(outputs), u32_of(topics), u32_of(failures), 0] {
            put_u32(&mut out, v);
        }
        out.extend_from_slice(&self.codes);
        out.extend_from_slice(&self.outputs);
        out.extend_from_slice(&self.topics);
        out.extend_from_slice(&self.failures);
        let fixes = (0..outputs)
            .map(|i| Fix::Output(outputs_at + i * OUTPUT))
            .chain((0..topics).map(|i| Fix::Topic(topics_at + i * TOPIC)))
            .chain((0..failures).map(|i| Fix::Failure(failures_at + i * FAILURE)));
        for fix in fixes {
            let fields: &[usize] = match fix {
                Fix::Output(at) => &[at, at + 8, at + 16],
                Fix::Topic(at) | Fix::Failure(at) => &[at],
            };
            for (n, &field) in fields.iter().enumerate() {
                let keyless = matches!(fix, Fix::Output(at) if n == 0 && u32_at(&out, at + 4).expect("own") == NONE);
                if !keyless {
                    let v = u32_at(&out, field).expect("own table");
                    set_u32(&mut out, field, v + base);
                }
            }
        }
        out.extend_from_slice(&self.data);
        out
    }
}

/// A packed result, validated against the number of inputs.
pub struct ResultView<'a> {
    buf: &'a [u8],
    count: u32,
    outputs: u32,
    topics: u32,
    failures: u32,
}

impl<'a> ResultView<'a> {
    /// Check the whole result: magic, one code per input, every table, range, index and string.
    pub fn parse(buf: &'a [u8], inputs: usize) -> Result<ResultView<'a>, PackError> {
        if buf.get(..4) != Some(RESULT_MAGIC) {
            return bad("not a packed result (magic)");
        }
        let [count, outputs, topics, failures] =
            [4, 8, 12, 16].map(|at| u32_at(buf, at)).map(|r| r.unwrap_or(u32::MAX));
        if count as usize != inputs {
            return bad(format!("{count} outcomes for a batch of {inputs} messages"));
        }
        let mut end = table(buf, RESULT_HEADER, count, CODE, "codes")?;
        end = table(buf, end, outputs, OUTPUT, "outputs")?;
        end = table(buf, end, topics, TOPIC, "topics")?;
        table(buf, end, failures, FAILURE, "failures")?;
        let view = ResultView { buf, count, outputs, topics, failures };
        view.validate()?;
        Ok(view)
    }

    fn validate(&self) -> Result<(), PackError> {
        let mut emitted: u64 = 0;
        for i in 0..self.count as usize {
            match self.read_code(i)? {
                Code::Emit(n) => emitted += u64::from(n),
                Code::Fail(f) if f >= self.failures => return bad(format!("failure {f} of {}", self.failures)),
                Code::Forward(t) if t >= self.topics => return bad(format!("topic {t} of {}", self.topics)),
                _ => {}
            }
        }
        if emitted != u64::from(self.outputs) {
            return bad(format!("codes emit {emitted} outputs, the table holds {}", self.outputs));
        }
        for t in 0..self.topics {
            self.read_topic(t)?;
        }
        for f in 0..self.failures {
            self.read_failure(f)?;
        }
        for o in 0..self.outputs as usize {
            self.read_output(o)?;
        }
        Ok(())
    }

    fn read_code(&self, i: usize) -> Result<Code, PackError> {
        let at = RESULT_HEADER + i * CODE;
        let arg = u32_at(self.buf, at + 4)?;
        Ok(match self.buf[at] {
            0 => Code::Keep,
            1 => Code::Drop,
            2 => Code::Emit(arg),
            3 => Code::Fail(arg),
            4 => Code::Forward(arg),
            k => return bad(format!("unknown outcome kind {k} for input {i}")),
        })
    }

    fn outputs_at(&self) -> usize {
        RESULT_HEADER + self.count as usize * CODE
    }

    fn read_topic(&self, t: u32) -> Result<&'a str, PackError> {
        let at = self.outputs_at() + self.outputs as usize * OUTPUT + t as usize * TOPIC;
        let range = slice(self.buf, u32_at(self.buf, at)?, u32_at(self.buf, at + 4)?, "a topic name")?;
        utf8(self.buf, range, "a topic name")
    }

    fn read_failure(&self, f: u32) -> Result<(&'a str, bool), PackError> {
        let at =
            self.outputs_at() + (self.outputs as usize * OUTPUT) + self.topics as usize * TOPIC + f as usize * FAILURE;
        let range = slice(self.buf, u32_at(self.buf, at)?, u32_at(self.buf, at + 4)?, "a failure message")?;
        Ok((utf8(self.buf, range, "a failure message")?, u32_at(self.buf, at + 8)? != 0))
    }

    fn read_output(&self, o: usize) -> Result<OutputRef<'a>, PackError> {
        let (b, at) = (self.buf, self.outputs_at() + o * OUTPUT);
        let f = |n: usize| u32_at(b, at + 4 * n);
        let key = match f(1)? {
            NONE => None,
            len => Some(&b[slice(b, f(0)?, len, "an output key")?]),
        };
        let value = &b[slice(b, f(2)?, f(3)?, "an output value")?];
        let headers = Headers::new(b, f(4)?, f(5)?, f(6)?)?.collect();
        let topic = match f(7)? {
            NONE => None,
            t if t < self.topics => Some(self.read_topic(t)?),
            t => return bad(format!("output {o} names topic {t} of {}", self.topics)),
        };
        Ok(OutputRef { key, value, headers, topic })
    }

    /// The outcome of input `i` (`i < inputs`).
    pub fn code(&self, i: usize) -> Code {
        self.read_code(i).expect("validated")
    }

    /// Output `o` of the output table, with where its key and value are in the buffer (for
    /// slicing without a copy).
    pub fn output(&self, o: usize) -> OutputRef<'a> {
        self.read_output(o).expect("validated")
    }

    /// Topic `t` of the topic table.
    pub fn topic(&self, t: u32) -> &'a str {
        self.read_topic(t).expect("validated")
    }

    /// Failure `f`: its message and whether it is retryable.
    pub fn failure(&self, f: u32) -> (&'a str, bool) {
        self.read_failure(f).expect("validated")
    }

    /// The whole buffer (outputs' keys and values are sub-slices of it).
    pub fn buffer(&self) -> &'a [u8] {
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_and_results_round_trip() {
        let mut w = BatchWriter::default();
        for round in 0..2 {
            w.begin("orders", 2);
            w.push(7, 100, 2, Some(b"k1"), b"hello", [("h", "v"), ("weir-type", "X")].into_iter());
            w.push(8, 101, 2, None, b"", std::iter::empty());
            let view = BatchView::parse(w.finish()).unwrap();
            assert_eq!((view.len(), view.topic()), (2, "orders"), "round {round}");
            let a = view.get(0);
            assert_eq!(
                (a.offset, a.timestamp_ms, a.partition, a.key, a.value),
                (7, 100, 2, Some(&b"k1"[..]), &b"hello"[..])
            );
            assert_eq!(a.headers().collect::<Vec<_>>(), vec![("h", "v"), ("weir-type", "X")]);
            let b = view.get(1);
            assert_eq!((b.key, b.value, b.headers().count()), (None, &b""[..], 0));
        }
        let mut r = ResultWriter::new(5);
        r.keep();
        r.emit(
            [
                OutputRef { key: Some(b"k"), value: b"v1", headers: vec![("a", "b")], topic: None },
                OutputRef { key: None, value: b"v2", headers: vec![], topic: Some("eu") },
            ]
            .into_iter(),
        );
        r.fail("bad input", true);
        r.forward("eu");
        r.drop_input();
        let buf = r.finish();
        let v = ResultView::parse(&buf, 5).unwrap();
        assert_eq!(
            (0..5).map(|i| v.code(i)).collect::<Vec<_>>(),
            vec![Code::Keep, Code::Emit(2), Code::Fail(0), Code::Forward(0), Code::Drop]
        );
        let (o1, o2) = (v.output(0), v.output(1));
        assert_eq!((o1.key, o1.value, o1.headers, o1.topic), (Some(&b"k"[..]), &b"v1"[..], vec![("a", "b")], None));
        assert_eq!((o2.key, o2.value, o2.topic), (None, &b"v2"[..], Some("eu")));
        assert_eq!((v.topic(0), v.failure(0)), ("eu", ("bad input", true)));
        assert!(ResultView::parse(&buf, 4).is_err(), "one code per input");
    }

    #[test]
    fn a_damaged_header_block_ends_its_iteration_and_nothing_else() {
        let mut w = BatchWriter::default();
        w.begin("t", 1);
        w.push(0, 0, 0, None, b"v", [("ok", "1"), ("bad", "2")].into_iter());
        let mut buf = w.finish().to_vec();
        let at = buf.len() - 4; // the second header's name, "bad"
        buf[at] = 0xff;
        let view = BatchView::parse(&buf).expect("header blocks are walked as read");
        let e = view.get(0);
        assert_eq!((e.value, e.headers().collect::<Vec<_>>()), (&b"v"[..], vec![("ok", "1")]));
    }

    #[test]
    fn damaged_buffers_are_refused_not_trusted() {
        let mut r = ResultWriter::new(1);
        r.emit([OutputRef { key: None, value: b"xyz", headers: vec![("n", "v")], topic: Some("t") }].into_iter());
        let good = r.finish();
        for i in 0..good.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut bad = good.clone();
                bad[i] ^= flip;
                // Either refused, or (a byte in the data) still fully readable.
                if let Ok(v) = ResultView::parse(&bad, 1) {
                    let _ = (v.code(0), v.output(0).headers.len(), v.topic(0));
                }
            }
        }
        assert!(ResultView::parse(&good[..good.len() - 1], 1).is_err());
        assert!(BatchView::parse(b"WPB2\xff\xff\xff\xff").is_err());
    }
}

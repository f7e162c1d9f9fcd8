//! The incremental DATA-phase state machine.
//!
//! It keeps only where it is in the current line (five states), two counters and the first error, so its
//! memory does not depend on the input. Runs of ordinary bytes in the middle of a line are copied in one
//! slice operation; everything that can matter for line structure (`<CR>`, `<LF>`, NUL, a dot at the start of
//! a line, a limit about to be crossed) goes through [`DataReader::step`] one byte at a time, which is what
//! makes the outcome independent of how the stream was split into chunks.

use super::{DataError, Limits, Progress};

/// Where the reader stands in the byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a line: the start of data, or just after a real `<CRLF>`.
    LineStart,
    /// A dot was the first byte of the line: either a stuffing dot or the start of the terminator.
    Dot,
    /// The line so far is `.<CR>`: one `<LF>` more and the data has ended.
    DotCr,
    /// Inside a line. A bare `<LF>` keeps the reader here: it does not start a new line.
    InLine,
    /// Inside a line, just after a `<CR>` whose fate depends on the next byte.
    Cr,
    /// The terminator has been read; the reader consumes nothing more.
    Finished,
}

/// Reads one DATA phase from arbitrarily split chunks; see the [module documentation](super) for the rules.
///
/// One reader serves one transaction: create it when sending `354`, feed it every chunk until it returns
/// [`Progress::Done`] or [`Progress::Rejected`], then drop it.
#[derive(Debug, Clone)]
pub struct DataReader {
    limits: Limits,
    state: State,
    /// Unstuffed message bytes seen, stored or not.
    size: u64,
    /// Bytes of the current line seen so far, line end included once it arrives.
    line_len: usize,
    /// The first violation; once set, nothing more is appended to the output.
    error: Option<DataError>,
}

impl DataReader {
    /// A reader at the start of the data (which counts as the start of a line, so `.<CRLF>` there is an empty
    /// message).
    pub fn new(limits: Limits) -> Self {
        DataReader {
            limits,
            state: State::LineStart,
            size: 0,
            line_len: 0,
            error: None,
        }
    }

    /// Feeds the next chunk read from the client and appends the unstuffed message bytes (with their `<CRLF>`
    /// line ends, without the terminator) to `out`.
    ///
    /// Returns [`Progress::NeedMore`] when the whole chunk was message data; otherwise the end of data was in
    /// this chunk and the result says how many of its bytes were consumed and whether the message is
    /// acceptable. Errors are only ever reported together with the real end of data (see the module
    /// documentation), and on [`Progress::Rejected`] `out` holds a truncated prefix to be discarded. `out` may
    /// already hold bytes (say, a `Received:` header); they are left alone and do not count towards the limits.
    ///
    /// Once the end has been reported, further calls consume nothing and repeat the outcome with
    /// `consumed: 0`.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Progress {
        if self.state == State::Finished {
            return self.outcome(0);
        }
        let mut rest = input;
        while let Some((&byte, tail)) = rest.split_first() {
            if self.state == State::InLine {
                let run = self.plain_run_len(rest);
                if run > 0
                    && let Some((plain, after)) = rest.split_at_checked(run)
                {
                    self.take_plain(plain, out);
                    rest = after;
                    continue;
                }
            }
            rest = tail;
            self.step(byte, out);
            if self.state == State::Finished {
                return self.outcome(input.len() - rest.len());
            }
        }
        Progress::NeedMore
    }

    /// Unstuffed message bytes received so far, including those no longer stored after an error.
    ///
    /// For the transaction log, and so the session can drop a client that keeps streaming long after its
    /// message was already refused as too large.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The final result, once the terminator has been read.
    fn outcome(&self, consumed: usize) -> Progress {
        match self.error {
            None => Progress::Done { consumed },
            Some(error) => Progress::Rejected { consumed, error },
        }
    }

    /// How many leading bytes of `rest` are ordinary line content that can be taken in one go: no `<CR>`,
    /// `<LF>` or NUL, and (while no error is pending) not enough to cross a limit, so the byte that crosses
    /// one is handled by [`Self::step`] exactly as if it had arrived alone.
    fn plain_run_len(&self, rest: &[u8]) -> usize {
        let run = rest
            .iter()
            .position(|&b| matches!(b, b'\r' | b'\n' | 0))
            .unwrap_or(rest.len());
        if self.error.is_some() {
            return run;
        }
        let mut run = run;
        if self.limits.max_size != 0 {
            let left = self.limits.max_size.saturating_sub(self.size);
            run = run.min(usize::try_from(left).unwrap_or(usize::MAX));
        }
        if self.limits.max_line != 0 {
            run = run.min(self.limits.max_line.saturating_sub(self.line_len));
        }
        run
    }

    /// Accounts for (and, while no error is pending, stores) a run found by [`Self::plain_run_len`].
    fn take_plain(&mut self, plain: &[u8], out: &mut Vec<u8>) {
        let len = plain.len();
        self.size = self
            .size
            .saturating_add(u64::try_from(len).unwrap_or(u64::MAX));
        self.line_len = self.line_len.saturating_add(len);
        if self.error.is_none() {
            out.extend_from_slice(plain);
        }
    }

    /// Advances the state machine by one byte.
    fn step(&mut self, byte: u8, out: &mut Vec<u8>) {
        match self.state {
            State::LineStart if byte == b'.' => self.state = State::Dot,
            State::Dot if byte == b'\r' => self.state = State::DotCr,
            State::DotCr if byte == b'\n' => self.state = State::Finished,
            State::LineStart | State::Dot => {
                // Not the terminator; a leading dot was stuffing and is dropped (RFC 5321 §4.5.2).
                self.state = State::InLine;
                self.in_line(byte, out);
            }
            State::DotCr | State::Cr if byte == b'\n' => {
                self.message_byte(b'\r', out);
                self.message_byte(b'\n', out);
                self.state = State::LineStart;
                self.line_len = 0;
            }
            State::DotCr | State::Cr => {
                // The pending <CR> was not followed by <LF>. The byte after it is ordinary input again
                // (possibly another <CR>); in particular a dot here does not start a line.
                self.fail(DataError::BareCarriageReturn);
                self.message_byte(b'\r', out);
                self.state = State::InLine;
                self.in_line(byte, out);
            }
            State::InLine => self.in_line(byte, out),
            State::Finished => {}
        }
    }

    /// One byte inside a line. A bare `<LF>` is recorded and kept as line content: it never ends the line,
    /// so the dot in `<LF>.<CRLF>` can neither terminate nor be unstuffed.
    fn in_line(&mut self, byte: u8, out: &mut Vec<u8>) {
        match byte {
            b'\r' => self.state = State::Cr,
            b'\n' => {
                self.fail(DataError::BareLineFeed);
                self.message_byte(byte, out);
            }
            0 => {
                self.fail(DataError::NulByte);
                self.message_byte(byte, out);
            }
            _ => self.message_byte(byte, out),
        }
    }

    /// Counts one unstuffed message byte against the limits and stores it unless an error is pending.
    fn message_byte(&mut self, byte: u8, out: &mut Vec<u8>) {
        self.size = self.size.saturating_add(1);
        if self.limits.max_size != 0 && self.size > self.limits.max_size {
            self.fail(DataError::TooLarge);
        }
        self.line_len = self.line_len.saturating_add(1);
        if self.limits.max_line != 0 && self.line_len > self.limits.max_line {
            self.fail(DataError::LineTooLong);
        }
        if self.error.is_none() {
            out.push(byte);
        }
    }

    /// Records a violation unless an earlier one is already pending: the first one is what the client and
    /// the log are told about.
    fn fail(&mut self, error: DataError) {
        self.error.get_or_insert(error);
    }
}

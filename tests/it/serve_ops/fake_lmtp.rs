//! A minimal LMTP server (RFC 2033) for the `serve` delivery tests: it listens on loopback TCP or on a unix
//! socket, answers LHLO, MAIL, RCPT, DATA (one reply per accepted recipient after the data, as LMTP requires),
//! RSET and QUIT, and hands every finished conversation to the test as a [`Transcript`], the message
//! dot-unstuffed (a connection that never says LHLO, like the start-up check of `serve`, is not one). A
//! [`Verdict`] chooses whether it accepts, or answers 452 at RCPT or after the data.
//!
//! Used only by the `serve_ops` tests.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

/// How long a test waits for a conversation to finish, and the fake for each client line.
const WAIT: Duration = Duration::from_secs(15);

/// How the fake answers recipients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// 250 to every RCPT and 250 per recipient after the data.
    Accept,
    /// `452 4.2.2` to every RCPT (so no DATA follows).
    RcptTempfail,
    /// 250 to every RCPT, then `452 4.2.2` per recipient after the data.
    DataTempfail,
}

/// One LMTP conversation as the fake saw it.
#[derive(Debug, Default)]
pub struct Transcript {
    /// The LHLO line.
    pub lhlo: String,
    /// The MAIL FROM line.
    pub mail: String,
    /// Every RCPT TO line, in order.
    pub rcpts: Vec<String>,
    /// The message after DATA, dot-unstuffed, without the terminating `.` line (None when no DATA came).
    pub data: Option<Vec<u8>>,
    /// Whether the client said QUIT.
    pub quit: bool,
}

/// A running fake LMTP server; its threads live until the test process ends.
pub struct FakeLmtp {
    /// The `[server] delivery` value that points at it (`lmtp:127.0.0.1:PORT` or `lmtp:/path`).
    pub delivery: String,
    transcripts: mpsc::Receiver<Transcript>,
    _dir: Option<tempfile::TempDir>,
}

impl FakeLmtp {
    /// Listens on `127.0.0.1:<random port>`.
    pub fn tcp(verdict: Verdict) -> FakeLmtp {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind fake LMTP");
        let addr = listener.local_addr().expect("fake LMTP address");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(WAIT));
                let tx = tx.clone();
                std::thread::spawn(move || hand_over(&tx, converse(stream, verdict)));
            }
        });
        FakeLmtp {
            delivery: format!("lmtp:{addr}"),
            transcripts: rx,
            _dir: None,
        }
    }

    /// Listens on a unix socket in a fresh temporary directory.
    pub fn unix(verdict: Verdict) -> FakeLmtp {
        let dir = tempfile::tempdir().expect("tempdir for the LMTP socket");
        let path: PathBuf = dir.path().join("lmtp");
        let listener =
            std::os::unix::net::UnixListener::bind(&path).expect("bind fake LMTP socket");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(WAIT));
                let tx = tx.clone();
                std::thread::spawn(move || hand_over(&tx, converse(stream, verdict)));
            }
        });
        FakeLmtp {
            delivery: format!("lmtp:{}", path.display()),
            transcripts: rx,
            _dir: Some(dir),
        }
    }

    /// The next finished conversation; panics if none finishes within 15 s.
    #[track_caller]
    pub fn next(&self) -> Transcript {
        self.transcripts
            .recv_timeout(WAIT)
            .unwrap_or_else(|e| panic!("no LMTP conversation finished: {e}"))
    }

    /// Whether another conversation finishes within `wait`.
    pub fn more(&self, wait: Duration) -> bool {
        self.transcripts.recv_timeout(wait).is_ok()
    }
}

/// Hands a conversation to the test, unless it never got as far as LHLO: that is the start-up check of
/// `serve` seeing whether the server greets, not a delivery.
fn hand_over(tx: &mpsc::Sender<Transcript>, t: Transcript) {
    if !t.lhlo.is_empty() {
        let _ = tx.send(t);
    }
}

/// Speaks LMTP on `stream` until QUIT, end of stream or an error; returns what the client sent.
fn converse<S: Read + Write>(stream: S, verdict: Verdict) -> Transcript {
    let mut t = Transcript::default();
    let mut r = BufReader::new(stream);
    let mut accepted: Vec<String> = Vec::new();
    let send = |r: &mut BufReader<S>, text: &str| r.get_mut().write_all(text.as_bytes());
    if send(&mut r, "220 lmtp.fake.test LMTP ready\r\n").is_err() {
        return t;
    }
    loop {
        let mut line = String::new();
        match r.read_line(&mut line) {
            Ok(0) | Err(_) => return t,
            Ok(_) => {}
        }
        let line = line.trim_end_matches(['\r', '\n']).to_string();
        let upper = line.to_ascii_uppercase();
        let answer = if upper.starts_with("LHLO ") {
            t.lhlo = line;
            "250-lmtp.fake.test\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250 8BITMIME\r\n"
                .to_string()
        } else if upper.starts_with("MAIL FROM:") {
            t.mail = line;
            "250 2.1.0 Ok\r\n".to_string()
        } else if upper.starts_with("RCPT TO:") {
            t.rcpts.push(line.clone());
            if verdict == Verdict::RcptTempfail {
                "452 4.2.2 Mailbox is full, try later\r\n".to_string()
            } else {
                accepted.push(line["RCPT TO:".len()..].to_string());
                "250 2.1.5 Ok\r\n".to_string()
            }
        } else if upper == "DATA" {
            if accepted.is_empty() {
                "503 5.5.1 No valid recipients\r\n".to_string()
            } else {
                if send(&mut r, "354 End data with <CR><LF>.<CR><LF>\r\n").is_err() {
                    return t;
                }
                let Some(data) = read_data(&mut r) else {
                    return t;
                };
                t.data = Some(data);
                let mut replies = String::new();
                for rcpt in &accepted {
                    replies += &match verdict {
                        Verdict::DataTempfail => format!("452 4.2.2 {rcpt} Mailbox is full\r\n"),
                        _ => format!("250 2.0.0 {rcpt} Saved\r\n"),
                    };
                }
                replies
            }
        } else if upper == "RSET" {
            accepted.clear();
            "250 2.0.0 Ok\r\n".to_string()
        } else if upper == "QUIT" {
            t.quit = true;
            let _ = send(&mut r, "221 2.0.0 Bye\r\n");
            return t;
        } else {
            "500 5.5.1 Unknown command\r\n".to_string()
        };
        if send(&mut r, &answer).is_err() {
            return t;
        }
    }
}

/// Reads DATA lines up to the lone `.` line and undoes the dot-stuffing; None if the stream ends first.
fn read_data<R: BufRead>(r: &mut R) -> Option<Vec<u8>> {
    let mut data = Vec::new();
    loop {
        let mut line = Vec::new();
        if r.read_until(b'\n', &mut line).ok()? == 0 {
            return None;
        }
        if line == b".\r\n" {
            return Some(data);
        }
        let line = line.strip_prefix(b".").unwrap_or(&line);
        data.extend_from_slice(line);
    }
}

//! Test data for the `serve` tests: provisioning through the real CLI, messages to send, and reading back
//! what the daemon put in front of a delivered message (`Authentication-Results:`, `Received:`).

use crate::TestDb;

/// The password of every mailbox the helpers create.
pub const PASSWORD: &str = "correct horse battery";

/// Runs the real binary with whitespace-separated arguments against `db` and asserts success.
pub fn cli(db: &TestDb, args: &str) {
    db.run(&args.split_whitespace().collect::<Vec<_>>()).ok();
}

/// `mailbox add ADDRESS` with [`PASSWORD`] and any extra arguments (e.g. `--quota-mb 1`).
pub fn add_mailbox(db: &TestDb, address: &str, extra: &[&str]) {
    let mut args = vec!["mailbox", "add", address, "--password-stdin"];
    args.extend_from_slice(extra);
    db.run_stdin(&args, &format!("{PASSWORD}\n")).ok();
}

/// The hosted domain `example.test` with the mailboxes alice, bob, carol and dave.
pub fn example(db: &TestDb) {
    cli(db, "domain add example.test");
    for name in ["alice", "bob", "carol", "dave"] {
        add_mailbox(db, &format!("{name}@example.test"), &[]);
    }
}

/// A small RFC 5322 message with CRLF line ends, a unique Message-ID and a body that exercises
/// dot-stuffing (a line starting with `.`), 8-bit text and a line of its own with a single dot-like trap.
pub fn message(from: &str, to: &str, subject: &str, message_id: &str) -> Vec<u8> {
    format!(
        "From: <{from}>\r\nTo: <{to}>\r\nSubject: {subject}\r\nMessage-ID: <{message_id}>\r\n\
         Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\
         Hello from the {subject} test.\r\n.leading dot survives\r\n..two dots too\r\n\
         Grüße, naïve café\r\n\r\nEND {message_id}\r\n"
    )
    .into_bytes()
}

/// A delivered file split into the trace fields the daemon prepended and the message as it was sent.
#[derive(Debug)]
pub struct Delivered {
    /// The leading `Authentication-Results:` and `Received:` fields, in order, each with its folding (CRLF +
    /// whitespace) kept and its final CRLF removed.
    pub trace: Vec<String>,
    /// Everything after them.
    pub rest: Vec<u8>,
}

impl Delivered {
    /// Splits `file` after its leading trace fields.
    pub fn parse(file: &[u8]) -> Delivered {
        let mut trace = Vec::new();
        let mut pos = 0;
        loop {
            let rest = &file[pos..];
            let lower = String::from_utf8_lossy(&rest[..rest.len().min(32)]).to_ascii_lowercase();
            if !(lower.starts_with("authentication-results:") || lower.starts_with("received:")) {
                break;
            }
            // The field ends at the first CRLF not followed by a space or tab.
            let mut end = None;
            let mut i = 0;
            while i + 1 < rest.len() {
                if rest[i] == b'\r' && rest[i + 1] == b'\n' {
                    let next = rest.get(i + 2).copied();
                    if next != Some(b' ') && next != Some(b'\t') {
                        end = Some(i);
                        break;
                    }
                }
                i += 1;
            }
            let Some(end) = end else { break };
            trace.push(String::from_utf8_lossy(&rest[..end]).into_owned());
            pos += end + 2;
        }
        Delivered {
            trace,
            rest: file[pos..].to_vec(),
        }
    }

    /// The trace fields named `name` (case-insensitive), unfolded.
    pub fn fields(&self, name: &str) -> Vec<String> {
        let prefix = format!("{}:", name.to_ascii_lowercase());
        self.trace
            .iter()
            .filter(|f| f.to_ascii_lowercase().starts_with(&prefix))
            .map(|f| unfold(f))
            .collect()
    }
}

/// A header field with its folding removed (CRLF followed by whitespace becomes that whitespace).
pub fn unfold(field: &str) -> String {
    field.replace("\r\n", "")
}

/// The `Message-ID` value (without angle brackets) of a message, looked up in its header section.
pub fn message_id(message: &[u8]) -> Option<String> {
    let end = find(message, b"\r\n\r\n").unwrap_or(message.len());
    let head = String::from_utf8_lossy(&message[..end]);
    head.split("\r\n").find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("message-id").then(|| {
            value
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
    })
}

/// Index of the first occurrence of `needle` in `haystack`.
pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

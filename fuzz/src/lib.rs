//! Helpers shared by the fuzz targets in `fuzz_targets/`: invariants that more than one target asserts.

use mailctl::smtp::inbound::command::Reply;

/// The longest SMTP reply line, CRLF included (RFC 5321 4.5.3.1.5).
pub const MAX_REPLY_LINE: usize = 512;

/// Asserts that `reply` goes on the wire as well-formed SMTP reply lines: each one `NNN text` or `NNN-text`,
/// at most 512 octets with its CRLF, no CR or LF inside, one wire line per text line, `-` on all but the last.
pub fn check_reply(reply: &Reply) {
    let bytes = reply.to_bytes();
    assert!(
        bytes.ends_with(b"\r\n"),
        "reply does not end with CRLF: {bytes:?}"
    );
    let lines: Vec<&[u8]> = bytes.split_inclusive(|&b| b == b'\n').collect();
    assert_eq!(
        lines.len(),
        reply.lines().len().max(1),
        "one wire line per text line"
    );
    for (i, line) in lines.iter().enumerate() {
        assert!(
            line.len() <= MAX_REPLY_LINE,
            "reply line of {} octets",
            line.len()
        );
        let text = line
            .strip_suffix(b"\r\n")
            .unwrap_or_else(|| panic!("reply line without CRLF: {line:?}"));
        assert!(
            !text.contains(&b'\r') && !text.contains(&b'\n'),
            "bare CR or LF inside a reply line: {text:?}"
        );
        assert!(
            text.iter().all(|&b| b == b' ' || b.is_ascii_graphic()),
            "non-printable octet in a reply line: {text:?}"
        );
        let code = format!("{:03}", reply.code());
        assert!(
            text.starts_with(code.as_bytes()),
            "line does not start with the code"
        );
        let sep = if i + 1 == lines.len() { b' ' } else { b'-' };
        assert_eq!(
            text.get(code.len()),
            Some(&sep),
            "wrong separator after the code"
        );
    }
}

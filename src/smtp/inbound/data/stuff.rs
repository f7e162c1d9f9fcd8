//! The outbound direction: preparing a message to be sent after `354`.

/// Encodes `message` for the DATA phase: every line end becomes `<CRLF>`, a line starting with `.` gets a
/// second one (dot-stuffing, RFC 5321 §4.5.2), a missing final `<CRLF>` is added, and the `.<CRLF>` terminator
/// is appended.
///
/// Bare `<CR>` and bare `<LF>` are each turned into `<CRLF>` (and `<CR><CR><LF>` into two line ends) rather
/// than passed on, so that nothing this server relays can be read as a different message by a lax receiver:
/// the output is always accepted by [`super::DataReader`] unless the message holds NUL bytes or over-long
/// lines, which this function does not alter. An empty message becomes just `.<CRLF>`. For a message that
/// is empty or already ends with `<CRLF>` and has no bare `<CR>`/`<LF>`, reading the output back with
/// [`super::DataReader`] yields the message unchanged.
pub fn stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 64 + 5);
    let mut at_line_start = true;
    let mut bytes = message.iter().copied().peekable();
    while let Some(byte) = bytes.next() {
        match byte {
            b'\r' | b'\n' => {
                if byte == b'\r' {
                    bytes.next_if_eq(&b'\n');
                }
                out.extend_from_slice(b"\r\n");
                at_line_start = true;
            }
            _ => {
                if at_line_start && byte == b'.' {
                    out.push(b'.');
                }
                out.push(byte);
                at_line_start = false;
            }
        }
    }
    if !at_line_start {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

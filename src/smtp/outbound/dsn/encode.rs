//! Making outside text safe inside a DSN: one-line values without CR, LF or other controls, header fields folded
//! at blanks, addresses in RFC 3464 / RFC 6533 form, quoted-printable for parts that are not plain 7-bit lines.

/// Longest line (without CRLF) RFC 5322 allows.
const MAX_LINE: usize = 998;
/// Where header fields and text are folded or wrapped.
const FOLD_AT: usize = 78;

/// `s` as one line: every control character (CR, LF, TAB, NUL, ...) and every run of blanks becomes one space,
/// surrounding blanks go, and at most `max` characters are kept (a cut ends in `...`). With `ascii`, other
/// non-ASCII characters become `?`, as the 7-bit `message/delivery-status` part requires.
pub(crate) fn one_line(s: &str, max: usize, ascii: bool) -> String {
    let mut out = String::with_capacity(s.len().min(max + 3));
    let mut count = 0;
    let mut blank = false;
    for c in s.chars() {
        if c.is_control() || c.is_whitespace() {
            blank = true;
            continue;
        }
        if count >= max {
            out.push_str("...");
            return out;
        }
        if blank && !out.is_empty() {
            out.push(' ');
            count += 1;
        }
        blank = false;
        out.push(if ascii && !c.is_ascii() { '?' } else { c });
        count += 1;
    }
    out
}

/// An address as an RFC 3464 address field value: `rfc822; user@example.org` when it is printable ASCII,
/// otherwise `utf-8; ` with everything but RFC 6533 QCHARs written as `\x{HEX}` (so the value stays 7-bit
/// and a CR or LF in it is spelled out, never sent).
pub(super) fn address_field(address: &str) -> String {
    let address: String = address.chars().take(512).collect();
    if address.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return format!("rfc822; {address}");
    }
    let mut out = String::from("utf-8; ");
    for c in address.chars() {
        let qchar = matches!(c as u32, 0x21..=0x2a | 0x2c..=0x3c | 0x3e..=0x5b | 0x5d..=0x7e);
        if qchar {
            out.push(c);
        } else {
            out.push_str(&format!("\\x{{{:X}}}", c as u32));
        }
    }
    out
}

/// `Name: value` ending in CRLF, folded before blanks so lines stay under 78 columns where the words allow.
/// `value` must already be one line (see [`one_line`]).
pub(super) fn field(name: &str, value: &str) -> String {
    let mut out = format!("{name}:");
    let mut column = out.len();
    for word in value.split(' ').filter(|w| !w.is_empty()) {
        if column + 1 + word.len() > FOLD_AT && column > name.len() + 1 {
            out.push_str("\r\n");
            column = 0;
        }
        out.push(' ');
        out.push_str(word);
        column += 1 + word.len();
    }
    out.push_str("\r\n");
    out
}

/// `text` (one line) wrapped at blanks to lines of at most 76 columns where the words allow, continuation lines
/// indented by `indent`; every line ends in CRLF.
pub(super) fn wrap(text: &str, indent: &str) -> String {
    let mut out = String::new();
    let mut column = 0;
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        let width = word.chars().count();
        if column > 0 && column + 1 + width > FOLD_AT - 2 {
            out.push_str("\r\n");
            out.push_str(indent);
            column = indent.len();
        } else if column > 0 {
            out.push(' ');
            column += 1;
        }
        out.push_str(word);
        column += width;
    }
    out.push_str("\r\n");
    out
}

/// The header block of a raw message (up to the first empty line), with CRLF line ends, cut at a line
/// boundary once it exceeds `max` bytes.
pub(super) fn header_block(raw: &[u8], max: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for line in raw.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() || out.len() + line.len() + 2 > max {
            break;
        }
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// True when `text` (CRLF lines) can go as 7bit: ASCII without controls other than TAB, lines of at most 998
/// characters, no bare CR or LF.
pub(super) fn is_7bit_lines(text: &[u8]) -> bool {
    split_crlf(text).iter().all(|line| {
        line.len() <= MAX_LINE
            && line
                .iter()
                .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
    })
}

/// Quoted-printable (RFC 2045 6.7) of CRLF-separated lines: line breaks stay hard breaks, everything else that
/// is not printable ASCII (and `=`, and blanks ending a line) becomes `=XX`, lines are soft-broken at 76.
/// The output never contains `=_`, which is why boundaries start with it.
pub(super) fn quoted_printable(text: &[u8]) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    let body = text.strip_suffix(b"\r\n").unwrap_or(text);
    for line in split_crlf(body) {
        let mut column = 0;
        for (i, &b) in line.iter().enumerate() {
            let last = i + 1 == line.len();
            let literal =
                (b'!'..=b'~').contains(&b) && b != b'=' || (b == b' ' || b == b'\t') && !last;
            let piece = if literal {
                char::from(b).to_string()
            } else {
                format!("={b:02X}")
            };
            // Leave room for the soft break's "=" within 76 columns.
            if column + piece.len() > 75 {
                out.push_str("=\r\n");
                column = 0;
            }
            out.push_str(&piece);
            column += piece.len();
        }
        out.push_str("\r\n");
    }
    out
}

/// Splits on CRLF only (a bare CR or LF stays inside its line, to be encoded).
fn split_crlf(text: &[u8]) -> Vec<&[u8]> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + 1 < text.len() {
        if text[i] == b'\r' && text[i + 1] == b'\n' {
            lines.push(&text[start..i]);
            start = i + 2;
            i += 2;
        } else {
            i += 1;
        }
    }
    lines.push(&text[start..]);
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_removes_controls_and_limits_length() {
        assert_eq!(
            one_line(" 550 a\r\nX-Evil: 1\t\0b ", 100, true),
            "550 a X-Evil: 1 b"
        );
        assert_eq!(one_line("héllo", 100, true), "h?llo");
        assert_eq!(one_line("héllo", 100, false), "héllo");
        assert_eq!(one_line("abcdef", 3, true), "abc...");
    }

    #[test]
    fn addresses_are_typed_and_stay_7bit() {
        assert_eq!(address_field("a@b.example"), "rfc822; a@b.example");
        assert_eq!(
            address_field("jö+x@b.example"),
            "utf-8; j\\x{F6}\\x{2B}x@b.example"
        );
        assert_eq!(address_field("a\r\nb@c"), "utf-8; a\\x{D}\\x{A}b@c");
    }

    #[test]
    fn fields_fold_at_blanks() {
        let value = "word ".repeat(40);
        let folded = field("Diagnostic-Code", value.trim());
        assert!(folded.lines().all(|l| l.len() <= 78));
        assert!(folded.lines().skip(1).all(|l| l.starts_with(' ')));
        assert_eq!(
            folded.replace("\r\n", ""),
            format!("Diagnostic-Code: {}\r\n", value.trim()).replace("\r\n", "")
        );
    }

    #[test]
    fn header_block_stops_at_the_body_and_normalizes_line_ends() {
        let raw = b"Subject: x\nFrom: a@b\r\n\r\nbody\r\n";
        assert_eq!(header_block(raw, 1000), b"Subject: x\r\nFrom: a@b\r\n");
        assert_eq!(header_block(raw, 15), b"Subject: x\r\n");
    }

    #[test]
    fn quoted_printable_encodes_what_7bit_cannot_carry() {
        assert!(is_7bit_lines(b"Subject: x\r\n"));
        assert!(!is_7bit_lines("Subject: ö\r\n".as_bytes()));
        assert!(!is_7bit_lines(b"a\rb\r\n"));
        assert!(!is_7bit_lines(&[b'x'; 1000]));
        let qp = quoted_printable("Subject: ö = x \r\nNext\r\n".as_bytes());
        assert_eq!(qp, "Subject: =C3=B6 =3D x=20\r\nNext\r\n");
        let long = quoted_printable(&[b'a'; 200]);
        assert!(long.lines().all(|l| l.len() <= 76));
        assert!(!quoted_printable(b"=_ boundary").contains("=_"));
    }
}

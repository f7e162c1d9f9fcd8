//! The message as milters see and change it: header fields one by one (name and value, folds as `\n` the way
//! Postfix sends them), the body in chunks, and the changes they ask for applied to the bytes. Unchanged
//! fields keep their exact bytes, so a signature over them still verifies.

/// One header field: its name and its whole raw text (`Name: value\r\n`, continuation lines included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    raw: Vec<u8>,
}

impl Field {
    /// The value as a milter receives it, its bytes as they came: after the colon, without the leading blanks
    /// unless `leading_space` (`SMFIP_HDR_LEADSPC`), folds as `\n`, without the final line break.
    pub fn value(&self, leading_space: bool) -> Vec<u8> {
        let raw = &self.raw;
        let after = raw
            .iter()
            .position(|b| *b == b':')
            .map_or(&raw[raw.len()..], |i| &raw[i + 1..]);
        let after = after.strip_suffix(b"\r\n").unwrap_or(after);
        let start = if leading_space {
            0
        } else {
            after
                .iter()
                .position(|b| !matches!(b, b' ' | b'\t'))
                .unwrap_or(after.len())
        };
        let mut out = Vec::with_capacity(after.len());
        let mut bytes = after[start..].iter().copied().peekable();
        while let Some(b) = bytes.next() {
            // Folds as `\n`, the way Postfix hands them to milters.
            if b == b'\r' && bytes.peek() == Some(&b'\n') {
                continue;
            }
            out.push(b);
        }
        out
    }
}

/// A message split for milters: its header fields and its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub fields: Vec<Field>,
    pub body: Vec<u8>,
}

/// One change a milter asked for at the end of the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// `SMFIR_ADDHEADER`: a field after the others.
    Add(String, Vec<u8>),
    /// `SMFIR_INSHEADER`: a field at this position (0 = first).
    Insert(u32, String, Vec<u8>),
    /// `SMFIR_CHGHEADER`: the n-th (from 1) field of this name gets this value; an empty value removes it.
    Change(u32, String, Vec<u8>),
    /// `SMFIR_REPLBODY`, all chunks together: the new body.
    Body(Vec<u8>),
}

impl Message {
    /// Splits a message (CRLF line ends, as DATA leaves it) at its first empty line.
    pub fn parse(message: &[u8]) -> Message {
        let (head, body) = if message.starts_with(b"\r\n") {
            (&message[..0], &message[2..])
        } else {
            match message.windows(4).position(|w| w == b"\r\n\r\n") {
                Some(i) => (&message[..i + 2], &message[i + 4..]),
                None => (message, &message[message.len()..]),
            }
        };
        let mut fields: Vec<Field> = Vec::new();
        for line in head.split_inclusive(|b| *b == b'\n') {
            match (line.first(), fields.last_mut()) {
                (Some(b' ' | b'\t'), Some(last)) => last.raw.extend_from_slice(line),
                _ => {
                    let name = line
                        .iter()
                        .position(|b| *b == b':')
                        .map(|i| String::from_utf8_lossy(&line[..i]).trim().to_string())
                        .unwrap_or_default();
                    fields.push(Field {
                        name,
                        raw: line.to_vec(),
                    });
                }
            }
        }
        Message {
            fields,
            body: body.to_vec(),
        }
    }

    /// Carries out one change. A change that would smuggle something into the header (a name that is not
    /// a field name, a value with a line that does not continue the field) is refused with the reason.
    pub fn apply(&mut self, edit: Edit, leading_space: bool) -> Result<(), String> {
        match edit {
            Edit::Add(name, value) => {
                let f = field(&name, &value, leading_space)?;
                self.fields.push(f);
            }
            Edit::Insert(index, name, value) => {
                let f = field(&name, &value, leading_space)?;
                let at = usize::try_from(index)
                    .unwrap_or(usize::MAX)
                    .min(self.fields.len());
                self.fields.insert(at, f);
            }
            Edit::Change(index, name, value) => {
                let at = self
                    .fields
                    .iter()
                    .enumerate()
                    .filter(|(_, f)| f.name.eq_ignore_ascii_case(&name))
                    .nth(usize::try_from(index.max(1) - 1).unwrap_or(usize::MAX))
                    .map(|(i, _)| i);
                match (at, value.is_empty()) {
                    (Some(i), true) => {
                        self.fields.remove(i);
                    }
                    (Some(i), false) => self.fields[i] = field(&name, &value, leading_space)?,
                    // libmilter: changing a field that is not there adds it.
                    (None, false) => self.fields.push(field(&name, &value, leading_space)?),
                    (None, true) => {}
                }
            }
            Edit::Body(body) => self.body = crlf(&body),
        }
        Ok(())
    }

    /// The message as bytes again.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            self.fields.iter().map(|f| f.raw.len()).sum::<usize>() + 2 + self.body.len(),
        );
        for f in &self.fields {
            out.extend_from_slice(&f.raw);
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }
}

/// A new field from a milter's name and value (folds as `\n` or `\r\n`).
fn field(name: &str, value: &[u8], leading_space: bool) -> Result<Field, String> {
    if name.is_empty() || !name.bytes().all(|b| (33..=126).contains(&b) && b != b':') {
        return Err(format!("{name:?} is not a header field name"));
    }
    // Lines split at LF (a CRLF counts as one LF); a CR anywhere else, or a line that does not start with
    // white space (a new field smuggled in), is refused. The value's bytes stay as they are (8-bit too).
    let mut lines: Vec<&[u8]> = value.split(|b| *b == b'\n').collect();
    let last = lines.len() - 1;
    for line in &mut lines[..last] {
        *line = line.strip_suffix(b"\r").unwrap_or(line);
    }
    if lines.iter().any(|l| l.contains(&b'\r'))
        || lines
            .iter()
            .skip(1)
            .any(|l| !l.starts_with(b" ") && !l.starts_with(b"\t"))
    {
        return Err(format!(
            "the value of {name} has a line that does not continue it"
        ));
    }
    let mut raw = name.as_bytes().to_vec();
    raw.extend_from_slice(if leading_space { b":" } else { b": " });
    raw.extend_from_slice(&lines.join(&b"\r\n"[..]));
    raw.extend_from_slice(b"\r\n");
    Ok(Field {
        name: name.to_string(),
        raw,
    })
}

/// `body` with every line ending CRLF (a milter's replacement body may use bare LF).
fn crlf(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / 32);
    let mut bytes = body.iter().copied().peekable();
    while let Some(b) = bytes.next() {
        match b {
            b'\r' => {
                bytes.next_if_eq(&b'\n');
                out.extend_from_slice(b"\r\n");
            }
            b'\n' => out.extend_from_slice(b"\r\n"),
            _ => out.push(b),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"From: a@example.org\r\nSubject: hello\r\n  world\r\nX-Test:  x\r\nsubject: again\r\n\r\nbody\r\n";

    #[test]
    fn fields_are_split_with_their_folds_and_the_rest_is_body() {
        let m = Message::parse(MSG);
        let names: Vec<&str> = m.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["From", "Subject", "X-Test", "subject"]);
        assert_eq!(m.fields[1].value(false), b"hello\n  world");
        assert_eq!(m.fields[2].value(false), b"x");
        assert_eq!(m.fields[2].value(true), b"  x");
        let latin1 = Message::parse(b"Subject: caf\xe9\r\n\r\n");
        assert_eq!(
            latin1.fields[0].value(false),
            b"caf\xe9",
            "8-bit bytes as they came"
        );
        assert_eq!(m.body, b"body\r\n");
        assert_eq!(m.to_bytes(), MSG, "unchanged, the bytes are the same");
        let bodyless = Message::parse(b"From: a@example.org\r\n");
        assert_eq!(bodyless.fields.len(), 1);
        assert_eq!(bodyless.to_bytes(), b"From: a@example.org\r\n\r\n");
    }

    #[test]
    fn header_edits_follow_libmilter() {
        let mut m = Message::parse(MSG);
        m.apply(Edit::Add("X-Spam".into(), "Yes".into()), false)
            .unwrap();
        m.apply(
            Edit::Insert(0, "DKIM-Signature".into(), "v=1;\n\tb=abc".into()),
            false,
        )
        .unwrap();
        m.apply(Edit::Change(2, "Subject".into(), "changed".into()), false)
            .unwrap();
        m.apply(Edit::Change(1, "X-Test".into(), Vec::new()), false)
            .unwrap();
        m.apply(Edit::Change(1, "X-New".into(), "added".into()), false)
            .unwrap();
        let text = String::from_utf8(m.to_bytes()).unwrap();
        assert_eq!(
            text,
            "DKIM-Signature: v=1;\r\n\tb=abc\r\nFrom: a@example.org\r\nSubject: hello\r\n  world\r\n\
             Subject: changed\r\nX-Spam: Yes\r\nX-New: added\r\n\r\nbody\r\n"
        );
    }

    #[test]
    fn an_8bit_value_a_milter_sends_back_stays_as_it_is() {
        let mut m = Message::parse(b"Subject: caf\xe9\r\n\r\nbody\r\n");
        m.apply(
            Edit::Change(1, "Subject".into(), b"caf\xe9 [spam]".to_vec()),
            false,
        )
        .unwrap();
        m.apply(
            Edit::Add("X-Note".into(), b"\xe9t\xe9\r\n\tsuite".to_vec()),
            false,
        )
        .unwrap();
        assert_eq!(
            m.to_bytes(),
            b"Subject: caf\xe9 [spam]\r\nX-Note: \xe9t\xe9\r\n\tsuite\r\n\r\nbody\r\n"
        );
    }

    #[test]
    fn a_milter_cannot_smuggle_fields() {
        let mut m = Message::parse(MSG);
        for bad in [
            Edit::Add("X-A".into(), "v\nBcc: x@example.org".into()),
            Edit::Add("X A".into(), "v".into()),
            Edit::Add(String::new(), "v".into()),
            Edit::Insert(0, "X-B".into(), "v\r".into()),
        ] {
            assert!(m.apply(bad, false).is_err());
        }
        assert_eq!(m.to_bytes(), MSG);
    }

    #[test]
    fn a_new_body_gets_crlf_line_ends() {
        let mut m = Message::parse(MSG);
        m.apply(Edit::Body(b"one\ntwo\r\nthree\rfour".to_vec()), false)
            .unwrap();
        assert!(
            m.to_bytes()
                .ends_with(b"\r\n\r\none\r\ntwo\r\nthree\r\nfour")
        );
    }
}

//! The milter wire protocol, version 6, as Sendmail's libmilter defines it and Postfix speaks it: packets of a
//! 4-byte big-endian length, one command byte and the command's data; strings NUL-terminated.
//!
//! Only the encoding lives here (no sockets, no timeouts), so it can be tested on bytes.

/// The protocol version offered (libmilter 8.14+, Postfix 2.6+).
pub const VERSION: u32 = 6;

/// The longest packet a milter may send (a body-replacement chunk is at most 64 KiB in libmilter; header
/// values are far smaller): anything longer is a broken or hostile milter.
pub const MAX_PACKET: usize = 1 << 20;

/// The largest body chunk sent (libmilter's `MILTER_CHUNK_SIZE`).
pub const BODY_CHUNK: usize = 65_535;

/// Commands, MTA to milter (`SMFIC_*`).
pub mod cmd {
    pub const BODY: u8 = b'B';
    pub const CONNECT: u8 = b'C';
    pub const MACRO: u8 = b'D';
    pub const BODYEOB: u8 = b'E';
    pub const HELO: u8 = b'H';
    pub const HEADER: u8 = b'L';
    pub const MAIL: u8 = b'M';
    pub const EOH: u8 = b'N';
    pub const OPTNEG: u8 = b'O';
    pub const QUIT: u8 = b'Q';
    pub const RCPT: u8 = b'R';
    pub const DATA: u8 = b'T';
}

/// Replies, milter to MTA (`SMFIR_*`).
pub mod reply {
    pub const ADDRCPT: u8 = b'+';
    pub const DELRCPT: u8 = b'-';
    pub const ADDRCPT_PAR: u8 = b'2';
    pub const ACCEPT: u8 = b'a';
    pub const REPLBODY: u8 = b'b';
    pub const CONTINUE: u8 = b'c';
    pub const DISCARD: u8 = b'd';
    pub const CHGFROM: u8 = b'e';
    pub const ADDHEADER: u8 = b'h';
    pub const INSHEADER: u8 = b'i';
    pub const CHGHEADER: u8 = b'm';
    pub const OPTNEG: u8 = b'O';
    pub const PROGRESS: u8 = b'p';
    pub const QUARANTINE: u8 = b'q';
    pub const REJECT: u8 = b'r';
    pub const SKIP: u8 = b's';
    pub const TEMPFAIL: u8 = b't';
    pub const REPLYCODE: u8 = b'y';
}

/// Actions a milter may take at the end of the message (`SMFIF_*`).
pub mod action {
    pub const ADDHDRS: u32 = 0x01;
    pub const CHGBODY: u32 = 0x02;
    #[allow(dead_code)] // not offered: named so the table is whole
    pub const ADDRCPT: u32 = 0x04;
    #[allow(dead_code)] // not offered: named so the table is whole
    pub const DELRCPT: u32 = 0x08;
    pub const CHGHDRS: u32 = 0x10;
    pub const QUARANTINE: u32 = 0x20;
    pub const CHGFROM: u32 = 0x40;
    #[allow(dead_code)] // not offered: named so the table is whole
    pub const ADDRCPT_PAR: u32 = 0x80;
    pub const SETSYMLIST: u32 = 0x100;

    /// What mailctl carries out. Recipient changes are not offered: a recipient added after DATA would skip
    /// what RCPT does (alias resolution, the relay rule, sending limits), and one removed would have to be
    /// traced through the aliases it expanded to.
    pub const OFFERED: u32 = ADDHDRS | CHGBODY | CHGHDRS | QUARANTINE | CHGFROM | SETSYMLIST;
}

/// Protocol steps a milter may ask the MTA to skip, or not to wait for a reply to (`SMFIP_*`).
pub mod step {
    pub const NOCONNECT: u32 = 0x1;
    pub const NOHELO: u32 = 0x2;
    pub const NOMAIL: u32 = 0x4;
    pub const NORCPT: u32 = 0x8;
    pub const NOBODY: u32 = 0x10;
    pub const NOHDRS: u32 = 0x20;
    pub const NOEOH: u32 = 0x40;
    pub const NR_HDR: u32 = 0x80;
    pub const NOUNKNOWN: u32 = 0x100;
    pub const NODATA: u32 = 0x200;
    pub const SKIP: u32 = 0x400;
    #[allow(dead_code)] // not offered: named so the table is whole
    pub const RCPT_REJ: u32 = 0x800;
    pub const NR_CONN: u32 = 0x1000;
    pub const NR_HELO: u32 = 0x2000;
    pub const NR_MAIL: u32 = 0x4000;
    pub const NR_RCPT: u32 = 0x8000;
    pub const NR_DATA: u32 = 0x10000;
    pub const NR_UNKN: u32 = 0x20000;
    pub const NR_EOH: u32 = 0x40000;
    pub const NR_BODY: u32 = 0x80000;
    pub const HDR_LEADSPC: u32 = 0x100000;

    /// Everything but `RCPT_REJ` (the milter sees the accepted recipients only).
    pub const OFFERED: u32 = NOCONNECT
        | NOHELO
        | NOMAIL
        | NORCPT
        | NOBODY
        | NOHDRS
        | NOEOH
        | NR_HDR
        | NOUNKNOWN
        | NODATA
        | SKIP
        | NR_CONN
        | NR_HELO
        | NR_MAIL
        | NR_RCPT
        | NR_DATA
        | NR_UNKN
        | NR_EOH
        | NR_BODY
        | HDR_LEADSPC;
}

/// Appends one packet to `out`.
pub fn packet(out: &mut Vec<u8>, command: u8, data: &[u8]) {
    let len = u32::try_from(data.len() + 1).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.push(command);
    out.extend_from_slice(data);
}

/// The data of a command made of NUL-terminated strings (CONNECT's hostname, HELO, MAIL, RCPT, HEADER).
/// A NUL inside a string would end it early on the other side: it is dropped.
pub fn strings<S: AsRef<[u8]>>(parts: &[S]) -> Vec<u8> {
    let mut data = Vec::new();
    for p in parts {
        data.extend(p.as_ref().iter().copied().filter(|b| *b != 0));
        data.push(0);
    }
    data
}

/// `SMFIC_OPTNEG`: the version, the actions and the protocol steps the MTA offers.
pub fn optneg() -> Vec<u8> {
    let mut data = Vec::with_capacity(12);
    data.extend_from_slice(&VERSION.to_be_bytes());
    data.extend_from_slice(&action::OFFERED.to_be_bytes());
    data.extend_from_slice(&step::OFFERED.to_be_bytes());
    data
}

/// `SMFIC_MACRO` for the command `stage`: name/value pairs, values present only.
pub fn macros(stage: u8, pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut data = vec![stage];
    for (name, value) in pairs {
        data.extend_from_slice(&strings(&[name, value]));
    }
    data
}

/// `SMFIC_CONNECT`: the client's name, family (`4` or `6`), port and address.
pub fn connect(hostname: &str, peer: std::net::SocketAddr) -> Vec<u8> {
    let mut data = strings(&[hostname]);
    data.push(if peer.is_ipv4() { b'4' } else { b'6' });
    data.extend_from_slice(&peer.port().to_be_bytes());
    data.extend_from_slice(&strings(&[&peer.ip().to_string()]));
    data
}

/// What the milter answered to `SMFIC_OPTNEG`: its version, and the actions and steps it wants, already
/// narrowed to what was offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    pub version: u32,
    pub actions: u32,
    pub steps: u32,
}

impl Negotiated {
    /// Parses the milter's `SMFIC_OPTNEG` reply. A milter may ask for more than was offered (rspamd does):
    /// as Postfix does, the rest is masked off, and an action it was not granted is ignored if it comes.
    pub fn parse(data: &[u8]) -> Result<Negotiated, String> {
        let word = |i: usize| {
            data.get(i * 4..i * 4 + 4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        };
        let (Some(version), Some(actions), Some(steps)) = (word(0), word(1), word(2)) else {
            return Err(format!(
                "its option negotiation is {} bytes, not 12",
                data.len()
            ));
        };
        if !(2..=VERSION).contains(&version) {
            return Err(format!(
                "it speaks milter protocol version {version}, not 2 to {VERSION}"
            ));
        }
        Ok(Negotiated {
            version,
            actions: actions & action::OFFERED,
            steps: steps & step::OFFERED,
        })
    }

    /// The milter asked for step flag `flag`.
    pub fn has(&self, flag: u32) -> bool {
        self.steps & flag != 0
    }
}

/// The NUL-terminated strings of a reply's data (trailing NULs do not add empty strings).
pub fn split_strings(data: &[u8]) -> Vec<Vec<u8>> {
    let data = data.strip_suffix(&[0]).unwrap_or(data);
    data.split(|b| *b == 0).map(<[u8]>::to_vec).collect()
}

/// A big-endian u32 at the start of `data`, and the rest.
pub fn index_and_rest(data: &[u8]) -> Option<(u32, &[u8])> {
    let (head, rest) = data.split_first_chunk::<4>()?;
    Some((u32::from_be_bytes(*head), rest))
}

/// An SMTP reply a milter gave with `SMFIR_REPLYCODE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyCode {
    /// 4xx or 5xx.
    pub code: u16,
    /// The enhanced status code, when the reply had one of the same class.
    pub enhanced: Option<(u8, u16, u16)>,
    /// The text of every line, joined.
    pub text: String,
}

/// An SMTP reply a milter gave with `SMFIR_REPLYCODE` (`550 5.7.1 Gtube pattern`, possibly several lines
/// `550-...\r\n550 ...`): the code, the enhanced code when there is one, and the text of every line joined.
/// Only 4xx and 5xx codes are valid here.
pub fn parse_replycode(data: &[u8]) -> Result<ReplyCode, String> {
    let text = String::from_utf8_lossy(data.strip_suffix(&[0]).unwrap_or(data)).into_owned();
    let mut code = None;
    let mut enhanced = None;
    let mut words = Vec::new();
    for line in text.split(['\r', '\n']).filter(|l| !l.is_empty()) {
        let c: u16 = line
            .get(..3)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("its reply {line:?} does not start with a code"))?;
        if !(400..600).contains(&c) {
            return Err(format!("its reply code {c} is not 4xx or 5xx"));
        }
        code.get_or_insert(c);
        let rest = line.get(4..).unwrap_or("").trim();
        let (first, after) = rest.split_once(' ').unwrap_or((rest, ""));
        let parsed = parse_enhanced(first).filter(|(class, _, _)| u16::from(*class) == c / 100);
        match parsed {
            Some(e) => {
                enhanced.get_or_insert(e);
                words.push(after.trim().to_string());
            }
            None => words.push(rest.to_string()),
        }
    }
    let code = code.ok_or("its reply code is empty")?;
    Ok(ReplyCode {
        code,
        enhanced,
        text: words.join(" ").trim().to_string(),
    })
}

/// `5.7.1` as numbers.
fn parse_enhanced(s: &str) -> Option<(u8, u16, u16)> {
    let mut parts = s.split('.');
    let class = parts.next()?.parse().ok()?;
    let subject = parts.next()?.parse().ok()?;
    let detail = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some((class, subject, detail))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_packet_is_length_command_and_data() {
        let mut out = Vec::new();
        packet(&mut out, cmd::HELO, &strings(&["mx.example"]));
        assert_eq!(out, b"\0\0\0\x0cHmx.example\0");
        let mut out = Vec::new();
        packet(&mut out, cmd::BODYEOB, &[]);
        assert_eq!(out, b"\0\0\0\x01E");
    }

    #[test]
    fn connect_names_family_port_and_address() {
        let data = connect("mail.example", "192.0.2.1:2525".parse().unwrap());
        assert_eq!(data, b"mail.example\x004\x09\xdd192.0.2.1\0");
        let data = connect("[::1]", "[::1]:25".parse().unwrap());
        assert_eq!(data, b"[::1]\x006\x00\x19::1\0");
    }

    #[test]
    fn negotiation_is_narrowed_to_what_was_offered() {
        let mut reply = Vec::new();
        reply.extend_from_slice(&6u32.to_be_bytes());
        reply.extend_from_slice(&(action::ADDHDRS | action::ADDRCPT).to_be_bytes());
        reply.extend_from_slice(&(step::NR_CONN | step::RCPT_REJ).to_be_bytes());
        reply.extend_from_slice(b"\0\0\0\x01{rcpt_addr}\0");
        let n = Negotiated::parse(&reply).unwrap();
        assert_eq!(n.actions, action::ADDHDRS);
        assert!(n.has(step::NR_CONN) && !n.has(step::RCPT_REJ));
        let mut old = Vec::new();
        old.extend_from_slice(&1u32.to_be_bytes());
        old.extend_from_slice(&[0; 8]);
        assert!(Negotiated::parse(&old).unwrap_err().contains("version 1"));
        assert!(Negotiated::parse(&[0, 0, 0, 6]).is_err());
    }

    #[test]
    fn reply_codes_keep_the_milters_words() {
        assert_eq!(
            parse_replycode(b"554 5.7.1 Gtube pattern\0").unwrap(),
            ReplyCode {
                code: 554,
                enhanced: Some((5, 7, 1)),
                text: "Gtube pattern".into()
            }
        );
        assert_eq!(
            parse_replycode(b"450-4.2.0 first\r\n450 4.2.0 second\0").unwrap(),
            ReplyCode {
                code: 450,
                enhanced: Some((4, 2, 0)),
                text: "first second".into()
            }
        );
        assert_eq!(
            parse_replycode(b"550 no enhanced code").unwrap(),
            ReplyCode {
                code: 550,
                enhanced: None,
                text: "no enhanced code".into()
            }
        );
        assert!(parse_replycode(b"250 ok").is_err());
        assert!(parse_replycode(b"hello").is_err());
        assert!(parse_replycode(b"").is_err());
    }

    #[test]
    fn strings_drop_nuls_inside() {
        assert_eq!(strings(&["a\0b", ""]), b"ab\0\0");
        assert_eq!(
            split_strings(b"X-Spam\0Yes\xe9\0"),
            [&b"X-Spam"[..], b"Yes\xe9"]
        );
        assert_eq!(index_and_rest(b"\0\0\0\x02X\0"), Some((2, &b"X\0"[..])));
    }
}

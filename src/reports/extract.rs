//! From bytes as they arrive (a file, a mail message, an attachment) to the reports inside: DMARC aggregate
//! reports (XML, RFC 7489 appendix C and the RFC 9990 schema) and TLS reports (JSON, RFC 8460).
//!
//! The container is recognized by its content, never trusted from a name or a MIME type: gzip (`1f 8b`), zip
//! (`PK\3\4`), XML (`<`), JSON (`{`), else an RFC 5322 message, whose parts are searched in turn (attachments of
//! any type, inline parts, forwarded `message/rfc822` parts). A zip may hold several reports, a message several
//! attachments: every report found is returned, and each one that does not parse is a rejection naming where
//! it was.
//!
//! Hostile input is bounded: decompressed output stops at [`Limits::max_size`] and at [`Limits::ratio`] times
//! the compressed size (past the first MiB), archives and messages nest at most [`MAX_DEPTH`] deep, and the XML
//! parser resolves no entities and reads no DTD (quick-xml has neither).

use std::io::{Cursor, Read};

use mail_auth::report::Report as DmarcReport;
use mail_auth::report::tlsrpt::TlsReport;
use mail_parser::{MessageParser, MimeHeaders, PartType};
use memchr::memmem;

/// How deep archives and messages may nest (a zip in a message in a gzip...).
pub const MAX_DEPTH: usize = 4;

/// Most files read from one zip archive.
pub const MAX_ZIP_ENTRIES: usize = 1000;

/// Bounds on decompression.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most bytes one compressed file may expand to.
    pub max_size: u64,
    /// Most bytes out per byte in, past the first MiB (a real report compresses 10-40 times; a bomb by
    /// thousands).
    pub ratio: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_size: 1 << 30,
            ratio: 200,
        }
    }
}

/// One report found.
#[derive(Debug, Clone)]
pub enum Found {
    /// A DMARC aggregate report.
    Dmarc(Box<DmarcReport>),
    /// A TLS report.
    Tls(Box<TlsReport>),
}

/// What one input held: the reports, one line per part that should have been a report and was not, and a
/// line when it was a mail message without any report (ordinary mail, not an error).
#[derive(Debug, Default)]
pub struct Extracted {
    /// Every report found, in order.
    pub reports: Vec<Found>,
    /// Why a part was rejected, naming it (`attachment report.xml.gz: ...`).
    pub rejected: Vec<String>,
    /// Why the input holds no report although nothing in it was broken.
    pub skipped: Vec<String>,
}

/// Finds the reports in `bytes` (see the module doc).
pub fn extract(bytes: &[u8], limits: Limits) -> Extracted {
    let mut out = Extracted::default();
    // One budget for every layer together, against the size of what arrived: nesting gzip in zip in gzip
    // multiplies nothing.
    let budget = limits
        .max_size
        .min((1 << 20) + (bytes.len() as u64).saturating_mul(limits.ratio));
    let mut walker = Walker {
        budget,
        out: &mut out,
    };
    if let Err(why) = walker.any(bytes, "", 0) {
        walker.out.rejected.push(why);
    }
    if out.reports.is_empty() && out.rejected.is_empty() && out.skipped.is_empty() {
        out.rejected
            .push("no DMARC or TLS report in it (no XML, JSON, gzip or zip part)".into());
    }
    out
}

struct Walker<'a> {
    /// Bytes decompression may still produce for this input.
    budget: u64,
    out: &'a mut Extracted,
}

/// `where` prefixed to `why`, for a rejection that names its part.
fn at(place: &str, why: impl std::fmt::Display) -> String {
    if place.is_empty() {
        why.to_string()
    } else {
        format!("{place}: {why}")
    }
}

impl Walker<'_> {
    /// Whatever `bytes` is; `place` names it in rejections. Err: `bytes` was meant to be a report and is not.
    fn any(&mut self, bytes: &[u8], place: &str, depth: usize) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(at(place, "nested too deep"));
        }
        let text = skip_bom_and_space(bytes);
        if bytes.starts_with(&[0x1f, 0x8b]) {
            let inner = self.gunzip(bytes).map_err(|why| at(place, why))?;
            self.any(&inner, place, depth + 1)
        } else if bytes.starts_with(b"PK\x03\x04") {
            self.unzip(bytes, place, depth)
        } else if text.starts_with(b"<") {
            if memmem::find(text, b"<!DOCTYPE").is_some()
                || memmem::find(text, b"<!ENTITY").is_some()
            {
                return Err(at(
                    place,
                    "XML with a DTD or entity declarations is refused (reports never carry one)",
                ));
            }
            let text = fold_keywords(text);
            let report = DmarcReport::parse_xml(&text)
                .map_err(|why| at(place, format!("not a DMARC aggregate report: {why}")))?;
            self.out.reports.push(Found::Dmarc(Box::new(report)));
            Ok(())
        } else if text.starts_with(b"{") {
            let report = TlsReport::parse_json(text)
                .map_err(|why| at(place, format!("not a TLS report: {}", tls_error(why))))?;
            self.out.reports.push(Found::Tls(Box::new(report)));
            Ok(())
        } else if looks_like_message(text) {
            self.message(text, place, depth)
        } else {
            Err(at(
                place,
                "not a report: neither XML, JSON, gzip, zip nor a mail message",
            ))
        }
    }

    /// Decompresses a gzip stream within the budget.
    fn gunzip(&mut self, bytes: &[u8]) -> Result<Vec<u8>, String> {
        let decoder = flate2::read::MultiGzDecoder::new(bytes);
        self.capped(decoder, bytes.len() as u64, "gzip")
    }

    /// Reads `reader` to its end, refusing output past what is left of the budget; what it produced is spent.
    fn capped(
        &mut self,
        reader: impl Read,
        compressed: u64,
        what: &str,
    ) -> Result<Vec<u8>, String> {
        let allowed = self.budget;
        let mut out = Vec::new();
        reader
            .take(allowed + 1)
            .read_to_end(&mut out)
            .map_err(|e| format!("broken {what} data: {e}"))?;
        if out.len() as u64 > allowed {
            return Err(format!(
                "{what} data expands to more than {} (from {compressed} bytes): refused as a decompression bomb",
                human(allowed)
            ));
        }
        self.budget -= out.len() as u64;
        Ok(out)
    }

    /// Every file in a zip archive.
    fn unzip(&mut self, bytes: &[u8], place: &str, depth: usize) -> Result<(), String> {
        let mut archive = zip::ZipArchive::new(Cursor::new(bytes))
            .map_err(|e| at(place, format!("broken zip archive: {e}")))?;
        if archive.len() > MAX_ZIP_ENTRIES {
            return Err(at(
                place,
                format!(
                    "a zip archive of {} files is refused (at most {MAX_ZIP_ENTRIES})",
                    archive.len()
                ),
            ));
        }
        for i in 0..archive.len() {
            let mut file = match archive.by_index(i) {
                Ok(file) => file,
                Err(e) => {
                    self.out
                        .rejected
                        .push(at(place, format!("zip entry {i}: {e}")));
                    continue;
                }
            };
            if file.is_dir() {
                continue;
            }
            let name = format!("{}{}", prefix(place), file.name());
            let compressed = file.compressed_size();
            match self.capped(&mut file, compressed, "zip") {
                Ok(inner) => {
                    if let Err(why) = self.any(&inner, &name, depth + 1) {
                        self.out.rejected.push(why);
                    }
                }
                Err(why) => self.out.rejected.push(at(&name, why)),
            }
        }
        Ok(())
    }

    /// The parts of a mail message that can hold a report.
    fn message(&mut self, bytes: &[u8], place: &str, depth: usize) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(at(place, "nested too deep"));
        }
        let message = MessageParser::new()
            .parse(bytes)
            .ok_or_else(|| at(place, "not a mail message"))?;
        let before = (self.out.reports.len(), self.out.rejected.len());
        for (i, part) in message.parts.iter().enumerate() {
            let name = part
                .attachment_name()
                .map(|n| format!("{}attachment {n}", prefix(place)))
                .unwrap_or_else(|| format!("{}part {}", prefix(place), i + 1));
            let subtype = part
                .content_type()
                .map(|ct| {
                    let sub = ct.subtype().unwrap_or("");
                    format!("{}/{}", ct.ctype(), sub).to_ascii_lowercase()
                })
                .unwrap_or_default();
            let result = match &part.body {
                // Only what can be a report is opened: a signature, a picture or a PDF next to the report is no
                // broken report.
                PartType::Binary(data) | PartType::InlineBinary(data) if may_be_report(data) => {
                    self.any(data, &name, depth + 1)
                }
                // Text parts are the report only when they say so (a report sent inline as XML or JSON).
                PartType::Text(text) if is_report_text(&subtype, part.attachment_name()) => {
                    self.any(text.as_bytes(), &name, depth + 1)
                }
                PartType::Message(inner) => {
                    let raw = inner.raw_message();
                    self.message(raw, &name, depth + 1)
                }
                _ => Ok(()),
            };
            if let Err(why) = result {
                self.out.rejected.push(why);
            }
        }
        if (self.out.reports.len(), self.out.rejected.len()) == before && depth == 0 {
            self.out.skipped.push(at(
                place,
                "a mail message without a report (no XML, JSON, gzip or zip attachment)",
            ));
        }
        Ok(())
    }
}

/// Elements whose text is one of the schema's keywords (`pass`, `reject`, `mfrom`...).
const KEYWORD_ELEMENTS: &[&[u8]] = &[
    b"disposition",
    b"dkim",
    b"spf",
    b"result",
    b"p",
    b"sp",
    b"np",
    b"adkim",
    b"aspf",
    b"scope",
    b"type",
    b"testing",
    b"discovery_method",
];

/// `xml` with the keyword values lower-cased: some reporters write `Pass` or `Fail` where the schema says
/// `pass`, and mail-auth's parser compares exactly. Only the text right after an opening tag of
/// [`KEYWORD_ELEMENTS`] changes (prefixed names such as `<ns:dkim>` too); nothing else is touched.
fn fold_keywords(xml: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let mut out: Option<Vec<u8>> = None;
    let mut i = 0;
    while let Some(lt) = xml[i..].iter().position(|b| *b == b'<') {
        let start = i + lt + 1;
        let Some(gt) = xml[start..].iter().position(|b| *b == b'>') else {
            break;
        };
        let tag = &xml[start..start + gt];
        let name = tag
            .split(|b| b.is_ascii_whitespace())
            .next()
            .unwrap_or_default();
        let local = name.rsplit(|b| *b == b':').next().unwrap_or_default();
        let text_start = start + gt + 1;
        let text_end = xml[text_start..]
            .iter()
            .position(|b| *b == b'<')
            .map_or(xml.len(), |p| text_start + p);
        let opening = !tag.starts_with(b"/") && !tag.ends_with(b"/");
        if opening
            && KEYWORD_ELEMENTS.contains(&local)
            && xml[text_start..text_end].iter().any(u8::is_ascii_uppercase)
        {
            let buf = out.get_or_insert_with(|| xml.to_vec());
            buf[text_start..text_end].make_ascii_lowercase();
        }
        i = text_start;
    }
    match out {
        Some(v) => std::borrow::Cow::Owned(v),
        None => std::borrow::Cow::Borrowed(xml),
    }
}

/// Whether an attachment's bytes can be a report or hold one: gzip, zip, XML or JSON.
fn may_be_report(bytes: &[u8]) -> bool {
    let text = skip_bom_and_space(bytes);
    bytes.starts_with(&[0x1f, 0x8b])
        || bytes.starts_with(b"PK\x03\x04")
        || text.starts_with(b"<")
        || text.starts_with(b"{")
}

/// `place: ` or nothing.
fn prefix(place: &str) -> String {
    if place.is_empty() {
        String::new()
    } else {
        format!("{place}: ")
    }
}

/// A text part that carries a report: an XML or JSON type, or a file name ending so.
fn is_report_text(content_type: &str, name: Option<&str>) -> bool {
    let by_type = content_type.ends_with("/xml")
        || content_type.ends_with("+xml")
        || content_type.ends_with("/json")
        || content_type.ends_with("+json");
    let by_name = name
        .and_then(|n| n.rsplit_once('.'))
        .is_some_and(|(_, ext)| {
            ext.eq_ignore_ascii_case("xml") || ext.eq_ignore_ascii_case("json")
        });
    by_type || by_name
}

/// The bytes after a UTF-8 byte order mark and leading white space.
fn skip_bom_and_space(bytes: &[u8]) -> &[u8] {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    &bytes[start..]
}

/// Whether `bytes` starts like an RFC 5322 message (a header field, or an mbox `From ` line).
fn looks_like_message(bytes: &[u8]) -> bool {
    if bytes.starts_with(b"From ") {
        return true;
    }
    let line = bytes.split(|b| *b == b'\n').next().unwrap_or_default();
    match line.iter().position(|b| *b == b':') {
        Some(colon) if colon > 0 => line[..colon]
            .iter()
            .all(|b| b.is_ascii_graphic() && *b != b':'),
        _ => false,
    }
}

/// mail-auth's TLS report error as one line.
fn tls_error(e: mail_auth::report::Error) -> String {
    match e {
        mail_auth::report::Error::ReportParseError(why) => why,
        other => format!("{other:?}"),
    }
}

/// A byte count for people: `1 GiB`, `201 MiB`, `12 KiB`.
fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 && b % (1 << 30) == 0 => format!("{} GiB", b >> 30),
        b if b >= 1 << 20 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const XML: &str = r#"<?xml version="1.0" encoding="UTF-8" ?>
<feedback>
  <report_metadata><org_name>google.com</org_name><email>noreply-dmarc-support@google.com</email>
    <report_id>123</report_id><date_range><begin>1700000000</begin><end>1700086399</end></date_range>
  </report_metadata>
  <policy_published><domain>example.org</domain><adkim>r</adkim><aspf>r</aspf><p>reject</p><sp>reject</sp>
    <pct>100</pct></policy_published>
  <record><row><source_ip>192.0.2.1</source_ip><count>2</count><policy_evaluated><disposition>none</disposition>
    <dkim>pass</dkim><spf>pass</spf></policy_evaluated></row><identifiers><header_from>example.org</header_from>
    </identifiers><auth_results><dkim><domain>example.org</domain><result>pass</result><selector>s1</selector></dkim>
    <spf><domain>example.org</domain><result>pass</result></spf></auth_results></record>
</feedback>"#;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn xml_gzip_and_a_bom_are_recognized_by_content() {
        for bytes in [
            XML.as_bytes().to_vec(),
            gzip(XML.as_bytes()),
            [b"\xef\xbb\xbf\n".as_slice(), XML.as_bytes()].concat(),
        ] {
            let found = extract(&bytes, Limits::default());
            assert!(found.rejected.is_empty(), "{:?}", found.rejected);
            let [Found::Dmarc(r)] = found.reports.as_slice() else {
                panic!("{:?}", found.reports)
            };
            assert_eq!(r.report_metadata.report_id, "123");
        }
    }

    #[test]
    fn mail_without_a_report_is_skipped_and_other_attachments_are_left_alone() {
        let mail = "From: a@b.test\r\nSubject: hi\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; \
                    boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b\r\n\
                    Content-Type: application/pdf; name=\"x.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n\
                    JVBERi0xLjQK\r\n--b--\r\n";
        let found = extract(mail.as_bytes(), Limits::default());
        assert!(
            found.reports.is_empty() && found.rejected.is_empty(),
            "{found:?}"
        );
        assert_eq!(found.skipped.len(), 1);
        assert!(found.skipped[0].contains("a mail message without a report"));
    }

    #[test]
    fn forwarded_messages_nested_too_deep_are_refused_without_recursing_further() {
        let mut mail = String::from("From: a@b.test\r\nSubject: end\r\n\r\nbody\r\n");
        for _ in 0..200 {
            mail = format!(
                "From: a@b.test\r\nMIME-Version: 1.0\r\nContent-Type: message/rfc822\r\n\r\n{mail}"
            );
        }
        let found = extract(mail.as_bytes(), Limits::default());
        assert!(found.reports.is_empty());
        assert!(
            found.rejected.iter().any(|r| r.contains("nested too deep")),
            "{found:?}"
        );
    }

    #[test]
    fn the_budget_covers_every_layer_together() {
        // A gzip of a gzip: each layer alone within 200:1 of its own input, together far past it.
        let inner = gzip(&vec![b' '; 8 << 20]);
        let outer = gzip(&[inner.as_slice(), &vec![0u8; 4096]].concat());
        let limits = Limits {
            max_size: 1 << 30,
            ratio: 200,
        };
        let found = extract(&outer, limits);
        assert!(found.reports.is_empty());
        assert!(
            found
                .rejected
                .iter()
                .any(|r| r.contains("decompression bomb")),
            "{found:?}"
        );
    }

    #[test]
    fn keyword_values_are_lower_cased_and_nothing_else() {
        let xml = b"<feedback><report_metadata><org_name>Enterprise Outlook</org_name></report_metadata>\
            <row><policy_evaluated><disposition>None</disposition><dkim>Pass</dkim><ns:spf a=\"B\">FAIL</ns:spf>\
            </policy_evaluated></row></feedback>";
        let folded = fold_keywords(xml);
        let text = String::from_utf8_lossy(&folded);
        assert!(
            text.contains("<org_name>Enterprise Outlook</org_name>"),
            "{text}"
        );
        assert!(
            text.contains("<disposition>none</disposition><dkim>pass</dkim>"),
            "{text}"
        );
        assert!(text.contains("<ns:spf a=\"B\">fail</ns:spf>"), "{text}");
        assert!(matches!(
            fold_keywords(b"<dkim>pass</dkim>"),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    #[test]
    fn xml_with_a_dtd_is_refused() {
        let xml = "<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/passwd\">]><feedback/>";
        let found = extract(xml.as_bytes(), Limits::default());
        assert!(found.reports.is_empty());
        assert!(found.rejected[0].contains("DTD"), "{:?}", found.rejected);
    }

    #[test]
    fn a_gzip_bomb_is_refused_by_ratio_and_by_size() {
        let bomb = gzip(&vec![b' '; 20 << 20]);
        let found = extract(&bomb, Limits::default());
        assert!(found.reports.is_empty());
        assert!(
            found.rejected[0].contains("decompression bomb"),
            "{:?}",
            found.rejected
        );
        let small = Limits {
            max_size: 100,
            ratio: 1_000_000,
        };
        let found = extract(&gzip(XML.as_bytes()), small);
        assert!(
            found.rejected[0].contains("more than 100 bytes"),
            "{:?}",
            found.rejected
        );
    }

    #[test]
    fn what_is_no_report_says_so_in_one_line() {
        for (bytes, expected) in [
            (&b"\x00\x01binary"[..], "not a report"),
            (b"<html>hello</html>", "not a DMARC aggregate report"),
            (b"{\"a\": 1}", "not a TLS report"),
        ] {
            let found = extract(bytes, Limits::default());
            assert!(found.reports.is_empty());
            assert_eq!(found.rejected.len(), 1, "{:?}", found.rejected);
            assert!(found.rejected[0].contains(expected), "{:?}", found.rejected);
            assert!(!found.rejected[0].contains('\n'));
        }
    }
}

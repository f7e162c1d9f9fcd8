//! The `Received:` trace header (RFC 5321 4.4) this server prepends to every message it accepts.

/// What the Received header records about one transaction.
pub(super) struct Trace<'a> {
    /// The EHLO/HELO name (already validated as a domain or address literal).
    pub helo: &'a str,
    /// The client's forward-confirmed PTR name, if known.
    pub ptr: Option<&'a str>,
    /// The client IP.
    pub ip: std::net::IpAddr,
    /// This server's name.
    pub hostname: &'a str,
    /// EHLO (ESMTP) rather than HELO.
    pub esmtp: bool,
    /// `TLSv1.3:TLS13_AES_256_GCM_SHA384` when encrypted.
    pub tls: Option<&'a str>,
    /// The client logged in.
    pub authenticated: bool,
    /// Queue id.
    pub id: &'a str,
    /// The recipient, when there is exactly one (more would leak the list to every recipient).
    pub single_recipient: Option<&'a str>,
}

impl Trace<'_> {
    /// The header field, folded, ending in CRLF. The `with` keyword follows RFC 3848 (ESMTP, ESMTPS,
    /// ESMTPSA, ESMTPA; SMTP for HELO).
    pub fn header(&self) -> String {
        let mut with = String::from(if self.esmtp { "ESMTP" } else { "SMTP" });
        if self.esmtp && self.tls.is_some() {
            with.push('S');
        }
        if self.esmtp && self.authenticated {
            with.push('A');
        }
        let tls = self.tls.map(|t| format!(" ({t})")).unwrap_or_default();
        let recipient = self
            .single_recipient
            .map(|r| format!("\r\n\tfor <{}>", clean(r)))
            .unwrap_or_default();
        format!(
            "Received: from {} ({} [{}])\r\n\tby {} (mailctl) with {with}{tls}\r\n\tid {}{recipient};\r\n\t{}\r\n",
            clean(self.helo),
            self.ptr.map(clean).unwrap_or_else(|| "unknown".into()),
            self.ip,
            self.hostname,
            self.id,
            chrono::Utc::now().to_rfc2822(),
        )
    }
}

/// Keeps text that ends up inside a header from breaking it: no CR, LF or other controls, no parentheses
/// (which would end the comment it sits in).
fn clean(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() || c == '(' || c == ')' || c == '<' || c == '>' {
                '?'
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names_tls_and_authentication_and_cannot_be_broken() {
        let trace = Trace {
            helo: "client.example",
            ptr: Some("host\r\nX-Evil: 1"),
            ip: "192.0.2.1".parse().unwrap(),
            hostname: "mx.example.test",
            esmtp: true,
            tls: Some("TLSv1.3:TLS13_AES_256_GCM_SHA384"),
            authenticated: true,
            id: "ABC",
            single_recipient: Some("a@b.test"),
        };
        let h = trace.header();
        assert!(
            h.starts_with("Received: from client.example (host??X-Evil: 1 [192.0.2.1])\r\n"),
            "{h}"
        );
        assert!(
            h.contains("with ESMTPSA (TLSv1.3:TLS13_AES_256_GCM_SHA384)"),
            "{h}"
        );
        assert!(h.contains("\r\n\tfor <a@b.test>;"), "{h}");
        assert_eq!(h.matches("\r\n").count(), 5, "{h}");
        assert!(h.lines().skip(1).all(|l| l.starts_with('\t')), "{h}");
    }
}

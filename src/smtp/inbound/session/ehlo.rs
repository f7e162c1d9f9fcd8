//! EHLO and HELO: the client names itself, the server lists what it offers.

use super::Session;
use crate::smtp::inbound::command::{PathDomain, Reply};
use crate::smtp::metrics::RejectReason;

impl Session {
    /// Answers EHLO (`esmtp`) or HELO. The name is recorded as given (for the Received header and HELO SPF)
    /// once it is a domain or an address literal; anything else is refused with 501. A new EHLO resets the
    /// transaction, as RFC 5321 4.1.4 says.
    pub(super) fn ehlo(&mut self, name: String, esmtp: bool) -> Reply {
        if PathDomain::parse(&name).is_err() {
            self.server.metrics.rejected(RejectReason::Protocol);
            return Reply::new(501, Some((5, 5, 4)), "Invalid EHLO/HELO name");
        }
        self.abandon("new EHLO");
        self.helo = Some((name, esmtp));
        let host = &self.server.settings.hostname;
        if !esmtp {
            return Reply::new(250, None, host);
        }
        let mut lines = vec![
            host.clone(),
            "PIPELINING".to_string(),
            format!("SIZE {}", self.server.settings.limits.max_message_size),
            "8BITMIME".to_string(),
            "ENHANCEDSTATUSCODES".to_string(),
            "SMTPUTF8".to_string(),
        ];
        if self.server.tls.is_some() && self.tls.is_none() {
            lines.push("STARTTLS".to_string());
        }
        if self.auth_offered() {
            lines.push("AUTH PLAIN LOGIN".to_string());
        }
        Reply::multiline(250, None, lines)
    }

    /// AUTH is offered on submission listeners, under TLS, to a client not yet logged in.
    pub(super) fn auth_offered(&self) -> bool {
        self.kind.offers_auth() && self.tls.is_some() && self.login.is_none()
    }
}

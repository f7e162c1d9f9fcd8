//! The SASL PLAIN and LOGIN decoders of SMTP AUTH.
//!
//! The input is tried twice: as the base64 text a client sends (any bytes, made UTF-8), and as the decoded
//! message, base64-encoded here, so the decoders' checks after base64 are reached on every run. Asserted:
//! no panic; a PLAIN message accepted is exactly `authzid NUL authcid NUL password` with a non-empty user name
//! and password and no control characters in the identities; a LOGIN value accepted is the decoded text; every
//! refusal's reply is a well-formed SMTP reply; `Debug` of credentials shows the identities and `<redacted>` for the password.
#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use libfuzzer_sys::fuzz_target;
use mailctl::smtp::inbound::command::auth::MAX_AUTH_LINE;
use mailctl::smtp::inbound::command::{decode_login_step, decode_plain};
use mailctl_fuzz::check_reply;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    check(&text, None);
    let encoded = STANDARD.encode(data);
    check(&encoded, Some(data));
    // Unpadded base64 is accepted too, for the same message.
    check(encoded.trim_end_matches('='), Some(data));
});

/// Decodes `b64` both ways; `message` is what it decodes to, when known.
fn check(b64: &str, message: Option<&[u8]>) {
    match decode_plain(b64) {
        Ok(creds) => {
            assert!(b64.len() <= MAX_AUTH_LINE, "accepted an over-long response");
            assert!(!creds.authcid.is_empty() && !creds.password.is_empty());
            for identity in [Some(&creds.authcid), creds.authzid.as_ref()]
                .into_iter()
                .flatten()
            {
                assert!(
                    !identity.chars().any(char::is_control),
                    "control character in {identity:?}"
                );
            }
            if let Some(message) = message {
                let mut rebuilt = creds.authzid.clone().unwrap_or_default().into_bytes();
                rebuilt.push(0);
                rebuilt.extend_from_slice(creds.authcid.as_bytes());
                rebuilt.push(0);
                rebuilt.extend_from_slice(creds.password.as_bytes());
                assert_eq!(
                    rebuilt, message,
                    "PLAIN fields do not add up to the message"
                );
            }
            let expected = format!(
                "PlainCredentials {{ authzid: {:?}, authcid: {:?}, password: \"<redacted>\" }}",
                creds.authzid, creds.authcid
            );
            assert_eq!(
                format!("{creds:?}"),
                expected,
                "Debug must hide the password"
            );
        }
        Err(e) => check_reply(&e.reply()),
    }
    match decode_login_step(b64) {
        Ok(value) => {
            assert!(!value.is_empty() && !value.contains('\0'));
            if let Some(message) = message {
                assert_eq!(
                    value.as_bytes(),
                    message,
                    "LOGIN value is not the decoded text"
                );
            }
        }
        Err(e) => check_reply(&e.reply()),
    }
}

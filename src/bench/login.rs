//! Setting up one `bench smtp` session: greeting and EHLO, then (when asked) STARTTLS and AUTH PLAIN, so the
//! bench can drive a submission listener (587) the way a mail client does, and measure signing and queueing
//! rather than only the MX path.
//!
//! The TLS handshake accepts any certificate (the handshake signature is still checked): this is a benchmark
//! for one's own server, often with a self-signed or test certificate, and it must never stop on trust.
//! The password therefore goes to whoever answers at the address; point the bench only at your own server.
//!
//! Failures come in two kinds. A connection problem (I/O, timeout, `4xx`, `421`) is retried like any other
//! session error. A refusal the bench cannot get past by retrying (no STARTTLS offered, a `5xx` to STARTTLS,
//! a `5xx` to AUTH such as `535` for a wrong password) is [`is_fatal`]: the run stops, instead of locking the
//! account out with thousands of failed logins.

use std::fmt;
use std::io;
use std::sync::Arc;

use base64::Engine;
use rustls::ClientConfig;
use tokio::time::Instant;

use super::client::{Client, Reply};

/// The credentials of `--auth USER:PASS`.
#[derive(Clone, PartialEq, Eq)]
pub struct Login {
    /// The login (the mailbox address, for `mailctl serve`).
    pub user: String,
    /// Its password.
    pub password: String,
}

impl fmt::Debug for Login {
    /// Never prints the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Login")
            .field("user", &self.user)
            .field("password", &"***")
            .finish()
    }
}

impl Login {
    /// Parses `USER:PASS` (split at the first colon, so the password may contain colons); None when there is
    /// no colon or either side is empty.
    pub fn parse(text: &str) -> Option<Login> {
        let (user, password) = text.split_once(':')?;
        (!user.is_empty() && !password.is_empty()).then(|| Login {
            user: user.to_string(),
            password: password.to_string(),
        })
    }

    /// The `AUTH PLAIN` command with its initial response (RFC 4616: no authorization identity).
    pub fn auth_plain_command(&self) -> String {
        let token = format!("\0{}\0{}", self.user, self.password);
        let encoded = base64::engine::general_purpose::STANDARD.encode(token);
        format!("AUTH PLAIN {encoded}\r\n")
    }
}

/// How sessions secure and identify themselves.
#[derive(Debug, Clone, Default)]
pub struct Security {
    /// STARTTLS with this client configuration after the first EHLO; None: stay in plain text.
    pub tls: Option<Arc<ClientConfig>>,
    /// AUTH PLAIN after STARTTLS (requires `tls`).
    pub login: Option<Login>,
}

impl Security {
    /// Plain text without login (the MX path), or STARTTLS (forced when `login` is given) trusting any
    /// certificate. Fails only when no TLS client configuration can be built (a broken crypto provider).
    pub fn new(starttls: bool, login: Option<Login>) -> Result<Security, String> {
        let tls = match starttls || login.is_some() {
            true => Some(crate::tls::inspecting_config()?),
            false => None,
        };
        Ok(Security { tls, login })
    }
}

/// A refusal that retrying cannot fix; see the module documentation.
#[derive(Debug)]
struct Fatal(String);

impl fmt::Display for Fatal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Fatal {}

/// True for an error [`establish`] returned because the server refused STARTTLS or the login for good.
pub fn is_fatal(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<Fatal>())
}

fn fatal(message: String) -> io::Error {
    io::Error::other(Fatal(message))
}

/// The error for a non-success reply to `what`: fatal for `5xx`, a retryable connection error otherwise.
fn refused(what: &str, reply: &Reply) -> io::Error {
    let message = format!("{what} answered {}", reply.summary());
    match reply.code >= 500 {
        true => fatal(message),
        false => io::Error::new(io::ErrorKind::ConnectionRefused, message),
    }
}

/// Greets the server on `stream`, says EHLO as `helo`, and does what `security` asks: STARTTLS and a second
/// EHLO, then AUTH PLAIN. Every reply must come by `until`.
pub async fn establish(
    stream: tokio::net::TcpStream,
    helo: &str,
    security: &Security,
    until: Instant,
) -> io::Result<Client> {
    let mut client = Client::greet(stream, helo, until).await?;
    let Some(config) = &security.tls else {
        return Ok(client);
    };
    if !client.starttls {
        return Err(fatal("the server does not offer STARTTLS".into()));
    }
    let reply = client.command(b"STARTTLS\r\n", until).await?;
    if reply.code != 220 {
        return Err(refused("STARTTLS", &reply));
    }
    let mut client = client.upgrade(config.clone(), until).await?;
    client.ehlo(helo, until).await?;
    if let Some(login) = &security.login {
        let reply = client
            .command(login.auth_plain_command().as_bytes(), until)
            .await?;
        if reply.code != 235 {
            return Err(refused(&format!("AUTH PLAIN as {}", login.user), &reply));
        }
    }
    Ok(client)
}

/// A description of `security` for the report: `plain`, `starttls` or `starttls+auth`.
pub fn describe(security: &Security) -> &'static str {
    match (&security.tls, &security.login) {
        (None, _) => "plain",
        (Some(_), None) => "starttls",
        (Some(_), Some(_)) => "starttls+auth",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_split_at_the_first_colon() {
        let l = Login::parse("alice@a.test:pa:ss").unwrap();
        assert_eq!(l.user, "alice@a.test");
        assert_eq!(l.password, "pa:ss");
        assert!(Login::parse("alice@a.test").is_none());
        assert!(Login::parse(":pw").is_none());
        assert!(Login::parse("alice:").is_none());
        assert!(!format!("{l:?}").contains("pa:ss"));
    }

    #[test]
    fn auth_plain_has_an_empty_authorization_identity() {
        let l = Login::parse("alice@a.test:secret").unwrap();
        let line = l.auth_plain_command();
        let b64 = line
            .strip_prefix("AUTH PLAIN ")
            .unwrap()
            .trim_end_matches("\r\n");
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        assert_eq!(raw, b"\0alice@a.test\0secret");
    }

    #[test]
    fn five_hundreds_are_fatal_and_four_hundreds_are_not() {
        let r = |code| Reply {
            code,
            lines: vec!["x".into()],
        };
        assert!(is_fatal(&refused("AUTH", &r(535))));
        assert!(!is_fatal(&refused("AUTH", &r(454))));
        assert!(!is_fatal(&io::Error::other("plain")));
    }
}

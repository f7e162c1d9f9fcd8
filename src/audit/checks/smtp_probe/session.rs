//! The dialogue with one MX address, step by step, as a sending server would hold it: connect, greeting, EHLO,
//! STARTTLS and the certificate, EHLO again, an unknown recipient, optionally a relay attempt; never DATA, and
//! always RSET and QUIT at the end. Each step yields its finding; a step that breaks the session ends it.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::OnceCell;

use super::conn::{Conn, ConnError};
use super::envelope::envelope;
use super::reply::Reply;
use super::tls;
use crate::audit::{Finding, Status};
use crate::dns::Resolver;
use crate::model::DomainName;
use crate::mta_sts::{StsTxt, sts_txt};

/// One MX address to probe and how.
pub struct Target<'a> {
    /// MX host name (for SNI and the certificate check).
    pub host: &'a str,
    /// The MX address (subjects, SNI fallback).
    pub ip: IpAddr,
    /// Where to connect: `ip` and the SMTP port, unless a test redirected it.
    pub addr: SocketAddr,
    /// The audited domain (recipient domain of the unknown-recipient test).
    pub domain: &'a DomainName,
    /// EHLO name.
    pub helo: &'a str,
    /// Per-step timeout.
    pub timeout: Duration,
    /// Also try to relay.
    pub relay_test: bool,
    /// The run's resolver (for the domain's `_mta-sts` record).
    pub resolver: &'a Resolver,
    /// The run's trusted roots.
    pub trust: &'a crate::tls::Trust,
    /// The domain's `_mta-sts` record, looked up once for all its probes and only when a certificate is untrusted.
    pub sts: &'a OnceCell<StsTxt>,
}

/// What the dialogue found: the findings, and the greeting for the banner-name check.
#[derive(Default)]
pub struct Outcome {
    /// Findings in dialogue order.
    pub findings: Vec<Finding>,
    /// The 220 greeting, when one arrived.
    pub banner: Option<Reply>,
}

impl Target<'_> {
    fn subject(&self) -> String {
        format!("{} ({})", self.host, self.ip)
    }

    pub(super) fn finding(
        &self,
        id: &'static str,
        status: Status,
        detail: impl Into<String>,
    ) -> Finding {
        Finding::new(id, status, self.subject(), detail)
    }

    /// Whether the domain publishes a valid MTA-STS record, so that senders honouring it verify certificates.
    async fn publishes_mta_sts(&self) -> bool {
        let sts = self
            .sts
            .get_or_init(|| sts_txt(self.resolver, self.domain))
            .await;
        matches!(sts, StsTxt::Valid { .. })
    }
}

/// Holds the whole dialogue with `t`.
pub async fn probe(t: &Target<'_>) -> Outcome {
    let mut out = Outcome::default();
    let addr = t.addr;
    let tcp = match tokio::time::timeout(t.timeout, TcpStream::connect(addr)).await {
        Ok(Ok(tcp)) => tcp,
        failed => {
            let why = match failed {
                Ok(Err(e)) => e.to_string(),
                _ => format!("no answer within {} s", t.timeout.as_secs()),
            };
            out.findings.push(t.finding(
                "smtp.connect",
                Status::Unknown,
                format!(
                    "could not test: connecting to {addr} failed ({why}); either nothing listens there or \
                     this network blocks outbound port 25 (many home ISPs and cloud providers do); run the audit \
                     from a host allowed to send mail to tell which"
                ),
            ));
            return out;
        }
    };
    let redirected = if addr.ip() == t.ip {
        String::new()
    } else {
        format!(" (instead of {}: --connect-to)", t.ip)
    };
    out.findings.push(t.finding(
        "smtp.connect",
        Status::Pass,
        format!("connected to {addr}{redirected}"),
    ));
    let mut conn = Conn::new(tcp, t.timeout);
    match conn.read_reply().await {
        Ok(r) if r.code == 220 => {
            out.findings
                .push(t.finding("smtp.banner", Status::Pass, format!("greeting: {r}")));
            out.banner = Some(r);
        }
        Ok(r) => {
            out.findings.push(t.finding(
                "smtp.banner",
                Status::Fail,
                format!("the server greets with {r} instead of 220: it refuses the connection"),
            ));
            conn.finish().await;
            return out;
        }
        Err(ConnError::Timeout(d)) => {
            out.findings.push(t.finding(
                "smtp.banner",
                Status::Fail,
                format!(
                    "no banner within {} s after connecting; senders give up",
                    d.as_secs()
                ),
            ));
            return out;
        }
        Err(e) => {
            out.findings.push(t.finding(
                "smtp.banner",
                Status::Fail,
                format!("no valid banner: {e}"),
            ));
            return out;
        }
    }
    let Some(ehlo) = ehlo(t, &mut conn, "smtp.ehlo", &mut out).await else {
        return out;
    };
    out.findings.push(t.finding(
        "smtp.ehlo",
        Status::Pass,
        format!("EHLO {} answered {ehlo}", t.helo),
    ));
    if !ehlo.offers("STARTTLS") {
        out.findings.push(
            t.finding(
                "smtp.starttls",
                Status::Fail,
                "STARTTLS is not offered: mail to this host travels in plain text, and MTA-STS senders refuse it",
            )
            .fix("enable STARTTLS with a certificate for the MX host (Postfix: smtpd_tls_security_level = may, \
                  smtpd_tls_chain_files = /path/key.pem, /path/fullchain.pem)"),
        );
        envelope(t, conn, &mut out).await;
        return out;
    }
    match conn.command("STARTTLS").await {
        Ok(r) if r.code == 220 => {}
        Ok(r) => {
            out.findings.push(t.finding(
                "smtp.starttls",
                Status::Fail,
                format!("STARTTLS is offered but the command was answered {r}"),
            ));
            envelope(t, conn, &mut out).await;
            return out;
        }
        Err(e) => {
            out.findings
                .push(t.finding("smtp.starttls", Status::Fail, format!("STARTTLS: {e}")));
            return out;
        }
    }
    if let Some(tls_conn) = handshake(t, conn, &mut out).await {
        envelope(t, tls_conn, &mut out).await;
    }
    out
}

/// Sends EHLO; on anything but 250 records a FAIL under `id` and ends the session.
async fn ehlo<S: AsyncRead + AsyncWrite + Unpin>(
    t: &Target<'_>,
    conn: &mut Conn<S>,
    id: &'static str,
    out: &mut Outcome,
) -> Option<Reply> {
    let detail = match conn.command(&format!("EHLO {}", t.helo)).await {
        Ok(r) if r.code == 250 => return Some(r),
        Ok(r) => format!("EHLO {} answered {r}", t.helo),
        Err(e) => format!("EHLO {}: {e}", t.helo),
    };
    let prefix = if id == "smtp.ehlo" {
        ""
    } else {
        "after the TLS handshake, "
    };
    out.findings
        .push(t.finding(id, Status::Fail, format!("{prefix}{detail}")));
    None
}

/// The TLS handshake after `220` to STARTTLS, the certificate verdict and EHLO inside TLS.
async fn handshake(
    t: &Target<'_>,
    conn: Conn<TcpStream>,
    out: &mut Outcome,
) -> Option<Conn<tokio_rustls::client::TlsStream<TcpStream>>> {
    let failed = |out: &mut Outcome, why: String| {
        out.findings.push(
            t.finding("smtp.starttls", Status::Fail, why)
                .fix("check the SMTP server's TLS settings and certificate files in its log"),
        );
    };
    let config = match crate::tls::inspecting_config() {
        Ok(c) => c,
        Err(e) => {
            out.findings.push(t.finding(
                "smtp.starttls",
                Status::Unknown,
                format!("could not test: TLS setup failed on the auditing side ({e})"),
            ));
            return None;
        }
    };
    let tcp = match conn.into_stream() {
        Ok(tcp) => tcp,
        Err(e) => {
            failed(out, e);
            return None;
        }
    };
    let connector = tokio_rustls::TlsConnector::from(config);
    let stream = match tokio::time::timeout(
        t.timeout,
        connector.connect(tls::server_name(t.host, t.ip), tcp),
    )
    .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            failed(out, format!("the TLS handshake failed: {e}"));
            return None;
        }
        Err(_) => {
            failed(
                out,
                format!(
                    "the TLS handshake did not finish within {} s",
                    t.timeout.as_secs()
                ),
            );
            return None;
        }
    };
    let session = stream.get_ref().1;
    let version = session
        .protocol_version()
        .and_then(|v| v.as_str())
        .map(|v| v.replace("TLSv1_", "TLS 1."))
        .unwrap_or_else(|| "TLS".into());
    let cipher = session
        .negotiated_cipher_suite()
        .and_then(|c| c.suite().as_str())
        .unwrap_or("");
    let chain = session.peer_certificates().unwrap_or(&[]).to_vec();
    out.findings.push(certificate(t, &chain).await);
    let mut conn = Conn::new(stream, t.timeout);
    ehlo(t, &mut conn, "smtp.starttls", out).await?;
    out.findings.push(
        t.finding(
            "smtp.starttls",
            Status::Pass,
            format!("STARTTLS offered and negotiated: {version} {cipher}")
                .trim_end()
                .to_string(),
        ),
    );
    Some(conn)
}

async fn certificate(
    t: &Target<'_>,
    chain: &[rustls::pki_types::CertificateDer<'static>],
) -> Finding {
    let roots = t.trust.roots();
    let now = SystemTime::now();
    let mut v = tls::evaluate(chain, t.host, &roots, now, false);
    if v.untrusted && t.publishes_mta_sts().await {
        v = tls::evaluate(chain, t.host, &roots, now, true);
    }
    let f = t.finding("smtp.certificate", v.status, v.detail);
    match v.fix {
        Some(fix) => f.fix(fix),
        None => f,
    }
}

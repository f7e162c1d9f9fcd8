//! What the HTTPS endpoint answers, by Host and path (see the module above).

use std::collections::HashSet;

use crate::smtp::http::{Request, response};
use crate::smtp::inbound::Context;
use crate::smtp::settings::HttpsSettings;

/// The hosted, active domains, read at most every [`REFRESH`].
#[derive(Debug)]
pub struct Hosted(crate::smtp::cached::Cached<HashSet<String>>);

/// How long the set of hosted domains is trusted.
pub const REFRESH: std::time::Duration = std::time::Duration::from_secs(30);

impl Default for Hosted {
    fn default() -> Self {
        Hosted(crate::smtp::cached::Cached::new(REFRESH))
    }
}

impl Hosted {
    /// Whether `domain` is hosted and active (a database that does not answer: not hosted, so 404, never a
    /// wrong policy).
    async fn contains(&self, server: &Context, domain: &str) -> bool {
        let Ok(name) = domain.parse::<crate::model::DomainName>() else {
            return false;
        };
        let load = || async {
            let mut tx = server.store.begin().await.ok()?;
            let rows = tx.domains().await.ok()?;
            let _ = tx.rollback().await;
            Some(
                rows.into_iter()
                    .filter(|d| d.active)
                    .map(|d| d.domain.to_ascii_lowercase())
                    .collect::<HashSet<String>>(),
            )
        };
        self.0
            .get(load)
            .await
            .is_some_and(|set| set.contains(name.as_str()))
    }
}

/// The whole response to one request.
pub async fn respond(
    server: &Context,
    settings: &HttpsSettings,
    hosted: &Hosted,
    request: &Request<'_>,
    body: &[u8],
) -> Vec<u8> {
    let head_only = request.method == "HEAD";
    let not_found = || response(404, "Not Found", &[], b"not found\n", head_only);
    let host = request.host.as_deref().unwrap_or("");
    let path = request.path;
    let (domain, what) = if path == "/.well-known/mta-sts.txt" {
        match host.strip_prefix("mta-sts.") {
            Some(d) => (d.to_string(), What::Policy),
            None => return not_found(),
        }
    } else if path == "/mail/config-v1.1.xml"
        || path == "/.well-known/autoconfig/mail/config-v1.1.xml"
    {
        let d = host.strip_prefix("autoconfig.").unwrap_or(host);
        (d.to_string(), What::Autoconfig)
    } else if path.eq_ignore_ascii_case("/autodiscover/autodiscover.xml") {
        // The address must be one: it becomes the login name in the answer.
        let email = element(body, "EMailAddress")
            .and_then(|e| e.parse::<crate::model::Address>().ok())
            .map(|a| a.to_string());
        match email {
            Some(email) => {
                let d = email.rsplit_once('@').map_or("", |(_, d)| d).to_string();
                (d, What::Autodiscover(email))
            }
            None if request.method == "POST" => {
                return response(
                    400,
                    "Bad Request",
                    &[],
                    b"the request names no EMailAddress\n",
                    false,
                );
            }
            None => (String::new(), What::Autodiscover(String::new())),
        }
    } else {
        return not_found();
    };
    let allowed: &[&str] = match what {
        What::Autodiscover(_) => &["POST"],
        _ => &["GET", "HEAD"],
    };
    if !allowed.contains(&request.method) {
        let allow = allowed.join(", ");
        return response(
            405,
            "Method Not Allowed",
            &[("Allow", allow.as_str())],
            b"method not allowed\n",
            head_only,
        );
    }
    if !hosted.contains(server, &domain).await {
        return not_found();
    }
    let hostname = server.settings.hostname.as_str();
    match what {
        What::Policy => {
            let policy = crate::records::mta_sts_policy(&settings.mta_sts_mode, hostname);
            response(
                200,
                "OK",
                &[("Content-Type", "text/plain; charset=utf-8")],
                policy.as_bytes(),
                head_only,
            )
        }
        What::Autoconfig => {
            let xml = autoconfig(&domain, hostname, settings);
            response(
                200,
                "OK",
                &[("Content-Type", "application/xml; charset=utf-8")],
                xml.as_bytes(),
                head_only,
            )
        }
        What::Autodiscover(email) => {
            let xml = autodiscover(&email, hostname, settings);
            response(
                200,
                "OK",
                &[("Content-Type", "application/xml; charset=utf-8")],
                xml.as_bytes(),
                false,
            )
        }
    }
}

enum What {
    Policy,
    Autoconfig,
    Autodiscover(String),
}

/// The text of the first `<name>` element of an XML body (no nesting, no attributes needed here).
fn element(body: &[u8], name: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let open = format!("<{name}>");
    let start = text.find(&open)? + open.len();
    let end = text[start..].find("</")? + start;
    let value = text[start..end].trim();
    (value.len() <= 320 && !value.is_empty()).then(|| value.to_string())
}

/// `&`, `<`, `>`, quotes escaped for XML text and attributes.
fn xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// Thunderbird's autoconfig (clientConfig 1.1): IMAP over TLS and submission (STARTTLS, or TLS on 465), the
/// address as
/// the login.
fn autoconfig(domain: &str, hostname: &str, s: &HttpsSettings) -> String {
    let (d, h, imap) = (xml(domain), xml(hostname), xml(&s.imap_host));
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <clientConfig version=\"1.1\">\n\
         \x20 <emailProvider id=\"{d}\">\n\
         \x20   <domain>{d}</domain>\n\
         \x20   <displayName>{d}</displayName>\n\
         \x20   <displayShortName>{d}</displayShortName>\n\
         \x20   <incomingServer type=\"imap\">\n\
         \x20     <hostname>{imap}</hostname>\n\
         \x20     <port>{}</port>\n\
         \x20     <socketType>SSL</socketType>\n\
         \x20     <authentication>password-cleartext</authentication>\n\
         \x20     <username>%EMAILADDRESS%</username>\n\
         \x20   </incomingServer>\n\
         \x20   <outgoingServer type=\"smtp\">\n\
         \x20     <hostname>{h}</hostname>\n\
         \x20     <port>{}</port>\n\
         \x20     <socketType>{}</socketType>\n\
         \x20     <authentication>password-cleartext</authentication>\n\
         \x20     <username>%EMAILADDRESS%</username>\n\
         \x20   </outgoingServer>\n\
         \x20 </emailProvider>\n\
         </clientConfig>\n",
        s.imap_port,
        s.submission_port,
        if s.submission_port == 465 {
            "SSL"
        } else {
            "STARTTLS"
        }
    )
}

/// Outlook's autodiscover (POX) answer for `email`.
fn autodiscover(email: &str, hostname: &str, s: &HttpsSettings) -> String {
    let (e, h, imap) = (xml(email), xml(hostname), xml(&s.imap_host));
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
         <Autodiscover xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006\">\n\
         \x20 <Response xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a\">\n\
         \x20   <Account>\n\
         \x20     <AccountType>email</AccountType>\n\
         \x20     <Action>settings</Action>\n\
         \x20     <Protocol>\n\
         \x20       <Type>IMAP</Type>\n\
         \x20       <Server>{imap}</Server>\n\
         \x20       <Port>{}</Port>\n\
         \x20       <LoginName>{e}</LoginName>\n\
         \x20       <DomainRequired>off</DomainRequired>\n\
         \x20       <SPA>off</SPA>\n\
         \x20       <SSL>on</SSL>\n\
         \x20       <AuthRequired>on</AuthRequired>\n\
         \x20     </Protocol>\n\
         \x20     <Protocol>\n\
         \x20       <Type>SMTP</Type>\n\
         \x20       <Server>{h}</Server>\n\
         \x20       <Port>{}</Port>\n\
         \x20       <LoginName>{e}</LoginName>\n\
         \x20       <DomainRequired>off</DomainRequired>\n\
         \x20       <SPA>off</SPA>\n\
         \x20       <Encryption>{}</Encryption>\n\
         \x20       <AuthRequired>on</AuthRequired>\n\
         \x20     </Protocol>\n\
         \x20   </Account>\n\
         \x20 </Response>\n\
         </Autodiscover>\n",
        s.imap_port,
        s.submission_port,
        if s.submission_port == 465 {
            "SSL"
        } else {
            "TLS"
        }
    )
}

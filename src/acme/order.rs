//! One issuance: the account (made once and stored), an order for the names, each authorization answered with
//! the configured challenge, a CSR for our key, the chain. Errors are one line naming the step and, when the
//! CA refused a name, the name and the CA's own words.

use std::time::Duration;

use instant_acme::{
    Account, AuthorizationStatus, ChallengeType, Identifier, NewAccount, NewOrder, OrderStatus,
    RetryPolicy,
};

use super::challenge::Challenges;
use super::client::Client;
use super::settings::{AcmeSettings, Challenge};
use super::store::Store;
use crate::dns::Resolver;
use crate::tls::leaf::Leaf;

/// How long the CA may take to validate the names, then to issue.
const POLL: Duration = Duration::from_secs(180);

/// Why an issuance failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// One line: the step and the CA's words.
    pub message: String,
    /// The names the CA refused to validate, each with its reason (empty when the failure is not about names).
    pub refused: Vec<(String, String)>,
}

impl From<String> for Failure {
    fn from(message: String) -> Failure {
        Failure {
            message,
            refused: Vec::new(),
        }
    }
}

/// Obtains a certificate for `names` (the first is the host name) and stores it with its key; returns the
/// new leaf. The challenges are published in `challenges` while the order is open.
pub async fn issue(
    settings: &AcmeSettings,
    store: &Store,
    resolver: &Resolver,
    names: &[String],
    challenges: &Challenges,
) -> Result<Leaf, Failure> {
    // However the order ends, its challenges are answered no longer.
    struct Clear<'a>(&'a Challenges);
    impl Drop for Clear<'_> {
        fn drop(&mut self) {
            self.0.clear();
        }
    }
    let _clear = Clear(challenges);
    let roots = crate::tls::Trust::load(settings.directory_ca.as_deref())
        .map_err(|e| format!("server.acme.directory_ca: {e}"))?
        .roots();
    let http = || Box::new(Client::new(resolver.clone(), roots.clone()));
    let directory = &settings.directory;
    let account = match store.account(directory) {
        Some(credentials) => Account::builder_with_http(http())
            .from_credentials(credentials)
            .await
            .map_err(|e| format!("cannot reach the ACME directory {directory}: {e}"))?,
        None => {
            let contact: Vec<&str> = settings.contact.iter().map(String::as_str).collect();
            let new = NewAccount {
                contact: &contact,
                terms_of_service_agreed: true,
                only_return_existing: false,
            };
            let (account, credentials) = Account::builder_with_http(http())
                .create(&new, directory.clone(), None)
                .await
                .map_err(|e| format!("cannot create an ACME account at {directory}: {e}"))?;
            store
                .save_account(directory, credentials)
                .map_err(|e| e.to_string())?;
            account
        }
    };
    let identifiers: Vec<Identifier> = names.iter().map(|n| Identifier::Dns(n.clone())).collect();
    let mut order = account
        .new_order(&NewOrder::new(&identifiers))
        .await
        .map_err(|e| format!("the CA refused the order: {e}"))?;
    let wanted = match settings.challenge {
        Challenge::TlsAlpn(_) => ChallengeType::TlsAlpn01,
        Challenge::Http(_) => ChallengeType::Http01,
    };
    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let mut authz = authz.map_err(|e| format!("cannot read an authorization: {e}"))?;
        match authz.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => continue,
            other => {
                return Err(
                    format!("the authorization of {} is {other:?}", authz.identifier()).into(),
                );
            }
        }
        let name = authz.identifier().to_string();
        let mut challenge = authz.challenge(wanted.clone()).ok_or_else(|| {
            format!(
                "the CA offers no {} challenge for {name}",
                settings.challenge.name()
            )
        })?;
        let key_authorization = challenge.key_authorization();
        match settings.challenge {
            Challenge::TlsAlpn(_) => challenges
                .add_tls_alpn(&name, key_authorization.digest().as_ref())
                .map_err(|e| format!("cannot make the challenge certificate for {name}: {e}"))?,
            Challenge::Http(_) => challenges.add_http(&challenge.token, key_authorization.as_str()),
        }
        challenge
            .set_ready()
            .await
            .map_err(|e| format!("the CA did not take the challenge of {name}: {e}"))?;
    }
    let retry = RetryPolicy::new().timeout(POLL);
    match order.poll_ready(&retry).await {
        Ok(OrderStatus::Ready) => {}
        Ok(_) | Err(instant_acme::Error::Api(_)) => return Err(refusals(&mut order).await),
        Err(e) => return Err(format!("validation did not finish: {e}").into()),
    }
    let key = if settings.reuse_key {
        store.key().map_err(|e| e.to_string())?
    } else {
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| format!("cannot generate a key: {e}"))?
    };
    let mut params =
        rcgen::CertificateParams::new(names.to_vec()).map_err(|e| format!("bad name: {e}"))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params
        .serialize_request(&key)
        .map_err(|e| format!("cannot make the CSR: {e}"))?;
    order
        .finalize_csr(csr.der())
        .await
        .map_err(|e| format!("the CA refused to finalize the order: {e}"))?;
    let chain = order
        .poll_certificate(&retry)
        .await
        .map_err(|e| format!("the CA did not issue the certificate: {e}"))?;
    let leaf = Leaf::from_pem(chain.as_bytes())
        .map_err(|e| format!("the CA sent an unusable certificate: {e}"))?;
    let ours = crate::tls::leaf::sha256_hex(&rcgen::PublicKeyData::subject_public_key_info(&key));
    if leaf.spki_sha256 != ours {
        return Err(String::from("the CA's certificate is not for our key").into());
    }
    if !settings.reuse_key {
        store
            .write_key(&key.serialize_pem())
            .map_err(|e| e.to_string())?;
    }
    store.save_chain(&chain).map_err(|e| e.to_string())?;
    Ok(leaf)
}

/// Why an order became invalid: each refused name with the CA's words.
async fn refusals(order: &mut instant_acme::Order) -> Failure {
    let mut refused = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut authz)) = authorizations.next().await {
        // The state read when the order opened is stale (pending): read it again.
        let _ = authz.refresh().await;
        if authz.status != AuthorizationStatus::Invalid {
            continue;
        }
        let why = authz
            .challenges
            .iter()
            .find_map(|c| c.error.as_ref())
            .map(|p| p.detail.clone().unwrap_or_else(|| p.to_string()))
            .unwrap_or_else(|| format!("{:?}", authz.status));
        refused.push((authz.identifier().to_string(), why));
    }
    let message = if refused.is_empty() {
        "the order became invalid".into()
    } else {
        let listed: Vec<String> = refused
            .iter()
            .map(|(n, why)| format!("{n}: {why}"))
            .collect();
        format!("the CA refused {}", listed.join("; "))
    };
    Failure { message, refused }
}

//! The message stage of the checks (after DATA): DKIM, DMARC, and how their outcomes and the earlier ones
//! combine into consequences ([`Decision`]).

use mail_auth::{AuthenticatedMessage, SpfOutput};

use super::{Checks, Outcome, dkim, dmarc, results};
use crate::smtp::inbound::command::Reply;
use crate::smtp::metrics::RejectReason;
use crate::smtp::settings::Action;

/// The consequences gathered so far: the first reject wins (and names the reason), else the first mark.
#[derive(Default)]
pub(super) struct Decision {
    pub(super) reject: Option<Reply>,
    pub(super) junk: bool,
    pub(super) reason: Option<RejectReason>,
}

impl Decision {
    pub(super) fn apply(
        &mut self,
        action: Action,
        label: RejectReason,
        reply: impl FnOnce() -> Reply,
    ) {
        match action {
            Action::Reject if self.reject.is_none() => {
                self.reject = Some(reply());
                self.reason = Some(label);
            }
            Action::Mark => {
                self.junk = true;
                if self.reason.is_none() {
                    self.reason = Some(label);
                }
            }
            Action::Reject | Action::Off => {}
        }
    }
}

impl Checks {
    /// DKIM of `parsed` (when DKIM or DMARC is on) and DMARC (when on). DMARC is `temperror` when DKIM timed out
    /// (an aligned signature may have been among the unverified) and `none` for a message without headers.
    pub(super) async fn content(
        &self,
        parsed: Option<&AuthenticatedMessage<'_>>,
        mail_from_domain: &str,
        spf_output: &SpfOutput,
    ) -> (dkim::Dkim, Option<dmarc::Dmarc>) {
        let none = |outcome| dmarc::Dmarc {
            outcome,
            domain: String::new(),
            policy: mail_auth::dmarc::Policy::None,
            seen: None,
        };
        let dmarc_on = self.policy.dmarc != Action::Off;
        let Some(parsed) = parsed else {
            return (
                dkim::Dkim::Verified(Vec::new()),
                dmarc_on.then(|| none(Outcome::None)),
            );
        };
        let auth = self.resolver.authenticator();
        let (dkim, outputs) = dkim::check(auth, parsed, self.step_timeout).await;
        if !dmarc_on {
            return (dkim, None);
        }
        if dkim == dkim::Dkim::TimedOut {
            return (dkim, Some(none(Outcome::TempError)));
        }
        let dm = dmarc::check(
            &self.resolver,
            parsed,
            &outputs,
            mail_from_domain,
            spf_output,
            self.step_timeout,
        )
        .await;
        (dkim, Some(dm))
    }

    /// DMARC failure: with action reject the domain's policy decides (reject, quarantine into Junk, none);
    /// with action mark every failure goes to Junk.
    pub(super) fn act_on_dmarc(&self, d: &mut Decision, dm: &dmarc::Dmarc) {
        use mail_auth::dmarc::Policy;
        if dm.outcome != Outcome::Fail {
            return;
        }
        let action = match (self.policy.dmarc, dm.policy) {
            (Action::Reject, Policy::Reject) => Action::Reject,
            (Action::Reject, Policy::Quarantine) | (Action::Mark, _) => Action::Mark,
            _ => Action::Off,
        };
        d.apply(action, RejectReason::Dmarc, || {
            Reply::new(
                550,
                Some((5, 7, 1)),
                format!("rejected by DMARC policy of {}", dm.domain),
            )
        });
    }
}

/// One `dkim=` entry per signature (`dkim=none` for unsigned mail, `dkim=temperror` after a timeout).
pub(super) fn report_dkim(
    header: &mut results::Header,
    summary: &mut Vec<String>,
    dkim: &dkim::Dkim,
) {
    match dkim {
        dkim::Dkim::Verified(sigs) if !sigs.is_empty() => {
            for s in sigs {
                if s.domain.is_empty() {
                    header.add("dkim", s.outcome.as_str(), &[]);
                } else {
                    let props = [
                        ("header.d", s.domain.as_str()),
                        ("header.s", s.selector.as_str()),
                    ];
                    header.add("dkim", s.outcome.as_str(), &props);
                }
            }
        }
        other => header.add("dkim", other.summary().as_str(), &[]),
    }
    summary.push(format!("dkim={}", dkim.summary()));
}

/// The RFC5321.MailFrom domain when SPF did not run: the sender's domain, or the HELO name for the null sender.
pub(super) fn fallback_domain(helo: &str, sender: &str) -> String {
    let domain = match sender.rsplit_once('@') {
        Some((_, d)) => d,
        None => helo,
    };
    domain.trim_end_matches('.').to_ascii_lowercase()
}

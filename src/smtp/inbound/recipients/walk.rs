//! The breadth-first expansion behind [`super::resolve`]: one queue of addresses, each expanded once, with the
//! per-domain facts cached for the length of one resolution.

use std::collections::{HashMap, HashSet, VecDeque};

use super::{Recipient, ResolveLimits, base_address};
use crate::error::Result;
use crate::model::{Address, DomainName, printable};
use crate::store::{AliasRow, MailboxRow, Tx};

/// What a domain is to this server, from its `domain` and `alias_domain` rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum DomainState {
    /// An active hosted domain with mailboxes and aliases of its own.
    Hosted,
    /// An active alias domain whose target is an active hosted domain.
    AliasOf(DomainName),
    /// An active alias domain whose target is missing, inactive or a backup MX: it delivers nowhere.
    BrokenAlias(DomainName),
    /// A `domain` row with `active = 0`.
    Inactive,
    /// An active `domain` row with `backupmx = 1`: mail for it belongs to its primary MX.
    BackupMx,
    /// No `domain` row: somebody else's domain.
    Foreign,
}

/// Reads what `domain` is. Shared with [`super::sender`].
pub(super) async fn domain_state(tx: &mut Tx, domain: &DomainName) -> Result<DomainState> {
    let Some(row) = tx.domain(domain.as_str()).await? else {
        return Ok(DomainState::Foreign);
    };
    if !row.active {
        return Ok(DomainState::Inactive);
    }
    if row.backupmx {
        return Ok(DomainState::BackupMx);
    }
    let Some(mapping) = tx.alias_domain(domain.as_str()).await?.filter(|m| m.active) else {
        return Ok(DomainState::Hosted);
    };
    let target = DomainName::from_stored(&mapping.target_domain);
    let usable = tx
        .domain(target.as_str())
        .await?
        .is_some_and(|t| t.active && !t.backupmx);
    Ok(if usable {
        DomainState::AliasOf(target)
    } else {
        DomainState::BrokenAlias(target)
    })
}

/// What an exact lookup of one address found.
enum Found {
    Alias(AliasRow),
    Mailbox(MailboxRow),
}

/// What the subaddress fallback found.
enum Base {
    /// No base address, or nothing answers to it: the catch-all's turn.
    None,
    /// The base address and its rows.
    Found(Box<(Address, Found)>),
    /// The base exists and was expanded through another path; its mailboxes are in the answer already.
    AlreadyExpanded,
}

/// The state of one resolution.
pub(super) struct Walk<'a> {
    tx: &'a mut Tx,
    limits: ResolveLimits,
    domains: HashMap<DomainName, DomainState>,
    /// Addresses (and `@domain` catch-alls) already expanded: the loop stopper.
    seen: HashSet<String>,
    queue: VecDeque<(Address, usize)>,
    /// Goto entries that may still be examined.
    budget: usize,
    mailboxes: Vec<MailboxRow>,
    external: Vec<Address>,
    via: Vec<String>,
    /// A disabled mailbox or domain was among the dead ends.
    disabled: bool,
}

impl<'a> Walk<'a> {
    /// A fresh resolution over `tx`.
    pub(super) fn new(tx: &'a mut Tx, limits: ResolveLimits) -> Self {
        Walk {
            tx,
            limits,
            domains: HashMap::new(),
            seen: HashSet::new(),
            queue: VecDeque::new(),
            budget: limits.max_targets,
            mailboxes: Vec::new(),
            external: Vec::new(),
            via: Vec::new(),
            disabled: false,
        }
    }

    /// Resolves `root` to its final answer.
    pub(super) async fn run(mut self, root: &Address) -> Result<Recipient> {
        match self.domain(&root.domain).await? {
            DomainState::Foreign | DomainState::Inactive | DomainState::BackupMx => {
                return Ok(Recipient::NotLocal);
            }
            DomainState::BrokenAlias(_) => return Ok(Recipient::Disabled),
            DomainState::Hosted | DomainState::AliasOf(_) => {}
        }
        self.queue.push_back((root.clone(), 0));
        while let Some((address, depth)) = self.queue.pop_front() {
            self.visit(address, depth).await?;
        }
        Ok(self.finish())
    }

    fn finish(self) -> Recipient {
        if !self.mailboxes.is_empty() || !self.external.is_empty() {
            Recipient::Local {
                mailboxes: self.mailboxes,
                external: self.external,
                via: self.via,
            }
        } else if self.disabled {
            Recipient::Disabled
        } else {
            Recipient::Unknown
        }
    }

    async fn domain(&mut self, domain: &DomainName) -> Result<DomainState> {
        if let Some(state) = self.domains.get(domain) {
            return Ok(state.clone());
        }
        let state = domain_state(self.tx, domain).await?;
        self.domains.insert(domain.clone(), state.clone());
        Ok(state)
    }

    async fn visit(&mut self, address: Address, depth: usize) -> Result<()> {
        if !self.seen.insert(address.to_string()) {
            self.via
                .push(format!("{address}: already expanded (loop or duplicate)"));
            return Ok(());
        }
        match self.domain(&address.domain).await? {
            DomainState::Hosted => self.visit_hosted(address, depth).await?,
            DomainState::AliasOf(target) => {
                let mapped = Address {
                    local: address.local.clone(),
                    domain: target,
                };
                self.via
                    .push(format!("{address} => {mapped} (alias domain)"));
                self.follow(&address.to_string(), mapped, depth);
            }
            DomainState::BrokenAlias(target) => {
                self.disabled = true;
                self.via.push(format!(
                    "{address}: alias domain of {target}, which is not an active hosted domain"
                ));
            }
            DomainState::Inactive => {
                self.disabled = true;
                self.via
                    .push(format!("{address}: domain {} is disabled", address.domain));
            }
            DomainState::Foreign | DomainState::BackupMx => {
                if !self.external.contains(&address) {
                    self.external.push(address);
                }
            }
        }
        Ok(())
    }

    /// An active alias row for `address`, else its mailbox row (active or not).
    async fn lookup(&mut self, address: &Address) -> Result<Option<Found>> {
        let key = address.to_string();
        if let Some(row) = self.tx.alias(&key).await?.filter(|r| r.active) {
            return Ok(Some(Found::Alias(row)));
        }
        Ok(self.tx.mailbox(&key).await?.map(Found::Mailbox))
    }

    async fn visit_hosted(&mut self, address: Address, depth: usize) -> Result<()> {
        let (owner, found) = match self.lookup(&address).await? {
            Some(found) => (address.clone(), found),
            None => match self.lookup_base(&address).await? {
                Base::Found(hit) => *hit,
                Base::AlreadyExpanded => return Ok(()),
                Base::None => return self.catch_all(&address, depth).await,
            },
        };
        match found {
            Found::Alias(row) => {
                self.expand(&owner.to_string(), Some(&owner), &row, depth)
                    .await
            }
            Found::Mailbox(row) => {
                self.deliver(row);
                Ok(())
            }
        }
    }

    /// The subaddress fallback: `alice+tag@d` matched nothing, so look up `alice@d`.
    async fn lookup_base(&mut self, address: &Address) -> Result<Base> {
        let Some(base) = base_address(address, self.limits.delimiter) else {
            return Ok(Base::None);
        };
        let Some(found) = self.lookup(&base).await? else {
            return Ok(Base::None);
        };
        self.via.push(format!("{address} -> {base} (subaddress)"));
        if !self.seen.insert(base.to_string()) {
            return Ok(Base::AlreadyExpanded);
        }
        Ok(Base::Found(Box::new((base, found))))
    }

    async fn catch_all(&mut self, address: &Address, depth: usize) -> Result<()> {
        let key = format!("@{}", address.domain);
        match self.tx.alias(&key).await?.filter(|r| r.active) {
            Some(row) => {
                self.via.push(format!("{address} -> {key} (catch-all)"));
                if self.seen.insert(key.clone()) {
                    self.expand(&key, None, &row, depth).await?;
                }
            }
            None => self.via.push(format!("{address}: no such recipient")),
        }
        Ok(())
    }

    /// Follows the goto list of `row` (the alias of `owner`, or a catch-all when `owner` is `None`).
    async fn expand(
        &mut self,
        label: &str,
        owner: Option<&Address>,
        row: &AliasRow,
        depth: usize,
    ) -> Result<()> {
        let mut followed = Vec::new();
        let mut dropped = 0usize;
        // The summary goes before the notes its targets produce, so the log reads in order.
        let summary_at = self.via.len();
        let mut distinct = HashSet::new();
        for raw in row.targets() {
            if !distinct.insert(raw.to_ascii_lowercase()) {
                continue;
            }
            let parsed = raw.parse::<Address>();
            if let Ok(target) = &parsed
                && Some(target) == owner
            {
                // postfixadmin's self-alias: deliver to the mailbox of that very address. Free of the budget:
                // each expanded address has at most one, and expanded addresses are bounded by the budget.
                followed.push(target.to_string());
                self.deliver_self(target).await?;
                continue;
            }
            if self.budget == 0 {
                dropped += 1;
                continue;
            }
            self.budget -= 1;
            match parsed {
                Ok(target) => {
                    followed.push(target.to_string());
                    self.follow(label, target, depth);
                }
                Err(_) => self.via.push(format!(
                    "{label}: unusable target '{}' ignored",
                    printable(&raw)
                )),
            }
        }
        if !followed.is_empty() {
            let summary = format!("{label} -> {}", followed.join(", "));
            self.via.insert(summary_at, summary);
        }
        if dropped > 0 {
            self.via.push(format!(
                "{label}: {dropped} more targets dropped (limit of {} per recipient)",
                self.limits.max_targets
            ));
        }
        Ok(())
    }

    /// Queues `target`, one rewrite further from the recipient than `depth`, unless that is too deep.
    fn follow(&mut self, label: &str, target: Address, depth: usize) {
        let next = depth.saturating_add(1);
        if next > self.limits.max_depth {
            self.via.push(format!(
                "{label}: depth limit {} reached, {target} not followed",
                self.limits.max_depth
            ));
            return;
        }
        self.queue.push_back((target, next));
    }

    async fn deliver_self(&mut self, address: &Address) -> Result<()> {
        match self.tx.mailbox(&address.to_string()).await? {
            Some(row) => self.deliver(row),
            None => self
                .via
                .push(format!("{address}: lists itself but has no mailbox")),
        }
        Ok(())
    }

    fn deliver(&mut self, mut row: MailboxRow) {
        if !row.active {
            self.disabled = true;
            self.via.push(format!("{}: mailbox disabled", row.username));
            return;
        }
        if self.mailboxes.iter().any(|m| m.username == row.username) {
            return;
        }
        row.password.clear();
        self.mailboxes.push(row);
    }
}

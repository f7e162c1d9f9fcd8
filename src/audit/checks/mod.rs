//! One file per check family. A new family is one file and one line in [`run_all`].

pub mod mx;

use std::future::Future;
use std::pin::Pin;

use futures_util::future::join_all;

use super::{Context, Finding, Selection};
use crate::model::DomainName;

type Family<'a> = Pin<Box<dyn Future<Output = Vec<Finding>> + Send + 'a>>;

/// Runs every selected family (MX runs before, in the runner) concurrently; findings keep family order.
pub async fn run_all(
    ctx: &Context<'_>,
    selection: &Selection,
    domain: &DomainName,
) -> Vec<Finding> {
    let candidates: Vec<(&str, Family<'_>)> = vec![];
    let _ = domain;
    let families: Vec<Family<'_>> = candidates
        .into_iter()
        .filter(|(name, _)| selection.runs(name))
        .map(|(_, f)| f)
        .collect();
    let _ = ctx;
    join_all(families).await.into_iter().flatten().collect()
}

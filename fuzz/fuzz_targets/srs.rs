//! The SRS reversal of RCPT local parts (any client can send one to a hosted domain) and the rewriting of
//! envelope senders.
//!
//! The input is split at its first NUL: the text before is tried as an SRS local part of ours, the text after
//! as a sender to rewrite. Asserted: no panic; whatever reverses names an address with an `@`; a rewritten
//! sender is an SRS address of the forwarding domain that reverses to the sender (SRS0) or to an SRS0 address
//! of the first forwarder (SRS1), and a silent one reverses to `Silent`. (Forged hashes are the unit tests'
//! business: with 4 case-insensitive characters a fuzzer would find a collision sooner or later.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailctl::srs::{Bounces, Reversed, Srs, is_srs};

/// A fixed day, so runs are reproducible.
const TODAY: u64 = 20_794;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (local, sender) = text.split_once('\0').unwrap_or((&text, ""));
    let srs = Srs::new(["fuzz secret", "older secret"]);
    if let Ok(Reversed::Address(a)) = srs.reverse(local, TODAY) {
        assert!(a.contains('@'), "{local:?} reversed to {a:?}");
    }
    for bounces in [Bounces::Return, Bounces::Never] {
        let Some(rewritten) = srs.forward(sender, "fwd.example", bounces, TODAY) else {
            continue;
        };
        let (ours, domain) = rewritten.rsplit_once('@').expect("an address");
        assert_eq!(domain, "fwd.example");
        assert!(is_srs(ours), "{rewritten}");
        match (srs.reverse(ours, TODAY), bounces) {
            (Ok(Reversed::Address(back)), Bounces::Return) => {
                let original_srs = sender.split('@').next().is_some_and(is_srs);
                if !original_srs {
                    assert_eq!(back, sender, "{rewritten}");
                } else {
                    assert!(back.starts_with("SRS0"), "{rewritten} -> {back}");
                }
            }
            (Ok(Reversed::Silent), Bounces::Never) => {}
            // A sender whose fields contain the separator may not survive the round trip; it must fail, not
            // reverse to something else.
            (Err(_), _) => {}
            (other, b) => panic!("{rewritten} ({b:?}) reversed to {other:?}"),
        }
    }
});

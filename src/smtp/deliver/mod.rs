//! Final delivery of accepted messages: into Maildirs that Dovecot reads (and, later, over LMTP).

pub mod maildir;

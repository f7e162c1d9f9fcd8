//! Multi-daemon scenarios shared by several test modules: two `serve` instances on their own loopback
//! addresses exchanging mail ([`outbound_world`], its nodes [`outbound_node`]) and sender nodes sharing one
//! database queue ([`cluster_node`]).

pub mod cluster_node;
pub mod outbound_node;
pub mod outbound_world;

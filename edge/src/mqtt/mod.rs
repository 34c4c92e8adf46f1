//! The MQTT binding (spec chapter 14): MQTT 3.1.1 and 5 clients as natter devices.
//!
//! [`codec`] reads and writes the packets, [`topics`] maps topics to conversations,
//! [`session`] translates between MQTT and the native protocol without I/O, and the
//! connection driver plugs that translation into the edge's native connection driver, so an
//! MQTT device gets natter's ordering, dedup, limits and authorization unchanged.

pub mod codec;
mod connection;
pub mod session;
pub mod topics;

pub(crate) use connection::accept_loop;

//! Stand-ins for external services in tests: NOT real servers, just enough of each
//! protocol, over real sockets on 127.0.0.1, to check what our clients send.
//! `smtp`: an SMTP server; `twilio`: Twilio's Messages API.
#![allow(dead_code, reason = "each test file uses a different subset")]
#![allow(clippy::unwrap_used, reason = "tests: a panic is the failure report")]

pub mod smtp;
pub mod twilio;

//! Haven's alert rules, as pure functions of plain data and time:
//!
//! - [`threshold`]: which classified findings and blocked attempts become alerts;
//! - [`deadline`]: when an alert must be actioned, from its level, the time it
//!   arrived and the school's calendar (working hours, terms, closures,
//!   Europe/London across clock changes);
//! - [`routing`]: who is told and when: level 5 calls the on-call list at
//!   once (the school's in term, the trust's in holidays) and escalates down
//!   it until someone acknowledges; below level 5 nobody is disturbed out of
//!   hours;
//! - [`grouping`]: repeats of one concern about one person within a window
//!   join the open alert instead of adding to the queue.
//!
//! Architecture invariant: no clock, no I/O. The safeguarding service stores
//! and sends; it asks these functions what to store and send.
#![forbid(unsafe_code)]

pub mod deadline;
pub mod grouping;
pub mod routing;
pub mod threshold;

pub use deadline::{Due, due};
pub use grouping::{Grouping, OpenAlert, group};
pub use routing::{Contact, Notice, callouts_due, notices};
pub use threshold::{Thresholds, from_block};

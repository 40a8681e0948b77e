//! Config parsing through the public API: the SPEC §3 example, the shipped examples,
//! defaults, `${NAME}` substitution, and one test per error class with its exact line.

#![allow(clippy::unwrap_used)]

mod defaults;
mod env;
mod errors;
mod examples;
mod support;
mod tuning;

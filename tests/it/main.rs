//! The one integration test binary: every test drives the real `hybrid` binary.

mod browser;
mod cli;
mod cloud;
mod console;
mod examples;
mod fleet;
mod live;
mod local;
mod openai_stub;
mod patterns;
mod promises;
mod scans;
mod script;
mod sovereignty;
mod support;

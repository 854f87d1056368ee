//! # hybrid
//!
//! A scripting host for hybrid local + cloud LLM pipelines. Operators write the routing and
//! threshold rules as Rhai scripts; the host runs them over documents with Gemma 4
//! in-process (`local()`) and GPT-5.4 over the OpenAI API (`cloud()`), every step
//! schema-checked (`validate()`).
//!
//! | what you can do                                   | where it lives             |
//! |---------------------------------------------------|----------------------------|
//! | parse the command line, map outcomes to exit codes | [`cli`]                   |
//! | read `hybrid.toml`, the environment and flags      | [`config`]                |
//! | a pipeline's declared inputs, outputs; origins     | [`pipeline`]              |
//! | turn files, directories and JSONL into documents   | [`documents`]             |
//! | read PDFs and e-mails (with attachments)           | [`extract`]               |
//! | read scans and photos as page images               | [`images`]                |
//! | draw scanned PDF pages that are not one plain image | [`render`]               |
//! | compile a script + imports + schemas as one version | [`bundle`]               |
//! | show an error's line of script with a caret        | [`snippet`]               |
//! | the Rhai engine and `local` / `cloud` / `validate` | [`host`]                  |
//! | definition files for editors (`hybrid defs`)       | [`defs`]                  |
//! | find, compile and check JSON Schemas               | [`schemas`]               |
//! | talk to models (OpenAI wire format, mistral.rs)    | [`models`]                |
//! | run many documents and write result records        | [`runner`], [`record`]    |
//! | share stderr between logs and the progress line    | [`progress`]              |
//! | write records whole; resume; repair cut lines      | [`sink`]                  |
//! | per-document budgets: memory, calls, output, depth | [`host::budget`]          |
//! | reload the rules live; watch inboxes               | [`watch`], [`inbox`]      |
//! | roll back a reloaded version that fails in use     | [`probation`]             |
//! | check what leaves for the cloud (egress guard)     | [`guard`]                 |
//! | see copied text through disguise, across calls     | [`guard::overlap`]        |
//! | log every cloud payload for auditors               | [`audit`]                 |
//! | keep model answers for reruns (the answer cache)   | [`cache`]                 |
//! | price calls; summarise runs (`hybrid report`)      | [`cost`], [`report`]      |
//! | what a rule change did (`hybrid diff`)             | [`diff`]                  |
//! | pin a pipeline's behaviour (`hybrid test`)         | [`cases`]                 |
//! | cap cloud spend per run, day and pipeline          | [`spend`]                 |
//! | many hosts on a NATS JetStream queue; rules pushed | [`fleet`]                 |
//! | metrics and health checks of a running host        | [`console`]               |

pub mod audit;
pub mod bundle;
pub mod cache;
pub mod cases;
pub mod cli;
pub mod config;
pub mod console;
pub mod cost;
pub mod defs;
pub mod diff;
pub mod documents;
pub mod extract;
pub mod fleet;
pub mod guard;
pub mod host;
pub mod images;
pub mod inbox;
pub mod models;
pub mod pipeline;
pub mod probation;
pub mod progress;
pub mod record;
pub mod render;
pub mod report;
pub mod runner;
pub mod schemas;
pub mod sink;
pub mod snippet;
pub mod spend;
pub mod watch;

/// Counts each thread's memory, for the per-document budget (`host::budget`).
#[global_allocator]
static ALLOCATOR: host::budget::CountingAllocator = host::budget::CountingAllocator;

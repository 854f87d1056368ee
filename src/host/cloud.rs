//! `cloud(prompt)`, `cloud(prompt, schema)`, `cloud(options)`: the cloud model (GPT-5.4 by
//! default) over OpenAI Chat Completions. Everything passed here leaves the machine, so
//! pipelines send it extracted JSON, never source documents.

use rhai::{Dynamic, Engine, FuncRegistration, NativeCallContext};

use super::call::{call, Role};

pub fn register(engine: &mut Engine) {
    FuncRegistration::new("cloud")
        .with_params_info(["prompt_or_options: ?", "?"])
        .with_comments(["/// Ask the cloud model (GPT-5.4 by default). What you pass leaves the machine: it goes\n/// through the egress guard (personal data redacted or blocked, verbatim copies of the\n/// document refused) and into the audit log. Send extracted JSON as `input`, never the\n/// document.\n///\n/// Same forms as `local`: `cloud(prompt)`, `cloud(#{ prompt, input, system, schema,\n/// max_tokens, temperature })`. Failures are catchable errors (`timeout`, `rate_limit`,\n/// `quota`, `not_configured`, `blocked`, ...).\n///\n/// ```rhai\n/// let risk = cloud(#{ system: RISK, input: triage, schema: \"contract_risk\" });\n/// ```"])
        .register_into_engine(engine, |ctx: NativeCallContext, first: Dynamic| {
            call(&ctx, Role::Cloud, first, None)
        });
    FuncRegistration::new("cloud")
        .with_params_info(["prompt: ?", "schema: ?", "?"])
        .with_comments([
            "/// Ask the cloud model for an answer that satisfies `schema`; see `cloud(options)`.",
        ])
        .register_into_engine(
            engine,
            |ctx: NativeCallContext, prompt: Dynamic, schema: Dynamic| {
                call(&ctx, Role::Cloud, prompt, Some(schema))
            },
        );
}

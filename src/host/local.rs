//! `local(prompt)`, `local(prompt, schema)`, `local(options)`: the model on the operator's
//! own machine (Gemma 4 in-process, or their own OpenAI-compatible server). Nothing sent
//! through it leaves the operator's infrastructure.

use rhai::{Dynamic, Engine, FuncRegistration, NativeCallContext};

use super::call::{call, Role};

pub fn register(engine: &mut Engine) {
    FuncRegistration::new("local")
        .with_params_info(["prompt_or_options: ?", "?"])
        .with_comments(["/// Ask the local model (Gemma 4 on this machine); nothing leaves it.\n///\n/// `local(prompt)` returns the answer as a string. `local(#{ prompt, input, system,\n/// schema, max_tokens, temperature, thinking })` takes options: `input` is any value,\n/// sent as JSON; with a `schema` (a name in `schemas/` or an inline map) the answer is a\n/// map or array that satisfies it. Failures are catchable errors with `kind`, `message`\n/// and, for `invalid_output`/`truncated`, `partial`.\n///\n/// ```rhai\n/// let triage = local(#{ system: SYSTEM, prompt: doc.text, schema: \"contract_triage\" });\n/// ```"])
        .register_into_engine(engine, |ctx: NativeCallContext, first: Dynamic| {
            call(&ctx, Role::Local, first, None)
        });
    FuncRegistration::new("local")
        .with_params_info(["prompt: ?", "schema: ?", "?"])
        .with_comments(["/// Ask the local model for an answer that satisfies `schema` (a name in `schemas/`\n/// or an inline map); returns it as a map or array.\n///\n/// ```rhai\n/// let triage = local(doc.text, \"contract_triage\");\n/// ```"])
        .register_into_engine(
            engine,
            |ctx: NativeCallContext, prompt: Dynamic, schema: Dynamic| {
                call(&ctx, Role::Local, prompt, Some(schema))
            },
        );
}

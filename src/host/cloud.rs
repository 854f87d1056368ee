//! `cloud(prompt)`, `cloud(prompt, schema)`, `cloud(options)`: the cloud model (GPT-5.4 by
//! default) over OpenAI Chat Completions. Everything passed here leaves the machine, so
//! pipelines send it extracted JSON, never source documents.

use rhai::{Dynamic, Engine, NativeCallContext};

use super::call::{call, Role};

pub fn register(engine: &mut Engine) {
    engine.register_fn("cloud", |ctx: NativeCallContext, first: Dynamic| {
        call(&ctx, Role::Cloud, first, None)
    });
    engine.register_fn(
        "cloud",
        |ctx: NativeCallContext, prompt: Dynamic, schema: Dynamic| {
            call(&ctx, Role::Cloud, prompt, Some(schema))
        },
    );
}

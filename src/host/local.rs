//! `local(prompt)`, `local(prompt, schema)`, `local(options)`: the model on the operator's
//! own machine (Gemma 4 in-process, or their own OpenAI-compatible server). Nothing sent
//! through it leaves the operator's infrastructure.

use rhai::{Dynamic, Engine, NativeCallContext};

use super::call::{call, Role};

pub fn register(engine: &mut Engine) {
    engine.register_fn("local", |ctx: NativeCallContext, first: Dynamic| {
        call(&ctx, Role::Local, first, None)
    });
    engine.register_fn(
        "local",
        |ctx: NativeCallContext, prompt: Dynamic, schema: Dynamic| {
            call(&ctx, Role::Local, prompt, Some(schema))
        },
    );
}

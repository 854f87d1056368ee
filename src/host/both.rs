//! `both(local_options, cloud_options)`: the local and the cloud model answer the same
//! document at the same time — pattern 2's parallel run. Both calls are in flight together,
//! so the pair costs about the slower call's time, not the sum.

use rhai::{Dynamic, Engine, NativeCallContext};

pub fn register(engine: &mut Engine) {
    engine.register_fn(
        "both",
        |ctx: NativeCallContext, local: Dynamic, cloud: Dynamic| {
            super::call::both(&ctx, local, cloud)
        },
    );
}

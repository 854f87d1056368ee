//! `both(local_options, cloud_options)`: the local and the cloud model answer the same
//! document at the same time — pattern 2's parallel run. Both calls are in flight together,
//! so the pair costs about the slower call's time, not the sum.

use rhai::{Dynamic, Engine, FuncRegistration, NativeCallContext};

pub fn register(engine: &mut Engine) {
    FuncRegistration::new("both")
        .with_params_info(["local_options: ?", "cloud_options: ?", "Map"])
        .with_comments(["/// Ask the local and the cloud model at the same time (options as for `local` and\n/// `cloud`); the pair takes about as long as the slower call. Returns\n/// `#{ local, cloud, local_error, cloud_error }`: a side that failed is `()` with its error\n/// map beside it, so one failure never loses the other answer.\n///\n/// ```rhai\n/// let pair = both(#{ prompt: msg, schema: \"intent\" }, #{ prompt: msg, schema: \"intent\" });\n/// ```"])
        .register_into_engine(
            engine,
            |ctx: NativeCallContext, local: Dynamic, cloud: Dynamic| {
                super::call::both(&ctx, local, cloud)
            },
        );
}

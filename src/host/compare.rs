//! `==` and `!=` on arrays and maps. Rhai's own compare recursively, one native call per
//! level, so two values nested 10,000 deep overflow the thread's stack and take the host
//! down. These stop at `max_value_depth` with a `limit` error instead.

use rhai::{Array, Dynamic, Engine, EvalAltResult, Map, NativeCallContext};

use super::error::host_error;

type RhaiResult<T> = Result<T, Box<EvalAltResult>>;

pub fn register(engine: &mut Engine, max_depth: usize) {
    let eq =
        move |ctx: &NativeCallContext, a: Dynamic, b: Dynamic| equal(ctx, &a, &b, 1, max_depth);
    // Typed for the definition files: the inferred return type is the `Result` itself.
    let op = |name: &str, ty: &str| {
        rhai::FuncRegistration::new(name).with_params_info([
            format!("a: {ty}"),
            format!("b: {ty}"),
            "bool".into(),
        ])
    };
    op("==", "Array").register_into_engine(
        engine,
        move |ctx: NativeCallContext, a: &mut Array, b: Array| eq(&ctx, a.clone().into(), b.into()),
    );
    op("!=", "Array").register_into_engine(
        engine,
        move |ctx: NativeCallContext, a: &mut Array, b: Array| {
            eq(&ctx, a.clone().into(), b.into()).map(|e| !e)
        },
    );
    op("==", "Map").register_into_engine(
        engine,
        move |ctx: NativeCallContext, a: &mut Map, b: Map| eq(&ctx, a.clone().into(), b.into()),
    );
    op("!=", "Map").register_into_engine(
        engine,
        move |ctx: NativeCallContext, a: &mut Map, b: Map| {
            eq(&ctx, a.clone().into(), b.into()).map(|e| !e)
        },
    );
}

fn equal(
    ctx: &NativeCallContext,
    a: &Dynamic,
    b: &Dynamic,
    depth: usize,
    max_depth: usize,
) -> RhaiResult<bool> {
    if depth > max_depth {
        return Err(host_error(
            "limit",
            format!("cannot compare values nested more than {max_depth} levels deep\nhint: flatten them, or raise `max_value_depth` under [limits] in hybrid.toml"),
            ctx.call_position(),
            |_| {},
        ));
    }
    if let (Some(x), Some(y)) = (a.read_lock::<Array>(), b.read_lock::<Array>()) {
        if x.len() != y.len() {
            return Ok(false);
        }
        for (x, y) in x.iter().zip(y.iter()) {
            if !equal(ctx, x, y, depth + 1, max_depth)? {
                return Ok(false);
            }
        }
        return Ok(true);
    }
    if let (Some(x), Some(y)) = (a.read_lock::<Map>(), b.read_lock::<Map>()) {
        if x.len() != y.len() {
            return Ok(false);
        }
        for (key, x) in x.iter() {
            match y.get(key) {
                Some(y) if equal(ctx, x, y, depth + 1, max_depth)? => {}
                _ => return Ok(false),
            }
        }
        return Ok(true);
    }
    if a.is_array() || a.is_map() || b.is_array() || b.is_map() {
        return Ok(false);
    }
    // Anything else compares as Rhai compares it (`1 == 1.0`, strings, units, ...).
    Ok(ctx
        .call_native_fn::<bool>("==", (a.clone(), b.clone()))
        .unwrap_or(false))
}

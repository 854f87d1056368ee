//! Per-document budgets: what one document may take of the host — memory, model calls, bytes
//! of `emit` and `print` output — and how deep and large a value may be when a script hands it
//! to the host or returns it. A document over budget fails alone, with kind `limit`; the host
//! and every other document go on.
//!
//! Memory is measured, not estimated: the process allocator counts each thread's bytes, and a
//! document runs on one thread from start to end, so the engine's progress callback can stop a
//! script the moment its thread holds more than `max_document_memory`. Rhai's own data-size
//! limits walk a whole array on every `push` (quadratic); these checks cost O(1) per operation.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, RefCell};

use rhai::{Dynamic, Map};

use crate::config::Limits;

/// The process allocator: the system's, counting what each thread holds. (mimalloc was tried:
/// 10% less CPU per document at `--jobs 1`, but at `--jobs 16` more CPU and four times the
/// peak memory, `benches/long.rs`.)
pub struct CountingAllocator;

thread_local! {
    /// Bytes allocated minus bytes freed by this thread (freeing another thread's memory
    /// makes it go down: only differences over one document's run are meaningful).
    static HELD: Cell<i64> = const { Cell::new(0) };
}

fn count(delta: i64) {
    // `try_with`: during thread teardown the slot may be gone; those bytes go uncounted.
    let _ = HELD.try_with(|held| held.set(held.get().wrapping_add(delta)));
}

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as i64);
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as i64);
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-(layout.size() as i64));
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size as i64 - layout.size() as i64);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Bytes this thread holds now (see [`HELD`]).
pub fn held() -> i64 {
    HELD.try_with(Cell::get).unwrap_or(0)
}

/// What the document running on this thread may still do, and why it was stopped if it was.
struct Running {
    memory_base: i64,
    max_memory: i64,
    print_left: usize,
    /// Set when a budget ran out outside a host function (print output); the next engine
    /// operation stops the script with this message.
    stop: Option<String>,
}

thread_local! {
    static RUNNING: RefCell<Option<Running>> = const { RefCell::new(None) };
    /// Cheap flag the progress callback reads on every operation.
    static WATCHED: Cell<bool> = const { Cell::new(false) };
}

/// While alive, the current thread runs one document under `limits`.
pub struct Watch(());

impl Watch {
    pub fn start(limits: &Limits) -> Watch {
        RUNNING.with(|r| {
            *r.borrow_mut() = Some(Running {
                memory_base: held(),
                max_memory: i64::try_from(limits.max_document_memory).unwrap_or(i64::MAX),
                print_left: limits.max_print_bytes,
                stop: None,
            })
        });
        WATCHED.with(|w| w.set(true));
        Watch(())
    }

    /// Bytes the document's thread gained since it started.
    pub fn memory_used(&self) -> i64 {
        RUNNING.with(|r| {
            r.borrow()
                .as_ref()
                .map_or(0, |run| held() - run.memory_base)
        })
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        WATCHED.with(|w| w.set(false));
        RUNNING.with(|r| *r.borrow_mut() = None);
    }
}

/// The engine's progress callback: `Some(reason)` stops the script (not catchable).
pub fn over_budget() -> Option<Dynamic> {
    if !WATCHED.with(Cell::get) {
        return None;
    }
    RUNNING.with(|r| {
        let mut r = r.borrow_mut();
        let run = r.as_mut()?;
        if let Some(stop) = run.stop.take() {
            return Some(stop.into());
        }
        let used = held() - run.memory_base;
        (used > run.max_memory).then(|| {
            format!(
                "the document used more than {} of memory\nhint: if the work is real, raise `max_document_memory` under [limits] in hybrid.toml",
                human_bytes(run.max_memory as u64)
            )
            .into()
        })
    })
}

/// `print` output: counts it against the document's budget; false when it is over (the text
/// is then dropped and the script stopped at its next operation).
pub fn allow_print(bytes: usize) -> bool {
    RUNNING.with(|r| {
        let mut r = r.borrow_mut();
        let Some(run) = r.as_mut() else {
            return true;
        };
        if run.stop.is_some() {
            return false;
        }
        if bytes > run.print_left {
            run.print_left = 0;
            run.stop = Some("the document printed more than its `print` budget\nhint: print less, or raise `max_print_bytes` under [limits] in hybrid.toml".into());
            return false;
        }
        run.print_left -= bytes;
        true
    })
}

/// `1073741824` → `1 GiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["bytes", "KiB", "MiB", "GiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 || value.fract() == 0.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Checks a value a script hands to the host (or returns): no deeper than `max_value_depth`,
/// no string, array or map over its limit. It recurses, but never past `max_value_depth`: a
/// value nested a million deep is refused at the limit, without walking it.
pub fn check_value(value: &Dynamic, limits: &Limits) -> Result<(), String> {
    check_at(value, 1, limits)
}

fn check_at(value: &Dynamic, depth: usize, limits: &Limits) -> Result<(), String> {
    if depth > limits.max_value_depth {
        return Err(format!(
            "a value is nested more than {} levels deep\nhint: flatten it, or raise `max_value_depth` under [limits] in hybrid.toml",
            limits.max_value_depth
        ));
    }
    if let Some(s) = value.read_lock::<rhai::ImmutableString>() {
        if s.len() > limits.max_string_size {
            return Err(too_large(
                "a string",
                s.len(),
                "max_string_size",
                limits.max_string_size,
            ));
        }
    } else if let Some(array) = value.read_lock::<rhai::Array>() {
        if array.len() > limits.max_array_size {
            return Err(too_large(
                "an array",
                array.len(),
                "max_array_size",
                limits.max_array_size,
            ));
        }
        for item in array.iter() {
            check_at(item, depth + 1, limits)?;
        }
    } else if let Some(map) = value.read_lock::<Map>() {
        if map.len() > limits.max_map_size {
            return Err(too_large(
                "a map",
                map.len(),
                "max_map_size",
                limits.max_map_size,
            ));
        }
        for item in map.values() {
            check_at(item, depth + 1, limits)?;
        }
    }
    Ok(())
}

fn too_large(what: &str, size: usize, key: &str, max: usize) -> String {
    format!("{what} of {size} holds more than {max}\nhint: if the data is real, raise `{key}` under [limits] in hybrid.toml")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_value_depth: 8,
            max_array_size: 3,
            ..Limits::default()
        }
    }

    #[test]
    fn deep_and_large_values_are_refused_without_recursion() {
        let mut deep: Dynamic = Map::new().into();
        for _ in 0..100_000 {
            let mut m = Map::new();
            m.insert("a".into(), deep);
            deep = m.into();
        }
        let err = check_value(&deep, &limits()).unwrap_err();
        assert!(err.contains("max_value_depth"), "{err}");
        // Taking it apart by hand: dropping it whole would recurse 100,000 deep.
        let mut value = deep;
        while let Some(mut map) = value.try_cast::<Map>() {
            value = map.remove("a").unwrap_or(Dynamic::UNIT);
        }

        let array: Dynamic = vec![Dynamic::from(1_i64); 4].into();
        assert!(check_value(&array, &limits())
            .unwrap_err()
            .contains("max_array_size"));
        let ok: Dynamic = vec![Dynamic::from("x")].into();
        assert!(check_value(&ok, &limits()).is_ok());
    }

    #[test]
    fn memory_is_counted_per_thread() {
        let watch = Watch::start(&Limits {
            max_document_memory: 1 << 20,
            ..Limits::default()
        });
        assert!(over_budget().is_none());
        let big = vec![0u8; 2 << 20];
        assert!(watch.memory_used() >= 2 << 20);
        let stop = over_budget().expect("over budget");
        assert!(stop.to_string().contains("max_document_memory"));
        drop(big);
        drop(watch);
        assert!(over_budget().is_none());
    }
}

//! How a document's thread waits for a model call.
//!
//! A document runs on one thread (Rhai is synchronous), so each `local()` or
//! `cloud()` blocks that thread until the answer is in. Blocking on the shared runtime costs
//! thread hand-offs on every call: the request goes to a worker that owns the connection, the
//! worker waits on the socket, the answer comes back — four context switches or more per
//! call, a third of the host's CPU on a short document. A back end whose work is its own
//! sockets and timers ([`Backend::io_on_caller`](crate::models::Backend::io_on_caller), the
//! OpenAI client) is instead driven by the document's thread itself, on a small runtime that
//! thread owns: it writes the request and waits on the socket without waking anyone.
//! Everything else (the in-process model, whose engine lives on its own threads) waits on the
//! shared runtime as before.
//!
//! What a thread's own runtime starts (a kept-alive connection) only makes progress while that
//! thread waits here, so whatever uses it must belong to the same thread: the OpenAI client
//! keeps one connection pool per thread for this reason.

use std::cell::RefCell;
use std::future::Future;

use tokio::runtime::{Builder, Handle, Runtime};

/// A thread's own runtime, made at its first wait. Shut down without waiting when the thread
/// ends: what it still holds is idle connections, nothing to finish.
#[derive(Default)]
struct Own {
    runtime: Option<Runtime>,
    /// Inside [`block_on`] now (a nested wait goes to the shared runtime).
    busy: bool,
}

impl Drop for Own {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

thread_local! {
    static OWN: RefCell<Own> = RefCell::default();
}

/// Wait for `work` on this thread: driven here when `on_caller` (and a runtime of this
/// thread's own can be had), otherwise on `shared`.
///
/// Must not be called from async code (it blocks), like [`Handle::block_on`].
pub fn block_on<F: Future>(shared: &Handle, on_caller: bool, work: F) -> F::Output {
    let own = on_caller.then(take_own).flatten();
    let Some(runtime) = own else {
        return shared.block_on(work);
    };
    /// Puts the runtime back, also when `work` panics (the document fails; the thread goes on).
    struct Return(Option<Runtime>);
    impl Drop for Return {
        fn drop(&mut self) {
            let runtime = self.0.take();
            let _ = OWN.try_with(|slot| {
                let mut slot = slot.borrow_mut();
                slot.runtime = runtime;
                slot.busy = false;
            });
        }
    }
    let back = Return(Some(runtime));
    back.0.as_ref().expect("just set").block_on(work)
}

/// This thread's runtime, made if need be; `None` while it is in use or cannot be made.
fn take_own() -> Option<Runtime> {
    OWN.try_with(|slot| {
        let mut slot = slot.borrow_mut();
        if slot.busy {
            return None;
        }
        let runtime = match slot.runtime.take() {
            Some(runtime) => runtime,
            None => match Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime,
                Err(err) => {
                    tracing::debug!(
                        "no runtime of this thread's own ({err}); using the shared one"
                    );
                    return None;
                }
            },
        };
        slot.busy = true;
        Some(runtime)
    })
    .ok()
    .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drives_timers_on_the_thread_runtime_and_keeps_it() {
        use tokio::runtime::RuntimeFlavor;
        let shared = tokio::runtime::Runtime::new().unwrap();
        let handle = shared.handle().clone();
        std::thread::spawn(move || {
            for _ in 0..2 {
                let flavor = block_on(&handle, true, async {
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                    Handle::current().runtime_flavor()
                });
                assert_eq!(flavor, RuntimeFlavor::CurrentThread);
                assert!(OWN.with(|slot| slot.borrow().runtime.is_some()), "kept");
            }
            let flavor = block_on(&handle, false, async { Handle::current().runtime_flavor() });
            assert_eq!(flavor, RuntimeFlavor::MultiThread);
        })
        .join()
        .unwrap();
    }
}

//! The node's Redis thread (`huddle-redis`): an actix arbiter of its own
//! where everything that talks to Redis on the node's behalf runs — the
//! shared connection's driver (the task that writes commands to the socket
//! and reads the replies, [`super::conn`]), the bridge actor and its
//! subscriber ([`super::bridge`]), and the liveness heartbeats
//! ([`super::presence`]).
//!
//! Why a thread: the main thread (the System arbiter) runs the room registry
//! and every room. When it is saturated, replies Redis sent in time were
//! read late, commands ran past their response timeout, and the bridge
//! delivered broadcasts on its own node only. Here they are read as they
//! arrive, whatever the main thread is doing.
//!
//! The thread runs a small actix `System` of its own rather than an
//! `Arbiter::new()` of the node's: that one needs the node's System on the
//! calling thread (unit tests on a plain Tokio runtime have none) and names
//! its thread `actix-rt|system:…`. Its arbiter is used like any other:
//! actors start there with `Actor::start_in_arbiter`, tasks with
//! [`RedisThread::spawn`].
//!
//! It stops when [`RedisThread::stop`] is called (the node's shutdown) or when
//! the last handle to it is dropped. Callers elsewhere never need it: a
//! command sent from any thread goes into the driver's channel.

use actix::{ArbiterHandle, System};
use std::future::Future;
use std::sync::Mutex;
use std::thread::JoinHandle;

/// The name of the thread (as `top -H` and debuggers show it).
pub const THREAD_NAME: &str = "huddle-redis";

/// The running Redis thread; stops it when dropped.
pub struct RedisThread {
    system: System,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for RedisThread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisThread")
            .field("system", &self.system.id())
            .finish()
    }
}

impl RedisThread {
    /// Starts the thread and its event loop.
    pub fn start() -> std::io::Result<Self> {
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(THREAD_NAME.to_owned())
            .spawn(move || {
                let runner = System::new();
                if tx.send(System::current()).is_err() {
                    return;
                }
                if let Err(e) = runner.run() {
                    log::error!("the Redis thread stopped with an error: {e}");
                }
            })?;
        let system = rx.recv().map_err(|_| {
            std::io::Error::other("the Redis thread failed before its event loop started")
        })?;
        Ok(RedisThread {
            system,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// The thread's arbiter, for `Actor::start_in_arbiter`.
    pub fn arbiter(&self) -> &ArbiterHandle {
        self.system.arbiter()
    }

    /// Runs `make()`'s future on the thread. The closure is sent there; the
    /// future it makes never leaves it, so it need not be `Send`.
    pub fn spawn<F, Fut>(&self, make: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        if !self.arbiter().spawn_fn(move || {
            actix::spawn(make());
        }) {
            log::warn!("the Redis thread has stopped; a task was not started");
        }
    }

    /// Stops the event loop (tasks on it are dropped) and, unless called
    /// from the thread itself, waits for the thread to end.
    pub fn stop(&self) {
        self.system.stop();
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(thread) = thread {
            if thread.thread().id() == std::thread::current().id() {
                return;
            }
            if thread.join().is_err() {
                log::error!("the Redis thread panicked");
            }
        }
    }
}

impl Drop for RedisThread {
    fn drop(&mut self) {
        // No join here: the last handle may be dropped by a task on the
        // thread itself, or on a thread that must not block.
        self.system.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_tasks_on_its_own_named_thread_and_stops() {
        let redis = RedisThread::start().expect("the thread starts");
        let (tx, rx) = std::sync::mpsc::channel();
        redis.spawn(move || async move {
            let _ = tx.send(std::thread::current().name().map(str::to_owned));
        });
        let name = rx
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("the task ran");
        assert_eq!(name.as_deref(), Some(THREAD_NAME));
        redis.stop();
        assert!(
            !redis.arbiter().spawn(async {}),
            "a stopped thread takes no more tasks"
        );
    }
}

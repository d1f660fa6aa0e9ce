//! A one-value channel whose receiver is a `Future`: how a `map_async`
//! callback hands its result to `Gpu::download_async` without pulling in an
//! async runtime crate. Natively the receiver can also block with a timeout:
//! when several threads share one device, whichever thread polls runs the
//! callback, so it may land a moment after this thread's own poll returns.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Waker};

struct Slot<T> {
    value: Option<T>,
    waker: Option<Waker>,
}

struct Shared<T> {
    slot: Mutex<Slot<T>>,
    sent: Condvar,
}

pub(crate) struct Sender<T>(Arc<Shared<T>>);
pub(crate) struct Receiver<T>(Arc<Shared<T>>);

pub(crate) fn channel<T>() -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared { slot: Mutex::new(Slot { value: None, waker: None }), sent: Condvar::new() });
    (Sender(shared.clone()), Receiver(shared))
}

impl<T> Sender<T> {
    pub fn send(self, value: T) {
        let waker = match self.0.slot.lock() {
            Ok(mut slot) => {
                slot.value = Some(value);
                slot.waker.take()
            }
            Err(_) => None,
        };
        self.0.sent.notify_all();
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> Receiver<T> {
    /// The value, if it has been sent (native: after `device.poll`).
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    pub fn try_take(&self) -> Option<T> {
        self.0.slot.lock().ok().and_then(|mut s| s.value.take())
    }

    /// Waits up to `timeout` for the value to be sent; true if it has been
    /// (and not taken yet). Never call this on the browser's main thread.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn wait(&self, timeout: std::time::Duration) -> bool {
        let Ok(slot) = self.0.slot.lock() else {
            return false;
        };
        self.0.sent.wait_timeout_while(slot, timeout, |s| s.value.is_none()).is_ok_and(|(s, _)| s.value.is_some())
    }
}

impl<T> Future for Receiver<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let Ok(mut slot) = self.0.slot.lock() else {
            return Poll::Pending;
        };
        match slot.value.take() {
            Some(v) => Poll::Ready(v),
            None => {
                slot.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::channel;
    use std::time::Duration;

    #[test]
    fn wait_sees_a_value_sent_later_from_another_thread() {
        let (tx, rx) = channel::<u32>();
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            tx.send(7);
        });
        assert!(rx.wait(Duration::from_secs(10)));
        assert_eq!(rx.try_take(), Some(7));
        sender.join().unwrap();
    }

    #[test]
    fn wait_gives_up_after_the_timeout() {
        let (_tx, rx) = channel::<u32>();
        assert!(!rx.wait(Duration::from_millis(20)));
        assert_eq!(rx.try_take(), None);
    }
}

//! A future polled only when it asked to be: [`OnWake`].
//!
//! A keep-alive connection's task polls its request together with two futures that live as
//! long as the connection (the head deadline and the shutdown watch), and `tokio::select!`
//! polls every branch each time the task wakes, several times per request. A pending
//! `watch::Receiver::changed` takes a lock on every poll to renew its waker: ~1,100
//! instructions per proxied request (bench/RESULTS.md, #16). Wrapped in [`OnWake`], such a
//! future is polled once, then again only after its own waker fired.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use futures::task::AtomicWaker;

/// Polls `F` only on the first poll and after `F`'s waker fired; otherwise answers `Pending`
/// at once (the task that polls it is woken through `F`'s waker as before).
pub(crate) struct OnWake<F> {
    inner: Pin<Box<F>>,
    signal: Arc<Signal>,
    /// `signal` as a waker, made once.
    waker: Waker,
}

/// Set by `F`'s waker; wakes the task that last polled [`OnWake`].
struct Signal {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl<F: Future> OnWake<F> {
    pub(crate) fn new(inner: F) -> Self {
        let signal = Arc::new(Signal {
            // The first poll polls `F`, which registers its waker.
            woken: AtomicBool::new(true),
            task: AtomicWaker::new(),
        });
        OnWake {
            inner: Box::pin(inner),
            waker: Waker::from(signal.clone()),
            signal,
        }
    }
}

impl<F: Future> Future for OnWake<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        // Registered before the flag is read: a wake between the two is not lost.
        this.signal.task.register(cx.waker());
        if !this.signal.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        this.inner
            .as_mut()
            .poll(&mut Context::from_waker(&this.waker))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// Counts its polls; ready once `open` is set, waking through the waker it was last polled
    /// with when `fire` is called.
    struct Probe {
        polls: Arc<AtomicUsize>,
        open: Arc<AtomicBool>,
        waker: Arc<std::sync::Mutex<Option<Waker>>>,
    }

    impl Future for Probe {
        type Output = ();
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.polls.fetch_add(1, Ordering::SeqCst);
            if self.open.load(Ordering::SeqCst) {
                return Poll::Ready(());
            }
            *self.waker.lock().unwrap() = Some(cx.waker().clone());
            Poll::Pending
        }
    }

    #[test]
    fn the_inner_future_is_polled_first_and_then_only_after_its_waker_fired() {
        let polls = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(AtomicBool::new(false));
        let inner_waker = Arc::new(std::sync::Mutex::new(None));
        let mut f = OnWake::new(Probe {
            polls: polls.clone(),
            open: open.clone(),
            waker: inner_waker.clone(),
        });
        let task = Arc::new(Counter::default());
        let task_waker = Waker::from(task.clone());
        let mut cx = Context::from_waker(&task_waker);
        for _ in 0..5 {
            assert!(Pin::new(&mut f).poll(&mut cx).is_pending());
        }
        assert_eq!(
            polls.load(Ordering::SeqCst),
            1,
            "polled again without a wake"
        );
        assert_eq!(task.0.load(Ordering::SeqCst), 0);
        open.store(true, Ordering::SeqCst);
        inner_waker.lock().unwrap().take().unwrap().wake();
        assert_eq!(task.0.load(Ordering::SeqCst), 1, "the task was not woken");
        assert!(Pin::new(&mut f).poll(&mut cx).is_ready());
        assert_eq!(polls.load(Ordering::SeqCst), 2);
    }

    #[derive(Default)]
    struct Counter(AtomicUsize);

    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn a_shutdown_watch_behind_it_still_ends_the_wait() {
        let (tx, mut rx) = tokio::sync::watch::channel(false);
        let waiting = tokio::spawn(async move {
            let mut changed = OnWake::new(async move { rx.changed().await });
            let mut other = std::pin::pin!(tokio::time::sleep(std::time::Duration::from_millis(1)));
            // The task wakes for another reason first, as a connection's does per request.
            tokio::select! {
                _ = &mut changed => unreachable!("nothing changed yet"),
                _ = &mut other => {}
            }
            changed.await
        });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        tx.send(true).unwrap();
        let done = tokio::time::timeout(std::time::Duration::from_secs(5), waiting).await;
        assert!(matches!(done, Ok(Ok(Ok(())))), "{done:?}");
    }
}

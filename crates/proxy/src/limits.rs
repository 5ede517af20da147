//! Time limits on what hyper does not bound itself: a client that stops
//! reading its answer, a tunnel with nothing passing, a body that stops
//! moving. Each wrapper notes when bytes last moved and only looks at its
//! timer when it would otherwise wait, so the busy path costs one clock read.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The error a body or stream ends with when it stalled too long.
#[derive(Debug, thiserror::Error)]
#[error("nothing moved for {0:?}")]
pub(crate) struct Stalled(pub(crate) Duration);

/// When something last moved, and the timer that fires `limit` after that.
struct Clock {
    limit: Duration,
    last: Instant,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl Clock {
    fn new(limit: Duration) -> Self {
        Self { limit, last: Instant::now(), sleep: None }
    }

    fn moved(&mut self) {
        self.last = Instant::now();
    }

    /// Called when the wrapped thing would wait: `Ready` once nothing has moved for `limit`.
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            let due = self.last + self.limit;
            let sleep = self.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
            if sleep.deadline() != due {
                sleep.as_mut().reset(due);
            }
            match sleep.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                // Something may have moved since the timer was set.
                Poll::Ready(()) if Instant::now() < self.last + self.limit => {}
                Poll::Ready(()) => return Poll::Ready(()),
            }
        }
    }
}

/// A client stream with a stall limit: writes that wait longer than `limit`
/// (a client that stopped reading) fail, and, for tunnels, so do reads when
/// nothing has passed either way for that long.
pub(crate) struct Timed<I> {
    inner: I,
    clock: Clock,
    /// Whether a wait for the client to send counts (tunnels), or only a wait
    /// for it to read (a connection hyper serves, which has its own head timeout).
    reads: bool,
    write_waiting: bool,
}

impl<I> Timed<I> {
    /// Fails writes that wait longer than `limit`.
    pub(crate) fn writes(inner: I, limit: Duration) -> Self {
        Self { inner, clock: Clock::new(limit), reads: false, write_waiting: false }
    }

    /// Fails once nothing has passed either way for `limit`.
    pub(crate) fn idle(inner: I, limit: Duration) -> Self {
        Self { inner, clock: Clock::new(limit), reads: true, write_waiting: false }
    }

    fn stalled(&self) -> io::Error {
        io::Error::new(io::ErrorKind::TimedOut, Stalled(self.clock.limit))
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Timed<I> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                this.clock.moved();
                Poll::Ready(r)
            }
            Poll::Pending if this.reads && this.clock.poll_expired(cx).is_ready() => Poll::Ready(Err(this.stalled())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<I> Timed<I> {
    fn wrote(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        match r {
            Poll::Ready(r) => {
                self.write_waiting = false;
                self.clock.moved();
                Poll::Ready(r)
            }
            Poll::Pending => {
                // A write only waits when the client's window is full: the limit counts from then.
                if !self.write_waiting && !self.reads {
                    self.write_waiting = true;
                    self.clock.moved();
                }
                if self.clock.poll_expired(cx).is_ready() { Poll::Ready(Err(self.stalled())) } else { Poll::Pending }
            }
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Timed<I> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, data);
        this.wrote(cx, r)
    }

    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.wrote(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// A body that fails when no frame arrives for `limit`: a request body a client
/// stopped sending, or an answer an origin stopped sending.
pub(crate) struct TimedBody<B> {
    inner: B,
    clock: Clock,
}

impl<B> TimedBody<B> {
    pub(crate) fn new(inner: B, limit: Duration) -> Self {
        Self { inner, clock: Clock::new(limit) }
    }
}

impl<B> HttpBody for TimedBody<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(f) => {
                this.clock.moved();
                Poll::Ready(f.map(|r| r.map_err(Into::into)))
            }
            Poll::Pending if this.clock.poll_expired(cx).is_ready() => Poll::Ready(Some(Err(Box::new(Stalled(this.clock.limit))))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_idle_tunnel_fails_and_a_busy_one_does_not() {
        let (client, mut far) = tokio::io::duplex(64);
        let mut t = Timed::idle(client, Duration::from_secs(10));
        let mut buf = [0u8; 8];
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_secs(6)).await;
            far.write_all(b"x").await.unwrap();
            assert_eq!(t.read(&mut buf).await.unwrap(), 1, "bytes every 6 s keep it open");
        }
        let started = Instant::now();
        let e = t.read(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_stops_reading_is_cut_off_but_waiting_to_read_is_not() {
        let (client, _far) = tokio::io::duplex(16);
        let mut t = Timed::writes(client, Duration::from_secs(5));
        let mut buf = [0u8; 8];
        assert!(tokio::time::timeout(Duration::from_secs(60), t.read(&mut buf)).await.is_err(), "a read may wait: hyper times heads");
        let e = t.write_all(&[0u8; 64]).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    }

    /// A body fed by hand.
    struct Fed(tokio::sync::mpsc::Receiver<Bytes>);

    impl HttpBody for Fed {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            self.get_mut().0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_ends_with_an_error() {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let mut b = TimedBody::new(Fed(rx), Duration::from_secs(3));
        tx.send(Bytes::from_static(b"one")).await.unwrap();
        assert_eq!(b.frame().await.unwrap().unwrap().into_data().unwrap(), "one");
        let started = Instant::now();
        let e = b.frame().await.unwrap().unwrap_err();
        assert!(e.is::<Stalled>(), "{e}");
        assert_eq!(started.elapsed(), Duration::from_secs(3));
        drop(tx);
    }
}

//! How a message body stands when a component hands its head to the host.
//!
//! Spin 3.6.3 gives the head of a response (or of an outgoing request) to
//! hyper as soon as the component hands it over. If the component is still
//! writing the body then, hyper writes the head alone, and with Nagle's
//! algorithm on (Spin sets no `TCP_NODELAY`) the body waits for the peer's
//! delayed acknowledgement: about 40 ms. Whether hyper or the component gets
//! there first is a race; on Spin the head left alone in about 70 of 100
//! kept-alive `GET /health` of a component that wrote its body late.
//!
//! `latch` must not show a kinder picture, so it settles the race the way
//! that stalls: what the component had written and finished at hand-over goes
//! out with the head; if the body was not finished then, the head is written
//! first, alone. A component that finishes its body before handing the head
//! over (`latch_send`) is sent in one write, as on Spin.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use hyper::body::{Body, Frame};

/// A body as it stood at hand-over (see the module docs).
pub struct HandedOver<B: Body> {
    /// Frames the component had already written.
    ready: VecDeque<Frame<Bytes>>,
    /// The rest, when the body was not finished at hand-over.
    rest: Option<B>,
    /// An error the body had already ended with.
    failed: Option<B::Error>,
    /// Whether the next poll must return `Pending` once, so the head is
    /// written (flushed) before any of the body.
    head_first: bool,
}

/// Takes what `body` holds right now, without waiting.
pub fn hand_over<B>(mut body: B) -> HandedOver<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    let mut cx = Context::from_waker(Waker::noop());
    let mut ready = VecDeque::new();
    loop {
        match Pin::new(&mut body).poll_frame(&mut cx) {
            Poll::Ready(Some(Ok(frame))) => ready.push_back(frame),
            Poll::Ready(Some(Err(error))) => {
                return HandedOver {
                    ready,
                    rest: None,
                    failed: Some(error),
                    head_first: false,
                };
            }
            Poll::Ready(None) => {
                return HandedOver {
                    ready,
                    rest: None,
                    failed: None,
                    head_first: false,
                };
            }
            Poll::Pending => {
                return HandedOver {
                    ready,
                    rest: Some(body),
                    failed: None,
                    head_first: true,
                };
            }
        }
    }
}

impl<B> Body for HandedOver<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        if this.head_first {
            // Not ready: hyper flushes what it has (the head) and polls again.
            this.head_first = false;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        if let Some(frame) = this.ready.pop_front() {
            return Poll::Ready(Some(Ok(frame)));
        }
        if let Some(error) = this.failed.take() {
            return Poll::Ready(Some(Err(error)));
        }
        match this.rest.as_mut() {
            Some(rest) => Pin::new(rest).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    // `is_end_stream` and `size_hint` keep their defaults: the host's own body
    // (wasmtime-wasi-http's) reports neither, so hyper frames the message the
    // same way as under Spin.
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full, StreamBody};

    fn poll<B: Body<Data = Bytes> + Unpin>(body: &mut B) -> Poll<Option<Bytes>> {
        let mut cx = Context::from_waker(Waker::noop());
        match Pin::new(body).poll_frame(&mut cx) {
            Poll::Ready(Some(Ok(frame))) => Poll::Ready(frame.into_data().ok()),
            Poll::Ready(Some(Err(_))) => panic!("error frame"),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    #[test]
    fn a_finished_body_goes_with_the_head() {
        let mut body = hand_over(Full::new(Bytes::from_static(b"whole")));
        assert_eq!(
            poll(&mut body),
            Poll::Ready(Some(Bytes::from_static(b"whole")))
        );
        assert_eq!(poll(&mut body), Poll::Ready(None));
    }

    #[test]
    fn an_unfinished_body_lets_the_head_go_first() {
        let (tx, rx) = futures::channel::mpsc::unbounded::<Result<Frame<Bytes>, std::io::Error>>();
        tx.unbounded_send(Ok(Frame::data(Bytes::from_static(b"early"))))
            .unwrap();
        let mut body = hand_over(StreamBody::new(rx));
        // Pending once, even though a frame is there: the head is flushed first.
        assert_eq!(poll(&mut body), Poll::Pending);
        assert_eq!(
            poll(&mut body),
            Poll::Ready(Some(Bytes::from_static(b"early")))
        );
        assert_eq!(poll(&mut body), Poll::Pending);
        tx.unbounded_send(Ok(Frame::data(Bytes::from_static(b"late"))))
            .unwrap();
        drop(tx);
        assert_eq!(
            poll(&mut body),
            Poll::Ready(Some(Bytes::from_static(b"late")))
        );
        assert_eq!(poll(&mut body), Poll::Ready(None));
    }

    #[test]
    fn collecting_still_yields_every_byte() {
        let body = hand_over(Full::new(Bytes::from_static(b"abc")));
        let bytes = futures::executor::block_on(body.collect())
            .unwrap()
            .to_bytes();
        assert_eq!(&bytes[..], b"abc");
    }
}

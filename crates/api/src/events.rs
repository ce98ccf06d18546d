//! `GET /api/v1/events`: the progress bus as Server-Sent Events (`event: progress`, one JSON
//! `ProgressEvent` per message). A client too slow to keep up gets `event: lagged` with the
//! number of events it missed, and should re-read `/api/v1/syncs`.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use tokio::sync::broadcast::error::RecvError;

use crate::AppState;

/// The SSE stream.
pub async fn stream(
    State(state): State<AppState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let receiver = state.inner.bus.subscribe();
    let events = futures::stream::unfold(receiver, |mut rx| async move {
        let event = match rx.recv().await {
            Ok(event) => {
                let data = serde_json::to_string(&event).unwrap_or_else(|_| "{}".into());
                Event::default().event("progress").data(data)
            }
            Err(RecvError::Lagged(n)) => Event::default().event("lagged").data(n.to_string()),
            Err(RecvError::Closed) => return None,
        };
        Some((Ok(event), rx))
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

//! A topic as Server-Sent Events: each record is an event whose id holds, for every partition
//! of the topic, `partition:offset` of the next record the stream would send from it. A client
//! that reconnects with `Last-Event-ID` (browsers' `EventSource` do so by themselves) resumes
//! exactly there, in every partition, whatever arrived while it was away. Every read is a broker fetch, checked against the token each time, so a token
//! revoked by a reload ends the stream.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde::Deserialize;
use utoipa::IntoParams;

use super::records::OutRecord;
use super::{ApiError, App, Caller, Params, Segments};
use crate::broker::{Command, FetchPosition, Reply, TopicCommand};
use crate::limits;

/// Where a stream starts when `Last-Event-ID` does not say.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct EventsQuery {
    /// `earliest` (every stored record) or `latest` (only new ones, the default).
    #[param(pattern = "^(earliest|latest)$")]
    from: Option<String>,
    /// Resume here, as a `Last-Event-ID` header would (`0:42,1:18`: the next offset per
    /// partition).
    #[param(pattern = "^([0-9]{1,9}:[0-9]{1,18}(,[0-9]{1,9}:[0-9]{1,18})*)?$")]
    last_event_id: Option<String>,
    /// A bearer token, for browsers' `EventSource` (which cannot set headers); read by the
    /// token check, not here.
    #[serde(rename = "access_token")]
    _access_token: Option<String>,
}

/// How long one read waits for new records before it asks again.
const POLL: Duration = Duration::from_secs(5);

/// Records per read.
const CHUNK: usize = 1_000;

#[utoipa::path(get, path = "/api/v1/topics/{topic}/events", tag = "topics",
    params(("topic" = String, Path), ("Last-Event-ID" = Option<String>, Header, nullable = false, description = "Resume at `partition:offset,…` (the next offset per partition)", pattern = "^([0-9]{1,9}:[0-9]{1,18}(,[0-9]{1,9}:[0-9]{1,18})*)?$"), EventsQuery),
    responses((status = 200, description = "text/event-stream of `record` events (data: the record as JSON; id: the next offset of every partition, `0:42,1:18`)", content_type = "text/event-stream"),
        (status = 404, body = super::ErrorBody),
        (status = 409, description = "Last-Event-ID resumes past a partition's end: the topic is not what it was", body = super::ErrorBody)))]
pub(super) async fn events(
    State(app): State<App>,
    caller: Caller,
    Segments(topic): Segments<String>,
    Params(q): Params<EventsQuery>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let info = match app.run(&caller, Command::Topic(TopicCommand::Describe { name: topic.clone() })).await? {
        Reply::Topic(t) => t,
        other => return Err(super::api::unexpected(other)),
    };
    // Both are checked; the header (what a reconnecting EventSource sends) wins.
    let from_query = q.last_event_id.map(|id| parse_event_id(&id, &info.partitions)).transpose()?;
    let from_header = match headers.get("last-event-id").map(|v| v.to_str()) {
        Some(Err(_)) => {
            return Err(ApiError::bad_request("Last-Event-ID is not visible ASCII: give partition:offset,…"));
        }
        Some(Ok(id)) => Some(id),
        None => None,
    };
    let resume_at = match from_header {
        Some(id) => parse_event_id(id, &info.partitions)?,
        None => from_query.unwrap_or_default(),
    };
    let earliest = match q.from.as_deref() {
        None | Some("latest") => false,
        Some("earliest") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!("from must be `earliest` or `latest`, not `{other}`")));
        }
    };
    let next = info
        .partitions
        .iter()
        .enumerate()
        .map(|(p, (start, hw))| {
            let p = p as u32;
            let at = match resume_at.get(&p) {
                Some(o) => *o,
                None if earliest => *start,
                None => *hw,
            };
            (p, at)
        })
        .collect();
    let tail = Tail { app, caller, topic, next, pending: VecDeque::new(), done: false };
    Ok(Sse::new(futures_util::stream::unfold(tail, Tail::step)).keep_alive(KeepAlive::default()))
}

/// `0:42,1:18` → {0: 42, 1: 18}, each at most its partition's high watermark (past the end
/// is refused: the topic was recreated, or the id is not one of ours).
fn parse_event_id(id: &str, partitions: &[(u64, u64)]) -> Result<BTreeMap<u32, u64>, ApiError> {
    let bad =
        || ApiError::bad_request(format!("Last-Event-ID `{id}` is not a list of partition:offset (like 0:42,1:18)"));
    id.split(',')
        .filter(|s| !s.is_empty())
        .map(|pair| {
            let (p, o) = pair.split_once(':').ok_or_else(bad)?;
            let (p, o) = (p.trim().parse::<u32>().map_err(|_| bad())?, o.trim().parse::<u64>().map_err(|_| bad())?);
            let Some((_, hw)) = partitions.get(p as usize) else {
                return Err(ApiError::not_found(format!(
                    "Last-Event-ID names partition {p}; the topic has {}",
                    partitions.len()
                )));
            };
            if o > *hw {
                // The id is well formed; the topic is not what it was when the id was given.
                return Err(ApiError::new(
                    axum::http::StatusCode::CONFLICT,
                    "Conflict",
                    format!(
                        "Last-Event-ID resumes partition {p} at offset {o}, past its end ({hw}): was the topic recreated? reconnect without it"
                    ),
                ));
            }
            Ok((p, o))
        })
        .collect()
}

/// A stream's position.
struct Tail {
    app: App,
    caller: Caller,
    topic: String,
    /// Next offset to send per partition (the event id).
    next: BTreeMap<u32, u64>,
    pending: VecDeque<Event>,
    done: bool,
}

impl Tail {
    async fn step(mut self) -> Option<(Result<Event, Infallible>, Tail)> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some((Ok(event), self));
            }
            if self.done || *self.app.closing.borrow() {
                return None;
            }
            let mut closing = self.app.closing.clone();
            tokio::select! {
                () = self.read() => {}
                _ = closing.changed() => return None,
            }
        }
    }

    /// Read the next records into `pending`; an error becomes an `error` event that ends it.
    async fn read(&mut self) {
        let positions = self.next.iter().map(|(p, o)| FetchPosition { partition: *p, offset: *o }).collect();
        let command = TopicCommand::Fetch {
            topic: self.topic.clone(),
            positions,
            max_records: CHUNK,
            max_bytes: limits::HTTP_MAX_FETCH_BYTES,
            max_wait: POLL,
        };
        let result = match self.caller.refreshed(&self.app) {
            Ok(caller) => {
                self.caller = caller;
                self.app.run(&self.caller, Command::Topic(command)).await
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(Reply::Fetched(parts)) => {
                for part in parts {
                    let p = part.partition;
                    // Retention may have moved the start past where we were.
                    self.next.entry(p).and_modify(|o| *o = (*o).max(part.first_offset));
                    for r in part.records {
                        self.next.insert(p, r.offset + 1);
                        let id = self.next.iter().map(|(p, o)| format!("{p}:{o}")).collect::<Vec<_>>().join(",");
                        let data = serde_json::to_string(&OutRecord::new(Some(p), r)).unwrap_or_default();
                        self.pending.push_back(Event::default().event("record").id(id).data(data));
                    }
                }
            }
            Ok(_) => self.done = true,
            Err(e) => {
                let data = serde_json::json!({"error": {"kind": e.kind, "message": e.message}}).to_string();
                self.pending.push_back(Event::default().event("error").data(data));
                self.done = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_parse_and_bad_ones_say_why() {
        let parts = [(0, 50), (0, 20)];
        assert_eq!(parse_event_id("0:41,1:17", &parts).unwrap(), BTreeMap::from([(0, 41), (1, 17)]));
        assert!(parse_event_id("0-41", &parts).unwrap_err().message.contains("partition:offset"));
        assert!(parse_event_id("5:1", &parts).unwrap_err().message.contains("has 2"));
        assert!(parse_event_id("1:21", &parts).unwrap_err().message.contains("past its end"));
        assert!(parse_event_id("0:18446744073709551615", &parts).is_err());
    }
}

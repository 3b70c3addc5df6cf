//! What a session tells webhooks about its participant (pure but for the emitter, which never
//! waits): `participant_joined` once its roster entry exists, `track_published` /
//! `track_unpublished` as re-offers change what it publishes, `participant_left` with the
//! reason at the end. A participant's tracks end with it: no `track_unpublished` is made then.

use std::time::Duration;

use crate::events::proto::{
    Participant, ParticipantJoined, ParticipantLeft, Track, TrackPublished, TrackUnpublished,
};
use crate::events::{Emitter, Kind};
use crate::media::{Roster, SessionKey, TrackSource};

/// The leave reason of a client that closed or deleted its session itself.
pub const LEFT: &str = "left";

/// Who the events are about.
pub fn participant(
    key: &SessionKey,
    roster: &Roster,
    uid: Option<&str>,
    instance: &str,
) -> Participant {
    Participant {
        session_id: key.session.clone(),
        display_name: roster.display_name.clone(),
        uid: uid.unwrap_or_default().to_owned(),
        instance_id: instance.to_owned(),
    }
}

#[derive(Default)]
pub struct Announcer {
    joined: bool,
    tracks: Vec<Track>,
}

fn tracks_of(roster: &Roster) -> Vec<Track> {
    roster
        .tracks
        .iter()
        .map(|(mid, kind)| {
            let source = roster.sources.get(mid).copied();
            Track {
                mid: mid.clone(),
                kind: kind.as_str().into(),
                source: source
                    .unwrap_or(TrackSource::default_for(*kind))
                    .as_str()
                    .into(),
            }
        })
        .collect()
}

impl Announcer {
    /// The roster entry was written: announces the join (the first time) and track changes.
    pub fn roster(&mut self, events: &Emitter, room: &str, who: Participant, roster: &Roster) {
        if !self.joined {
            self.joined = true;
            events.emit(
                room,
                Kind::ParticipantJoined(ParticipantJoined {
                    participant: Some(who.clone()),
                }),
            );
        }
        let now = tracks_of(roster);
        for gone in self.tracks.iter().filter(|t| !now.contains(t)) {
            events.emit(
                room,
                Kind::TrackUnpublished(TrackUnpublished {
                    participant: Some(who.clone()),
                    track: Some(gone.clone()),
                }),
            );
        }
        for new in now.iter().filter(|t| !self.tracks.contains(t)) {
            events.emit(
                room,
                Kind::TrackPublished(TrackPublished {
                    participant: Some(who.clone()),
                    track: Some(new.clone()),
                }),
            );
        }
        self.tracks = now;
    }

    /// The session ended; announced once, and only for a participant whose join was.
    pub fn left(
        &mut self,
        events: &Emitter,
        room: &str,
        who: Participant,
        reason: &str,
        stayed: Option<Duration>,
    ) {
        if !std::mem::take(&mut self.joined) {
            return;
        }
        self.tracks.clear();
        events.emit(
            room,
            Kind::ParticipantLeft(ParticipantLeft {
                participant: Some(who),
                reason: reason.into(),
                duration_ms: stayed.map_or(0, |d| d.as_millis() as i64),
            }),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::type_name;
    use crate::media::MediaKind;

    fn roster(tracks: &[(&str, MediaKind, TrackSource)]) -> Roster {
        Roster {
            display_name: "Ann".into(),
            tracks: tracks.iter().map(|(m, k, _)| (m.to_string(), *k)).collect(),
            sources: tracks.iter().map(|(m, _, s)| (m.to_string(), *s)).collect(),
            watching: None,
        }
    }

    #[tokio::test]
    async fn joins_once_diffs_tracks_and_leaves_once() {
        let (events, mut rx) = Emitter::channel();
        let mut a = Announcer::default();
        let who = Participant {
            session_id: "s1".into(),
            ..Default::default()
        };
        let first = roster(&[
            ("0", MediaKind::Audio, TrackSource::Microphone),
            ("1", MediaKind::Video, TrackSource::Camera),
        ]);
        a.roster(&events, "r", who.clone(), &first);
        // A re-offer: the camera goes, a screen share comes.
        let second = roster(&[
            ("0", MediaKind::Audio, TrackSource::Microphone),
            ("2", MediaKind::Video, TrackSource::Screen),
        ]);
        a.roster(&events, "r", who.clone(), &second);
        a.left(&events, "r", who.clone(), "peer-timeout", None);
        a.left(&events, "r", who, "left", None);
        drop(events);
        let mut seen = vec![];
        while let Some(h) = rx.recv().await {
            let detail = match &h.kind {
                Kind::TrackPublished(t) => t.track.as_ref().unwrap().source.clone(),
                Kind::TrackUnpublished(t) => t.track.as_ref().unwrap().source.clone(),
                Kind::ParticipantLeft(l) => l.reason.clone(),
                _ => String::new(),
            };
            seen.push(format!("{} {detail}", type_name(&h.kind)));
        }
        assert_eq!(
            seen,
            [
                "participant.joined ",
                "track.published microphone",
                "track.published camera",
                "track.unpublished camera",
                "track.published screen",
                "participant.left peer-timeout",
            ]
        );
    }
}

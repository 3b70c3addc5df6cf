//! Viewer sessions (the session document's `watch`; WHEP playback): a session that watches one
//! participant, or the room's presenter, receives only that participant's media on its slots —
//! one video (a screen share before the camera) and its audio — and follows a change of
//! presenter without renegotiating (its slots are re-pointed).
//!
//! Choosing whom and what is pure: the engine passes what the room publishes.

use super::PeerId;
use super::TrackSource;
use super::offer::MediaKind;
use super::room::TrackRef;

/// Whom a viewer session watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Watch {
    /// The participant (or camera) with this session id.
    Session(String),
    /// Whoever shares a screen (the earliest to join of those who do); else the room's
    /// dominant speaker; else the earliest to join who publishes video.
    Presenter,
}

/// The `watch` value naming the presenter.
pub const PRESENTER: &str = "presenter";

impl Watch {
    /// Reads a document's `watch` value: `"presenter"` or a session id.
    pub fn parse(value: &str) -> Watch {
        if value == PRESENTER {
            Watch::Presenter
        } else {
            Watch::Session(value.to_owned())
        }
    }

    /// The document's `watch` value.
    pub fn as_str(&self) -> &str {
        match self {
            Watch::Session(session) => session,
            Watch::Presenter => PRESENTER,
        }
    }
}

/// A member of the room that publishes, as the choice sees it.
#[derive(Debug, Clone)]
pub struct Publisher {
    pub id: PeerId,
    pub session: String,
    /// Its published tracks in offer order: mid, kind, what it carries.
    pub tracks: Vec<(String, MediaKind, TrackSource)>,
}

impl Publisher {
    fn shares_screen(&self) -> bool {
        self.tracks
            .iter()
            .any(|(_, _, s)| *s == TrackSource::Screen)
    }

    fn has_video(&self) -> bool {
        self.tracks.iter().any(|(_, k, _)| *k == MediaKind::Video)
    }
}

/// The publisher `watch` designates among `publishers` (in join order), given the room's
/// dominant speaker. `None`: nobody (the watched session is not in the room; or, for the
/// presenter, nobody publishes).
pub fn watched<'a>(
    watch: &Watch,
    publishers: &'a [Publisher],
    speaker: Option<PeerId>,
) -> Option<&'a Publisher> {
    match watch {
        Watch::Session(session) => publishers.iter().find(|p| p.session == *session),
        Watch::Presenter => publishers
            .iter()
            .find(|p| p.shares_screen())
            .or_else(|| {
                publishers
                    .iter()
                    .find(|p| Some(p.id) == speaker && !p.tracks.is_empty())
            })
            .or_else(|| publishers.iter().find(|p| p.has_video()))
            .or_else(|| publishers.iter().find(|p| !p.tracks.is_empty())),
    }
}

/// What a viewer of `publisher` receives, in order of preference: one video (its screen
/// share, else its first video) and its audio (microphone first).
pub fn focus(publisher: &Publisher) -> Vec<TrackRef> {
    let track = |mid: &String| TrackRef {
        publisher: publisher.id,
        mid: mid.clone(),
    };
    let video = publisher
        .tracks
        .iter()
        .find(|(_, _, s)| *s == TrackSource::Screen)
        .or_else(|| {
            publisher
                .tracks
                .iter()
                .find(|(_, k, _)| *k == MediaKind::Video)
        });
    let audio = |microphone: bool| {
        publisher
            .tracks
            .iter()
            .filter(move |(_, k, s)| {
                *k == MediaKind::Audio && (*s == TrackSource::ScreenAudio) != microphone
            })
            .map(|(mid, _, _)| track(mid))
    };
    video
        .map(|(mid, _, _)| track(mid))
        .into_iter()
        .chain(audio(true))
        .chain(audio(false))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use MediaKind::{Audio, Video};
    use TrackSource::{Camera, Microphone, Screen, ScreenAudio};

    fn publisher(id: u64, tracks: &[(&str, MediaKind, TrackSource)]) -> Publisher {
        Publisher {
            id: PeerId(id),
            session: format!("s{id}"),
            tracks: tracks
                .iter()
                .map(|(m, k, s)| (m.to_string(), *k, *s))
                .collect(),
        }
    }

    fn mids(tracks: &[TrackRef]) -> Vec<(u64, &str)> {
        tracks
            .iter()
            .map(|t| (t.publisher.0, t.mid.as_str()))
            .collect()
    }

    #[test]
    fn a_session_is_found_by_its_id_or_not_at_all() {
        let room = [publisher(1, &[("0", Audio, Microphone)])];
        let found = watched(&Watch::parse("s1"), &room, None).map(|p| p.id);
        assert_eq!(found, Some(PeerId(1)));
        assert!(watched(&Watch::parse("s9"), &room, None).is_none());
        assert_eq!(Watch::parse("presenter"), Watch::Presenter);
        assert_eq!(Watch::parse("s9").as_str(), "s9");
    }

    #[test]
    fn the_presenter_is_who_shares_else_the_speaker_else_video() {
        let camera = [("0", Audio, Microphone), ("1", Video, Camera)];
        let mut room = vec![
            publisher(1, &[("0", Audio, Microphone)]),
            publisher(2, &camera),
        ];
        let pick =
            |room: &[Publisher], speaker| watched(&Watch::Presenter, room, speaker).map(|p| p.id.0);
        assert_eq!(pick(&room, None), Some(2), "the first with video");
        assert_eq!(pick(&room, Some(PeerId(1))), Some(1), "the speaker");
        room.push(publisher(
            3,
            &[
                ("0", Audio, Microphone),
                ("1", Video, Camera),
                ("2", Video, Screen),
            ],
        ));
        assert_eq!(pick(&room, Some(PeerId(1))), Some(3), "who shares");
        assert_eq!(pick(&[publisher(4, &[])], None), None);
    }

    #[test]
    fn the_focus_is_the_share_before_the_camera_and_the_microphone_first() {
        let p = publisher(
            3,
            &[
                ("0", Audio, ScreenAudio),
                ("1", Video, Camera),
                ("2", Video, Screen),
                ("3", Audio, Microphone),
            ],
        );
        assert_eq!(mids(&focus(&p)), [(3, "2"), (3, "3"), (3, "0")]);
        let camera = publisher(1, &[("0", Audio, Microphone), ("1", Video, Camera)]);
        assert_eq!(mids(&focus(&camera)), [(1, "1"), (1, "0")]);
    }
}

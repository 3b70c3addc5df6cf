//! The RTSP side of a camera, over `retina` (the RTSP client Rust NVRs use: Digest and Basic
//! auth, TCP-interleaved and UDP transports, H.264 depacketization with parameter sets put
//! back in front of keyframes, G.711 passthrough).
//!
//! `open` describes the camera, refuses what browsers cannot take untranscoded, sets up its
//! H.264 video and (if G.711) its audio and starts playing. What fails becomes a
//! [`CameraError`] whose message carries no credentials.

use std::sync::Arc;
use std::time::Duration;

use retina::client::{
    Credentials, PlayOptions, Session, SessionGroup, SessionOptions, SetupOptions, Transport,
};
use retina::codec::FrameFormat;

use super::documents::{CameraError, CameraErrorCode, CameraSecret, RtspTransport};

/// A G.711 audio track the camera sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum G711 {
    Pcmu,
    Pcma,
}

impl G711 {
    pub fn name(self) -> &'static str {
        match self {
            G711::Pcmu => "PCMU",
            G711::Pcma => "PCMA",
        }
    }

    /// Its static payload type (RFC 3551).
    pub fn payload_type(self) -> u8 {
        match self {
            G711::Pcmu => 0,
            G711::Pcma => 8,
        }
    }
}

/// A camera that plays.
pub struct Opened {
    pub stream: retina::client::Demuxed,
    pub video: usize,
    pub audio: Option<(usize, G711)>,
    /// The audio the camera offers that is not forwarded (e.g. "MPEG4-GENERIC (AAC)").
    pub audio_refused: Option<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// RFC 6381 codec string, e.g. `avc1.42C01E`.
    pub codec: String,
}

fn error(code: CameraErrorCode, message: impl Into<String>) -> CameraError {
    CameraError {
        code,
        message: message.into(),
    }
}

/// What a retina error means to the camera's owner; the first line of its text only (the rest
/// names connection contexts).
pub fn classify(e: &retina::Error) -> CameraError {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or_default().trim().to_owned();
    match e.status_code() {
        Some(401) | Some(403) => error(
            CameraErrorCode::Unauthorized,
            format!("the camera refused the credentials ({first})"),
        ),
        Some(404) => error(
            CameraErrorCode::NotFound,
            format!("the camera has no such stream ({first})"),
        ),
        Some(_) => error(CameraErrorCode::Protocol, first),
        None if first.starts_with("Unable to connect") => {
            error(CameraErrorCode::Unreachable, first)
        }
        None if first.starts_with("Timeout") => error(
            CameraErrorCode::NoMedia,
            "the camera stopped answering".to_owned(),
        ),
        None if first.starts_with("Error reading") || first.starts_with("Error writing") => error(
            CameraErrorCode::NoMedia,
            format!("the connection to the camera broke ({first})"),
        ),
        None => error(CameraErrorCode::Protocol, first),
    }
}

/// Parses the camera's URL: `rtsp://` or `rtsps://` with a host.
pub fn parse_url(url: &str) -> Result<url::Url, CameraError> {
    let parsed = url::Url::parse(url)
        .map_err(|e| error(CameraErrorCode::InvalidUrl, format!("not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "rtsp" | "rtsps") {
        return Err(error(
            CameraErrorCode::InvalidUrl,
            format!("the scheme is {}, not rtsp", parsed.scheme()),
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(error(CameraErrorCode::InvalidUrl, "the URL has no host"));
    }
    Ok(parsed)
}

/// Describes, checks, sets up and plays the camera; `timeout` bounds the whole exchange.
pub async fn open(
    secret: &CameraSecret,
    transport: RtspTransport,
    group: Arc<SessionGroup>,
    timeout: Duration,
) -> Result<Opened, CameraError> {
    match tokio::time::timeout(timeout, open_inner(secret, transport, group)).await {
        Ok(result) => result,
        Err(_) => Err(error(
            CameraErrorCode::Unreachable,
            format!("the camera did not answer within {} s", timeout.as_secs()),
        )),
    }
}

async fn open_inner(
    secret: &CameraSecret,
    transport: RtspTransport,
    group: Arc<SessionGroup>,
) -> Result<Opened, CameraError> {
    let url = parse_url(&secret.url)?;
    let creds = secret.username.as_ref().map(|u| Credentials {
        username: u.clone(),
        password: secret.password.clone().unwrap_or_default(),
    });
    let options = SessionOptions::default()
        .creds(creds)
        .session_group(group)
        .user_agent(format!("firesfu/{}", env!("CARGO_PKG_VERSION")));
    let mut session = Session::describe(url, options)
        .await
        .map_err(|e| classify(&e))?;

    let streams = session.streams();
    let video = streams.iter().position(|s| s.media() == "video");
    let Some(video) = video else {
        return Err(error(
            CameraErrorCode::UnsupportedCodec,
            "the camera offers no video stream",
        ));
    };
    let encoding = streams[video].encoding_name().to_ascii_lowercase();
    if encoding != "h264" {
        let name = match encoding.as_str() {
            "h265" => "H.265".to_owned(),
            "jpeg" => "MJPEG".to_owned(),
            other => other.to_ascii_uppercase(),
        };
        return Err(error(
            CameraErrorCode::UnsupportedCodec,
            format!(
                "the camera's video is {name}; browsers take only H.264 from a camera without \
                 transcoding: switch the camera's stream to H.264"
            ),
        ));
    }
    let mut audio = None;
    let mut audio_refused = None;
    for (i, s) in streams.iter().enumerate() {
        if s.media() != "audio" {
            continue;
        }
        match s.encoding_name().to_ascii_lowercase().as_str() {
            "pcmu" if audio.is_none() => audio = Some((i, G711::Pcmu)),
            "pcma" if audio.is_none() => audio = Some((i, G711::Pcma)),
            other if audio.is_none() && audio_refused.is_none() => {
                let name = match other {
                    "mpeg4-generic" => "AAC".to_owned(),
                    other => other.to_ascii_uppercase(),
                };
                audio_refused = Some(format!(
                    "the camera's audio is {name}; only G.711 (PCMU/PCMA) is forwarded without \
                     transcoding"
                ));
            }
            _ => {}
        }
    }
    if audio.is_some() {
        audio_refused = None;
    }
    let rtsp_transport = match transport {
        RtspTransport::Tcp => Transport::Tcp(Default::default()),
        RtspTransport::Udp => Transport::Udp(Default::default()),
    };
    let setup = |t: &Transport| {
        SetupOptions::default()
            .transport(t.clone())
            .frame_format(FrameFormat::SIMPLE)
    };
    session
        .setup(video, setup(&rtsp_transport))
        .await
        .map_err(|e| classify(&e))?;
    if let Some((i, _)) = audio {
        session
            .setup(i, setup(&rtsp_transport))
            .await
            .map_err(|e| classify(&e))?;
    }
    let (width, height, codec) = video_parameters(&session.streams()[video]);
    let playing = session
        .play(PlayOptions::default())
        .await
        .map_err(|e| classify(&e))?;
    let stream = playing.demuxed().map_err(|e| classify(&e))?;
    Ok(Opened {
        stream,
        video,
        audio,
        audio_refused,
        width,
        height,
        codec,
    })
}

/// Width, height and codec string, once the stream's parameters are known.
pub fn video_parameters(stream: &retina::client::Stream) -> (Option<u32>, Option<u32>, String) {
    match stream.parameters() {
        Some(retina::codec::ParametersRef::Video(v)) => {
            let (w, h) = v.pixel_dimensions();
            (Some(w), Some(h), v.rfc6381_codec().to_owned())
        }
        _ => (None, None, "avc1".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_rtsp_urls_with_a_host_are_taken() {
        assert!(parse_url("rtsp://cam.local:554/stream1").is_ok());
        assert!(parse_url("rtsps://10.0.0.2/x").is_ok());
        for bad in ["http://cam/x", "rtsp://", "not a url", "rtsp:///path"] {
            assert_eq!(
                parse_url(bad).unwrap_err().code,
                CameraErrorCode::InvalidUrl,
                "{bad}"
            );
        }
    }
}

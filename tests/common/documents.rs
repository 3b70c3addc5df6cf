//! Session documents as tests write them by hand: offers built from m-lines, and the kinds of
//! junk a hostile client writes, each with the error code the server answers it with.

use serde_json::{Value, json};

/// An offer SDP with one m-line per `(kind, direction, codec)`.
pub fn sdp_with(lines: &[(&str, &str, &str)]) -> String {
    let mut sdp = String::from("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE");
    for i in 0..lines.len() {
        sdp.push_str(&format!(" {i}"));
    }
    sdp.push_str(
        "\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=fingerprint:sha-256 ",
    );
    sdp.push_str(&vec!["AB"; 32].join(":"));
    sdp.push_str("\r\na=setup:actpass\r\n");
    for (i, (kind, dir, codec)) in lines.iter().enumerate() {
        let (pt, rate) = if *kind == "audio" {
            (111, "48000/2")
        } else {
            (96, "90000")
        };
        sdp.push_str(&format!(
            "m={kind} 9 UDP/TLS/RTP/SAVPF {pt}\r\nc=IN IP4 0.0.0.0\r\na=mid:{i}\r\na={dir}\r\na=rtcp-mux\r\na=rtpmap:{pt} {codec}/{rate}\r\n"
        ));
    }
    sdp
}

/// A first-offer session document carrying `sdp`.
pub fn good_doc(sdp: &str) -> Value {
    json!({
        "v": 1,
        "displayName": "Mallory",
        "token": null,
        "offer": {"sdp": sdp, "revision": 1},
        "state": "offered",
    })
}

/// Ten kinds of junk session documents and their error codes. The last kind is a valid offer
/// meant for a room that does not exist (`room` is where it must be written instead).
pub fn junk_kinds() -> Vec<(&'static str, Value, &'static str)> {
    let good = sdp_with(&[("audio", "sendonly", "opus"), ("video", "sendonly", "VP8")]);
    let mut kinds = Vec::new();
    let mut d = good_doc(&good);
    d.as_object_mut().unwrap().remove("displayName");
    kinds.push(("no-name", d, "invalid-document"));
    let mut d = good_doc(&good);
    d["v"] = json!(2);
    kinds.push(("version-2", d, "unsupported-version"));
    let mut d = good_doc(&good);
    d["offer"]["sdp"] = json!(good.clone() + &"a=x-padding:0123456789abcdef\r\n".repeat(2300));
    kinds.push(("huge-sdp", d, "sdp-too-large"));
    kinds.push((
        "garbage-sdp",
        good_doc("hello, I am not SDP"),
        "sdp-malformed",
    ));
    kinds.push((
        "h265-only",
        good_doc(&sdp_with(&[("video", "sendonly", "H265")])),
        "no-usable-media",
    ));
    let mut d = good_doc(&good);
    d["state"] = json!("weird");
    kinds.push(("weird-state", d, "invalid-document"));
    let mut d = good_doc(&good);
    d["displayName"] = json!("\u{202E}moc.evil");
    kinds.push(("rtl-name", d, "invalid-document"));
    let many: Vec<(&str, &str, &str)> = vec![("video", "recvonly", "VP8"); 300];
    kinds.push((
        "300-m-lines",
        good_doc(&sdp_with(&many)),
        "too-many-m-lines",
    ));
    let loud: Vec<(&str, &str, &str)> = vec![("audio", "sendonly", "opus"); 5];
    kinds.push(("5-tracks", good_doc(&sdp_with(&loud)), "too-many-tracks"));
    kinds.push(("no-room", good_doc(&good), "room-not-found"));
    kinds
}

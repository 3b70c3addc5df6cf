//! A session document as a client may write it (any JSON): the server's validation, its
//! decision, and for an offer it would answer, the offer's inspection and limits. Nothing may
//! panic, and every refusal carries a message the client can show.
#![no_main]

use firesfu::jointoken::Grants;
use firesfu::media::CodecSupport;
use firesfu::media::offer::inspect_offer;
use firesfu::signalling::admission::check_offer_grants;
use firesfu::signalling::decide::{Decision, Observed, decide};
use firesfu::signalling::limits::OfferLimits;
use firesfu::signalling::receive::parse_receive;
use firesfu::signalling::validate::validate_offer;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(doc) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let observed = Observed::from_doc(&doc);
    for holding in [false, true] {
        if let Decision::Reject(e) = decide(&observed, "bc-1", holding) {
            assert!(!e.message.is_empty(), "a refusal without a message");
        }
    }
    for require_token in [false, true] {
        match validate_offer(&doc, require_token) {
            Err(e) => assert!(!e.message.is_empty(), "a refusal without a message"),
            Ok(request) => {
                let codecs = CodecSupport {
                    audio: vec!["opus".into()],
                    video: vec!["VP8".into(), "VP9".into(), "H264".into()],
                };
                if let Ok(summary) = inspect_offer(&request.sdp, &codecs) {
                    if let Err(e) = OfferLimits::default().check(&summary) {
                        assert!(!e.message.is_empty());
                    }
                    for grants in [
                        Grants::ALL,
                        Grants {
                            publish: false,
                            subscribe: true,
                        },
                    ] {
                        let _ = check_offer_grants(grants, &summary);
                    }
                }
            }
        }
    }
    if let Some(receive) = doc.get("receive") {
        let _ = parse_receive(receive);
    }
});

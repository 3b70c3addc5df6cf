//! Lets the RTCP the application acts on through rtc's interceptor chain.
//!
//! rtc 0.21 ends every inbound RTCP packet at the last interceptor unless one marks it
//! `DeliverToApplication`: the interceptors act on receiver reports and NACKs themselves, but an
//! SFU must relay a subscriber's PLI/FIR to the publisher it watches (a browser that joined a
//! running stream, or lost a frame, cannot decode until a keyframe comes), and translate a
//! publisher's sender reports for its subscribers (lip sync, [`crate::media::sync`]). This marks
//! exactly the compound packets that carry one of those; everything else stays inside the chain.

use std::collections::VecDeque;
use std::time::Instant;

use rtc::interceptor::{Attribute, Interceptor, Packet, Slot, StreamInfo, TaggedPacket};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::payload_feedbacks::receiver_estimated_maximum_bitrate::ReceiverEstimatedMaximumBitrate;
use rtc::rtcp::sender_report::SenderReport;
use rtc::sansio::Protocol;

/// After the report interceptors have read the packet, before the terminus drops it.
pub const SLOT: usize = 12_500;

pub fn slot() -> Slot {
    Slot::from(SLOT)
}

#[derive(Default)]
pub struct RtcpRelay {
    read_queue: VecDeque<TaggedPacket>,
    write_queue: VecDeque<TaggedPacket>,
}

fn concerns_application(packets: &[Box<dyn rtc::rtcp::Packet>]) -> bool {
    packets.iter().any(|p| {
        let any = p.as_any();
        any.is::<PictureLossIndication>()
            || any.is::<FullIntraRequest>()
            || any.is::<SenderReport>()
            || any.is::<ReceiverEstimatedMaximumBitrate>()
    })
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for RtcpRelay {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet
            && concerns_application(packets)
            && !msg.message.has(&Attribute::DeliverToApplication)
        {
            msg.message.add(Attribute::DeliverToApplication);
        }
        self.read_queue.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read_queue.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.write_queue.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write_queue.pop_front()
    }
}

impl Interceptor for RtcpRelay {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::interceptor::{AttributedPacket, Registry};
    use rtc::rtcp::receiver_report::ReceiverReport;
    use rtc::shared::TransportContext;

    fn rtcp(packets: Vec<Box<dyn rtc::rtcp::Packet>>) -> TaggedPacket {
        TaggedPacket {
            now: Instant::now(),
            transport: TransportContext::default(),
            message: AttributedPacket::new(Packet::Rtcp(packets)),
        }
    }

    #[test]
    fn a_pli_reaches_the_application_and_a_receiver_report_does_not() {
        let mut chain = Registry::new().with(slot(), RtcpRelay::default()).build();
        let pli = PictureLossIndication {
            sender_ssrc: 1,
            media_ssrc: 42,
        };
        chain
            .handle_read(rtcp(vec![
                Box::new(ReceiverReport::default()),
                Box::new(pli),
            ]))
            .unwrap();
        chain
            .handle_read(rtcp(vec![Box::new(ReceiverReport::default())]))
            .unwrap();
        let mut delivered = Vec::new();
        while let Some(msg) = chain.poll_read() {
            if let Packet::Rtcp(p) = msg.message.packet
                && !p.is_empty()
            {
                delivered.push(p);
            }
        }
        assert_eq!(delivered.len(), 1, "only the compound with the PLI passes");
        let got = delivered[0][1]
            .as_any()
            .downcast_ref::<PictureLossIndication>()
            .unwrap();
        assert_eq!(got.media_ssrc, 42);
    }

    #[test]
    fn a_sender_report_reaches_the_application() {
        let mut chain = Registry::new().with(slot(), RtcpRelay::default()).build();
        let sr = SenderReport {
            ssrc: 7,
            rtp_time: 1234,
            ..Default::default()
        };
        chain.handle_read(rtcp(vec![Box::new(sr)])).unwrap();
        let msg = chain.poll_read().unwrap();
        assert!(msg.message.has(&Attribute::DeliverToApplication));
    }
}

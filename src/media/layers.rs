//! Which simulcast layer of its source one receive slot forwards, switching only where the
//! subscriber's decoder can follow: at a keyframe of the new layer.
//!
//! The allocator sets a target (a layer, or none: paused); packets of the current layer pass
//! until a keyframe of the target arrives, which becomes the new current layer. Non-simulcast
//! tracks have one layer, 0, and use the same logic for pausing and resuming.

/// What to do with one packet of layer `layer` for this slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Forward,
    /// Forward, and it starts the new layer: re-base the slot's numbering first.
    Switch,
    Drop,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayerSelector {
    current: Option<u8>,
    target: Option<u8>,
}

impl LayerSelector {
    /// Sets the layer to forward (`None`: pause now). True when a keyframe of the new target
    /// is needed to switch to it. With `stop_current`, the layer forwarded until then stops at
    /// once instead of running until the keyframe (a downlink too thin for it: every packet
    /// more only adds loss, and delays the keyframe that would end it).
    pub fn set_target(&mut self, target: Option<u8>, stop_current: bool) -> bool {
        if self.target == target {
            return false;
        }
        self.target = target;
        if target.is_none() || stop_current {
            self.current = None;
        }
        self.waiting()
    }

    pub fn target(&self) -> Option<u8> {
        self.target
    }

    pub fn current(&self) -> Option<u8> {
        self.current
    }

    /// A target is set that the slot does not forward yet (it waits for its keyframe).
    pub fn waiting(&self) -> bool {
        self.target.is_some() && self.target != self.current
    }

    pub fn on_packet(&mut self, layer: u8, keyframe_start: bool) -> Verdict {
        if Some(layer) == self.target && self.current != self.target {
            if keyframe_start {
                self.current = self.target;
                return Verdict::Switch;
            }
            // Packets of the target layer before its keyframe are useless to the decoder.
            return Verdict::Drop;
        }
        if Some(layer) == self.current {
            Verdict::Forward
        } else {
            Verdict::Drop
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switches_only_at_a_keyframe_of_the_target() {
        let mut s = LayerSelector::default();
        assert!(s.set_target(Some(2), false), "needs a keyframe to start");
        assert_eq!(s.on_packet(2, false), Verdict::Drop);
        assert_eq!(s.on_packet(0, true), Verdict::Drop, "not the target");
        assert_eq!(s.on_packet(2, true), Verdict::Switch);
        assert_eq!(s.on_packet(2, false), Verdict::Forward);
        // Down to layer 0: layer 2 keeps flowing until layer 0's keyframe.
        assert!(s.set_target(Some(0), false));
        assert_eq!(s.on_packet(2, false), Verdict::Forward);
        assert_eq!(s.on_packet(0, false), Verdict::Drop);
        assert_eq!(s.on_packet(0, true), Verdict::Switch);
        assert_eq!(s.on_packet(2, true), Verdict::Drop);
        assert!(!s.waiting());
        assert!(!s.set_target(Some(0), false), "unchanged");
        // Down for lack of bandwidth: the old layer stops at once.
        assert!(s.set_target(Some(1), true));
        assert_eq!(s.on_packet(0, false), Verdict::Drop);
        assert_eq!(s.on_packet(1, true), Verdict::Switch);
    }

    #[test]
    fn pausing_stops_at_once_and_resuming_waits_for_a_keyframe() {
        let mut s = LayerSelector::default();
        s.set_target(Some(0), false);
        assert_eq!(s.on_packet(0, true), Verdict::Switch);
        assert!(!s.set_target(None, false));
        assert_eq!(s.on_packet(0, false), Verdict::Drop);
        assert!(s.set_target(Some(0), false));
        assert_eq!(s.on_packet(0, false), Verdict::Drop);
        assert_eq!(s.on_packet(0, true), Verdict::Switch);
    }
}

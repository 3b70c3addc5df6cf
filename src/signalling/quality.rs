//! When a participant's link quality is worth writing into the roster.
//!
//! Every roster write reaches every member's roster listener (a billed read each), so a room of
//! n people pays n reads per write: writing every sample (every 5 s) costs O(n²) per minute.
//! The roster's `quality` is written when it first becomes known and afterwards only when it
//! changes meaningfully: a value crosses one of the grade thresholds clients use (RTT 300 and
//! 600 ms, loss 2 % and 8 %), or moves by at least a quarter *and* by at least 50 ms (RTT) or
//! one percentage point (loss), or appears or disappears. docs/signalling.md documents it.

/// One quality sample: round-trip time (ms) and the fraction of published packets lost.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quality {
    pub rtt_ms: Option<f64>,
    pub loss: Option<f64>,
}

const RTT_BANDS: [f64; 2] = [300.0, 600.0];
const LOSS_BANDS: [f64; 2] = [0.02, 0.08];

fn band(value: f64, bounds: &[f64; 2]) -> usize {
    bounds.iter().filter(|b| value > **b).count()
}

fn changed(old: Option<f64>, new: Option<f64>, bounds: &[f64; 2], min_step: f64) -> bool {
    match (old, new) {
        (None, None) => false,
        (Some(_), None) | (None, Some(_)) => true,
        (Some(a), Some(b)) => {
            band(a, bounds) != band(b, bounds)
                || ((b - a).abs() >= min_step && (b - a).abs() >= 0.25 * a.abs().max(b.abs()))
        }
    }
}

/// True when `new` should be written, given the last written sample (`None`: none yet).
pub fn worth_writing(last: Option<&Quality>, new: &Quality) -> bool {
    match last {
        None => new.rtt_ms.is_some() || new.loss.is_some(),
        Some(last) => {
            changed(last.rtt_ms, new.rtt_ms, &RTT_BANDS, 50.0)
                || changed(last.loss, new.loss, &LOSS_BANDS, 0.01)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(rtt: f64, loss: f64) -> Quality {
        Quality {
            rtt_ms: Some(rtt),
            loss: Some(loss),
        }
    }

    #[test]
    fn the_first_known_sample_is_written() {
        assert!(worth_writing(None, &q(40.0, 0.0)));
        let unknown = Quality {
            rtt_ms: None,
            loss: None,
        };
        assert!(!worth_writing(None, &unknown));
    }

    #[test]
    fn jitter_within_a_band_is_not_written() {
        let last = q(40.0, 0.001);
        for new in [q(44.0, 0.001), q(80.0, 0.004), q(35.0, 0.0)] {
            assert!(!worth_writing(Some(&last), &new), "{new:?}");
        }
    }

    #[test]
    fn crossing_a_grade_threshold_or_a_large_move_is_written() {
        let last = q(280.0, 0.015);
        assert!(
            worth_writing(Some(&last), &q(310.0, 0.015)),
            "RTT became fair"
        );
        assert!(
            worth_writing(Some(&last), &q(280.0, 0.025)),
            "loss became fair"
        );
        assert!(
            worth_writing(Some(&q(40.0, 0.0)), &q(120.0, 0.0)),
            "RTT tripled"
        );
        assert!(
            worth_writing(Some(&q(700.0, 0.2)), &q(700.0, 0.35)),
            "loss +15 points"
        );
        let gone = Quality {
            rtt_ms: None,
            loss: Some(0.0),
        };
        assert!(worth_writing(Some(&q(40.0, 0.0)), &gone));
    }
}

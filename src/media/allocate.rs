//! Sharing one subscriber's downlink among the tracks it receives.
//!
//! Inputs per video slot: the source's simulcast layers (height where a keyframe told it,
//! measured bitrate, whether packets arrive), what the subscriber asked for (`maxHeight`, 0 =
//! paused) and a priority (pinned or speaking first). Audio is served first and never paused.
//! With an estimate, every slot first gets its lowest layer in priority order (slots that do not
//! fit are paused: video goes before audio does), then slots are upgraded in priority order
//! while the estimate allows. Upgrades above what a slot has now need headroom (a tenth of the new layer's rate), so that
//! an estimate hovering at a layer's rate does not make it switch back and forth.
//!
//! Pure: the engine calls it with the current measurements.

/// One simulcast layer of a source, as measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LayerInfo {
    /// Packets of it arrived recently.
    pub live: bool,
    /// Its picture height, from its last keyframe (VP8/VP9).
    pub height: Option<u16>,
    /// Bits per second: measured while live, last known (or a default) while not.
    pub bitrate: u64,
}

/// One video receive slot's situation.
#[derive(Debug, Clone, Copy)]
pub struct Demand<'a> {
    /// The source's layers by layer id.
    pub layers: &'a [LayerInfo],
    /// The largest height the subscriber wants (`Some(0)`: paused); `None`: no limit.
    pub max_height: Option<u16>,
    /// Higher is served first.
    pub priority: u8,
    /// The layer forwarded now.
    pub current: Option<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Choice {
    /// The layer to forward; `None`: nothing.
    pub target: Option<u8>,
    /// The best layer the subscriber's wish allows, live or not, regardless of bandwidth: a
    /// layer nobody wants can stop being encoded.
    pub wanted: Option<u8>,
    /// Paused or held below its wish for lack of bandwidth.
    pub constrained: bool,
}

/// Layer ids from worst to best: by height when every layer's is known, else by measured
/// bitrate when every layer is live, else in the publisher's order (which lists them low to
/// high in every browser we know).
pub fn ranked(layers: &[LayerInfo]) -> Vec<u8> {
    let mut ids: Vec<u8> = (0..layers.len().min(u8::MAX as usize) as u8).collect();
    if layers.iter().all(|l| l.height.is_some()) {
        ids.sort_by_key(|&i| (layers[i as usize].height, i));
    } else if layers.iter().all(|l| l.live && l.bitrate > 0) {
        ids.sort_by_key(|&i| (layers[i as usize].bitrate, i));
    }
    ids
}

/// Each ranked layer's height: known from its keyframes, else guessed from the nearest layer
/// whose height is known, assuming each step up the ranking doubles it (the usual simulcast
/// scaling: ¼, ½, 1). `None` when no layer's height is known.
fn heights(layers: &[LayerInfo], ranked: &[u8]) -> Vec<Option<u32>> {
    let known: Vec<(usize, u32)> = ranked
        .iter()
        .enumerate()
        .filter_map(|(pos, &i)| Some((pos, u32::from(layers[i as usize].height?))))
        .collect();
    (0..ranked.len())
        .map(|pos| {
            let &(at, h) = known.iter().min_by_key(|(at, _)| at.abs_diff(pos))?;
            Some(if pos >= at {
                h << (pos - at).min(8)
            } else {
                h >> (at - pos).min(8)
            })
        })
        .collect()
}

/// The layers a wish allows, worst first: those no taller than `max_height` (a layer of
/// unknown height is allowed), and always the worst one unless paused.
fn eligible(layers: &[LayerInfo], max_height: Option<u16>) -> Vec<u8> {
    let ranked = ranked(layers);
    match max_height {
        Some(0) => Vec::new(),
        None => ranked,
        Some(max) => {
            let heights = heights(layers, &ranked);
            let fits: Vec<u8> = ranked
                .iter()
                .zip(&heights)
                .filter(|(_, h)| h.is_none_or(|h| h <= u32::from(max)))
                .map(|(&i, _)| i)
                .collect();
            if fits.is_empty() {
                ranked.into_iter().take(1).collect()
            } else {
                fits
            }
        }
    }
}

/// Chooses each demand's layer within `budget` bits per second (`None`: unconstrained), after
/// `audio` bits per second of audio.
pub fn allocate(budget: Option<u64>, audio: u64, demands: &[Demand]) -> Vec<Choice> {
    let mut choices = vec![Choice::default(); demands.len()];
    // Per demand: the layers it may use now (live ones, or the worst allowed if none is live
    // yet: it is what will come first).
    let mut usable: Vec<Vec<u8>> = Vec::with_capacity(demands.len());
    for (d, choice) in demands.iter().zip(choices.iter_mut()) {
        let allowed = eligible(d.layers, d.max_height);
        choice.wanted = allowed.last().copied();
        let live: Vec<u8> = allowed
            .iter()
            .copied()
            .filter(|&i| d.layers[i as usize].live)
            .collect();
        usable.push(if live.is_empty() {
            allowed.into_iter().take(1).collect()
        } else {
            live
        });
    }
    let Some(budget) = budget else {
        for (choice, layers) in choices.iter_mut().zip(&usable) {
            choice.target = layers.last().copied();
        }
        return choices;
    };
    let mut order: Vec<usize> = (0..demands.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(demands[i].priority));
    let rate = |d: usize, layer: u8| demands[d].layers[layer as usize].bitrate;
    let mut left = budget.saturating_sub(audio);
    // Everyone's worst layer first, most important first.
    let mut step = vec![0usize; demands.len()];
    for &d in &order {
        let Some(&worst) = usable[d].first() else {
            continue;
        };
        if rate(d, worst) <= left {
            left -= rate(d, worst);
            choices[d].target = Some(worst);
        } else {
            choices[d].constrained = true;
        }
    }
    // Then upgrades, most important first, each as far as it fits.
    for &d in &order {
        let Some(mut have) = choices[d].target else {
            continue;
        };
        while let Some(&next) = usable[d].get(step[d] + 1) {
            let extra = rate(d, next).saturating_sub(rate(d, have));
            let above_current = demands[d].current.is_none_or(|c| {
                let ranks = ranked(demands[d].layers);
                let pos = |l: u8| ranks.iter().position(|&x| x == l);
                pos(next) > pos(c)
            });
            let need = if above_current {
                extra + rate(d, next) / 10
            } else {
                extra
            };
            if need > left {
                break;
            }
            left -= extra;
            have = next;
            step[d] += 1;
        }
        choices[d].target = Some(have);
        if Some(have) != choices[d].wanted {
            choices[d].constrained = true;
        }
    }
    choices
}

#[cfg(test)]
mod tests {
    use super::*;

    fn simulcast(live: bool) -> Vec<LayerInfo> {
        [(180, 150_000), (360, 500_000), (720, 1_500_000)]
            .into_iter()
            .map(|(h, b)| LayerInfo {
                live,
                height: Some(h),
                bitrate: b,
            })
            .collect()
    }

    fn demand(layers: &[LayerInfo], max_height: Option<u16>, priority: u8) -> Demand<'_> {
        Demand {
            layers,
            max_height,
            priority,
            current: None,
        }
    }

    #[test]
    fn without_an_estimate_everyone_gets_the_best_layer_their_wish_allows() {
        let l = simulcast(true);
        let c = allocate(
            None,
            0,
            &[
                demand(&l, None, 0),
                demand(&l, Some(400), 0),
                demand(&l, Some(0), 0),
            ],
        );
        assert_eq!(c[0].target, Some(2));
        assert_eq!(c[1].target, Some(1));
        assert_eq!((c[2].target, c[2].wanted), (None, None), "paused");
        // A wish below every layer still gets the smallest one.
        let c = allocate(None, 0, &[demand(&l, Some(90), 0)]);
        assert_eq!(c[0].target, Some(0));
    }

    #[test]
    fn a_thin_link_takes_lower_layers_and_the_most_important_first() {
        let l = simulcast(true);
        // 900 kbit/s: after 50 kbit/s of audio, two worst layers (300) then one upgrade to 360p.
        let c = allocate(
            Some(900_000),
            50_000,
            &[demand(&l, None, 0), demand(&l, None, 5)],
        );
        assert_eq!(c[1].target, Some(1), "the pinned one is upgraded");
        assert_eq!(c[0].target, Some(0));
        assert!(c[0].constrained && c[1].constrained);
        assert_eq!(c[0].wanted, Some(2), "what dynacast keeps encoded");
    }

    #[test]
    fn under_severe_congestion_video_pauses_lowest_priority_first() {
        let l = simulcast(true);
        let c = allocate(
            Some(250_000),
            50_000,
            &[demand(&l, None, 0), demand(&l, None, 1)],
        );
        assert_eq!(c[1].target, Some(0));
        assert_eq!(c[0].target, None);
        assert!(c[0].constrained);
    }

    #[test]
    fn layers_not_arriving_are_not_chosen_but_stay_wanted() {
        let mut l = simulcast(true);
        l[2].live = false; // paused by dynacast
        let c = allocate(None, 0, &[demand(&l, None, 0)]);
        assert_eq!((c[0].target, c[0].wanted), (Some(1), Some(2)));
        // Nothing arrives yet: wait for the smallest.
        let l = simulcast(false);
        let c = allocate(Some(10_000_000), 0, &[demand(&l, None, 0)]);
        assert_eq!(c[0].target, Some(0));
    }

    #[test]
    fn an_upgrade_needs_headroom_and_holding_a_layer_does_not() {
        let l = simulcast(true);
        // Exactly enough for 360p: not taken from 180p...
        let mut d = demand(&l, None, 0);
        d.current = Some(0);
        assert_eq!(allocate(Some(500_000), 0, &[d])[0].target, Some(0));
        // ...but kept when it is what the slot has.
        d.current = Some(1);
        assert_eq!(allocate(Some(500_000), 0, &[d])[0].target, Some(1));
        assert_eq!(
            allocate(Some(620_000), 0, &[demand(&l, None, 0)])[0].target,
            Some(1)
        );
    }

    #[test]
    fn unknown_heights_are_guessed_from_a_known_one() {
        let mut l = simulcast(true);
        l[1].height = None;
        l[2] = LayerInfo {
            live: false,
            height: None,
            bitrate: 1_500_000,
        };
        // Only the 180p layer's height is known: the others count as 360p and 720p.
        let c = allocate(None, 0, &[demand(&l, Some(200), 0)]);
        assert_eq!((c[0].target, c[0].wanted), (Some(0), Some(0)));
        let c = allocate(None, 0, &[demand(&l, Some(400), 0)]);
        assert_eq!((c[0].target, c[0].wanted), (Some(1), Some(1)));
    }

    #[test]
    fn layers_are_ranked_by_height_then_bitrate_then_order() {
        let mut l = simulcast(true);
        l.reverse(); // a publisher listing them high to low
        assert_eq!(ranked(&l), [2, 1, 0]);
        for x in &mut l {
            x.height = None;
        }
        assert_eq!(ranked(&l), [2, 1, 0], "by bitrate");
        l[0].live = false;
        assert_eq!(ranked(&l), [0, 1, 2], "in order");
    }
}

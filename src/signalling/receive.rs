//! The client's `receive` field: what it wants on each of its receive slots (the largest
//! picture height, 0 = paused; pinned). Validated here; the engine chooses layers from it.

use std::collections::HashMap;

use serde_json::Value;

use crate::media::SlotWish;

/// At most this many entries (the rules refuse more).
pub const MAX_ENTRIES: usize = 128;
/// The largest `maxHeight` (8K).
pub const MAX_HEIGHT: u64 = 4320;

/// Reads `receive` (absent or null: no wishes). The error names the offending entry.
pub fn parse_receive(value: &Value) -> Result<HashMap<String, SlotWish>, String> {
    let map = match value {
        Value::Null => return Ok(HashMap::new()),
        Value::Object(map) => map,
        _ => return Err("receive must be a map from slot mid to {maxHeight, pinned}".into()),
    };
    if map.len() > MAX_ENTRIES {
        return Err(format!(
            "receive has {} entries; at most {MAX_ENTRIES}",
            map.len()
        ));
    }
    let mut out = HashMap::with_capacity(map.len());
    for (mid, entry) in map {
        if mid.is_empty() || mid.len() > 32 {
            return Err(format!(
                "receive: {mid:?} is not a slot mid (1–32 characters)"
            ));
        }
        let Value::Object(entry) = entry else {
            return Err(format!("receive.{mid} must be a map {{maxHeight, pinned}}"));
        };
        let mut wish = SlotWish::default();
        for (key, v) in entry {
            match key.as_str() {
                "maxHeight" => match v.as_u64() {
                    Some(h) if h <= MAX_HEIGHT => wish.max_height = Some(h as u16),
                    _ => {
                        return Err(format!(
                            "receive.{mid}.maxHeight must be an integer from 0 (paused) to {MAX_HEIGHT}"
                        ));
                    }
                },
                "pinned" => match v.as_bool() {
                    Some(p) => wish.pinned = p,
                    None => return Err(format!("receive.{mid}.pinned must be a boolean")),
                },
                other => return Err(format!("receive.{mid}: unknown field {other:?}")),
            }
        }
        out.insert(mid.clone(), wish);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_heights_pauses_and_pins() {
        let w = parse_receive(
            &json!({"3": {"maxHeight": 360}, "4": {"maxHeight": 0, "pinned": true}, "5": {}}),
        )
        .unwrap();
        assert_eq!(w["3"].max_height, Some(360));
        assert_eq!((w["4"].max_height, w["4"].pinned), (Some(0), true));
        assert_eq!(w["5"], SlotWish::default());
        assert!(parse_receive(&Value::Null).unwrap().is_empty());
    }

    #[test]
    fn refuses_what_is_not_a_wish_and_says_where() {
        for (bad, says) in [
            (json!([1]), "must be a map"),
            (json!({"3": 360}), "receive.3 must be a map"),
            (json!({"3": {"maxHeight": -1}}), "receive.3.maxHeight"),
            (json!({"3": {"maxHeight": 4321}}), "receive.3.maxHeight"),
            (json!({"3": {"maxHeight": 1.5}}), "receive.3.maxHeight"),
            (json!({"3": {"pinned": "yes"}}), "receive.3.pinned"),
            (json!({"3": {"width": 1}}), "unknown field"),
            (json!({"": {}}), "not a slot mid"),
        ] {
            let e = parse_receive(&bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
        let many: serde_json::Map<String, Value> =
            (0..129).map(|i| (i.to_string(), json!({}))).collect();
        assert!(
            parse_receive(&Value::Object(many))
                .unwrap_err()
                .contains("129")
        );
    }
}

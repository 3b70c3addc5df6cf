//! Which monitor writes: the holder of a lease document, renewed in a transaction. Pure.

/// The lease as stored (`fleet/monitorLease`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Lease {
    pub holder: String,
    pub expires_at_ms: i64,
    /// +1 whenever the holder changes: a fencing token for the writes of a leader.
    pub term: i64,
}

/// The lease `me` should write now, or `None` when another monitor holds a live one.
pub fn next(current: Option<&Lease>, me: &str, now_ms: i64, duration_ms: i64) -> Option<Lease> {
    match current {
        Some(l) if l.holder != me && l.expires_at_ms > now_ms => None,
        Some(l) if l.holder == me => Some(Lease {
            expires_at_ms: now_ms + duration_ms,
            ..l.clone()
        }),
        Some(l) => Some(Lease {
            holder: me.into(),
            expires_at_ms: now_ms + duration_ms,
            term: l.term + 1,
        }),
        None => Some(Lease {
            holder: me.into(),
            expires_at_ms: now_ms + duration_ms,
            term: 1,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_table() {
        let held = |holder: &str, until: i64, term: i64| Lease {
            holder: holder.into(),
            expires_at_ms: until,
            term,
        };
        let cases: [(&str, Option<Lease>, i64, Option<Lease>); 5] = [
            ("nobody holds it", None, 0, Some(held("me", 5000, 1))),
            (
                "I renew mine",
                Some(held("me", 3000, 4)),
                1000,
                Some(held("me", 6000, 4)),
            ),
            (
                "another's live lease",
                Some(held("other", 3000, 4)),
                2999,
                None,
            ),
            (
                "another's expired lease",
                Some(held("other", 3000, 4)),
                3000,
                Some(held("me", 8000, 5)),
            ),
            (
                "my expired lease is still mine",
                Some(held("me", 1000, 2)),
                9000,
                Some(held("me", 14000, 2)),
            ),
        ];
        for (name, current, now, want) in cases {
            assert_eq!(next(current.as_ref(), "me", now, 5000), want, "{name}");
        }
    }
}

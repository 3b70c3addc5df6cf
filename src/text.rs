//! Text that one user writes and others see (display names, room and camera names, chat): what
//! a character is and which ones are refused.
//!
//! Lengths count UTF-16 code units: what Firestore rules' `string.size()` and JavaScript's
//! `length` count (measured against the emulator: 32 "👍" pass a 64 limit, 33 do not), so a
//! browser, the rules and the server agree; a character outside the Basic Multilingual Plane
//! (most emoji) counts twice. Refused everywhere such text is accepted:
//! control characters (general category Cc: U+0000–U+001F, U+007F–U+009F; NUL among them, which
//! PostgreSQL cannot store), line and paragraph separators (U+2028, U+2029), the byte-order
//! mark (U+FEFF), and bidirectional formatting characters (U+061C, U+200E, U+200F,
//! U+202A–U+202E, U+2066–U+2069), with which a name can make other text in someone else's
//! interface appear reversed or displaced. Joiners and variation selectors (emoji) are allowed.
//! `firestore.rules` applies the same definition (its `labelChars` regular expression).

/// The same rule as a JSON Schema (ECMA-262) pattern, for the sidecar's OpenAPI document.
pub const LABEL_PATTERN: &str = "^[^\\u0000-\\u001F\\u007F-\\u009F\\u061C\\u200E\\u200F\\u2028-\\u202E\\u2066-\\u2069\\uFEFF]+$";

/// Why a label was refused; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    #[error("`{field}` is empty")]
    Empty { field: &'static str },
    #[error("`{field}` is longer than {max} characters")]
    TooLong { field: &'static str, max: usize },
    #[error(
        "`{field}` contains the character U+{code:04X}; control, line-separator, byte-order-mark and bidirectional formatting characters are not allowed"
    )]
    Forbidden { field: &'static str, code: u32 },
}

/// True for the characters no label may contain.
pub fn is_forbidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'
                | '\u{200E}'
                | '\u{200F}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
                | '\u{FEFF}'
        )
}

/// The label trimmed of surrounding white space, if it is 1–`max` allowed characters.
pub fn label(field: &'static str, text: &str, max: usize) -> Result<String, LabelError> {
    if let Some(c) = text.chars().find(|c| is_forbidden(*c)) {
        return Err(LabelError::Forbidden {
            field,
            code: c as u32,
        });
    }
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(LabelError::Empty { field });
    }
    if utf16_len(trimmed) > max {
        return Err(LabelError::TooLong { field, max });
    }
    Ok(trimmed.to_owned())
}

/// The length as Firestore rules and JavaScript count it.
pub fn utf16_len(text: &str) -> usize {
    text.encode_utf16().count()
}

/// Longer free text (chat messages, camera URLs' labels): only the forbidden characters are
/// checked, except line breaks and tabs, which such text may contain.
pub fn free_text_ok(text: &str) -> bool {
    !text
        .chars()
        .any(|c| is_forbidden(c) && !matches!(c, '\n' | '\t'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_names_in_any_script_with_emoji() {
        for name in ["Ada", "Zoë", "محمد", "李小龙", "👩🏽‍💻 dev", "a.b-c_d"] {
            assert_eq!(label("displayName", name, 64).as_deref(), Ok(name));
        }
        assert_eq!(label("displayName", "  Ada ", 64).as_deref(), Ok("Ada"));
    }

    #[test]
    fn counts_utf16_units_as_the_rules_do() {
        assert!(label("displayName", &"é".repeat(64), 64).is_ok());
        assert!(matches!(
            label("displayName", &"é".repeat(65), 64),
            Err(LabelError::TooLong { max: 64, .. })
        ));
        assert!(label("displayName", &"👍".repeat(32), 64).is_ok());
        assert!(label("displayName", &"👍".repeat(33), 64).is_err());
    }

    #[test]
    fn refuses_control_and_bidi_characters() {
        for (text, code) in [
            ("Ad\u{0}a", 0),
            ("bell\u{7}", 7),
            ("admin\u{202E}nimda", 0x202E),
            ("\u{FEFF}Ada", 0xFEFF),
            ("a\u{2066}b", 0x2066),
            ("x\u{200F}", 0x200F),
            ("line\u{2028}break", 0x2028),
            ("c1\u{85}", 0x85),
            ("new\nline", 10),
        ] {
            match label("displayName", text, 64) {
                Err(LabelError::Forbidden { code: c, .. }) => assert_eq!(c, code, "{text:?}"),
                other => panic!("{text:?}: {other:?}"),
            }
        }
        assert_eq!(
            label("name", "   ", 64),
            Err(LabelError::Empty { field: "name" })
        );
    }

    #[test]
    fn the_schema_pattern_names_the_same_characters() {
        for c in [
            '\u{0}', '\u{1F}', '\u{7F}', '\u{9F}', '\u{61C}', '\u{200E}', '\u{200F}', '\u{2028}',
            '\u{202E}', '\u{2066}', '\u{2069}', '\u{FEFF}',
        ] {
            assert!(is_forbidden(c), "{c:?}");
            assert!(
                LABEL_PATTERN.contains(&format!("\\u{:04X}", c as u32)),
                "{c:?}"
            );
        }
    }

    #[test]
    fn free_text_keeps_line_breaks_but_not_overrides() {
        assert!(free_text_ok("line one\nline two\tend"));
        assert!(!free_text_ok("evil\u{202E}txt"));
        assert!(!free_text_ok("nul\u{0}"));
    }
}

//! What the camera API accepts (pure): RTSP URLs, credentials and names. Credentials written
//! into a URL (`rtsp://user:pass@host/…`) are taken out of it, percent-decoded; the URL that is
//! kept (and shown) has no userinfo. No message ever repeats a URL, a username or a password:
//! they name the field only.

use reqwest::Url;

use super::problem::Problem;

/// Longest URL accepted, in characters.
pub const MAX_URL: usize = 2048;
/// Longest username or password, in characters.
pub const MAX_CREDENTIAL: usize = 256;
/// Longest camera name (UTF-16 units, like every name: `crate::text`).
pub const MAX_NAME: usize = 80;

/// The URL as a JSON Schema pattern: the scheme, then no space, control character or fragment.
/// What a pattern cannot say (a host, a valid port) is checked by the URL parser.
pub const URL_PATTERN: &str = "^rtsps?://[^#\\u0000-\\u0020\\u007F-\\u009F]+$";
/// A username: no control character, no `:` (HTTP Basic, which RTSP uses, cannot carry one).
pub const USERNAME_PATTERN: &str = "^[^\\u0000-\\u001F\\u007F-\\u009F:]*$";
/// A password: no control character.
pub const PASSWORD_PATTERN: &str = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$";

/// A URL without userinfo, and the credentials it carried.
#[derive(Debug, PartialEq, Eq)]
pub struct ParsedUrl {
    pub url: String,
    /// Whether the URL carried userinfo (then it replaces both credentials).
    pub had_userinfo: bool,
    pub username: Option<String>,
    pub password: Option<String>,
}

/// An `rtsp://` or `rtsps://` URL with a host, at most [`MAX_URL`] characters, without
/// fragment, spaces or control characters.
pub fn url(text: &str) -> Result<ParsedUrl, Problem> {
    let bad = |why: &str| Problem::validation(format!("`url` {why}"));
    if text.chars().count() > MAX_URL {
        return Err(bad(&format!("is longer than {MAX_URL} characters")));
    }
    if !(text.starts_with("rtsp://") || text.starts_with("rtsps://")) {
        return Err(bad("must be an rtsp:// or rtsps:// URL"));
    }
    if text.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(bad("must not contain spaces or control characters"));
    }
    if text.contains('#') {
        return Err(bad("must not have a fragment (`#…`)"));
    }
    // The parser's messages are fixed phrases ("invalid port number"): they repeat no input.
    let mut parsed = Url::parse(text).map_err(|e| bad(&format!("is not a valid URL: {e}")))?;
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(bad("must name a host"));
    }
    let had_userinfo = !parsed.username().is_empty() || parsed.password().is_some();
    let decoded = |part: &str| {
        percent_decode(part)
            .ok_or_else(|| bad("carries credentials that are not UTF-8 once percent-decoded"))
    };
    let username = decoded(parsed.username())?;
    let password = parsed.password().map(decoded).transpose()?;
    let username = self::username(&username, "`username` (in `url`)")?;
    let password = password
        .map(|p| self::password(&p, "`password` (in `url`)"))
        .transpose()?
        .flatten();
    if had_userinfo && (parsed.set_username("").is_err() || parsed.set_password(None).is_err()) {
        return Err(bad("is not a valid URL"));
    }
    Ok(ParsedUrl {
        url: parsed.to_string(),
        had_userinfo,
        username,
        password,
    })
}

/// A username as given (`""` means none).
pub fn username(text: &str, field: &str) -> Result<Option<String>, Problem> {
    if text.chars().count() > MAX_CREDENTIAL {
        return Err(Problem::validation(format!(
            "{field} is longer than {MAX_CREDENTIAL} characters"
        )));
    }
    if text.chars().any(|c| c.is_control() || c == ':') {
        return Err(Problem::validation(format!(
            "{field} must not contain `:` or control characters"
        )));
    }
    Ok(Some(text.to_owned()).filter(|t| !t.is_empty()))
}

/// A password as given (`""` means none).
pub fn password(text: &str, field: &str) -> Result<Option<String>, Problem> {
    if text.chars().count() > MAX_CREDENTIAL {
        return Err(Problem::validation(format!(
            "{field} is longer than {MAX_CREDENTIAL} characters"
        )));
    }
    if text.chars().any(char::is_control) {
        return Err(Problem::validation(format!(
            "{field} must not contain control characters"
        )));
    }
    Ok(Some(text.to_owned()).filter(|t| !t.is_empty()))
}

/// A camera's name: 1–80 characters once trimmed, none of the forbidden ones (`crate::text`).
pub fn name(text: &str) -> Result<String, Problem> {
    crate::text::label("name", text, MAX_NAME).map_err(|e| Problem::validation(e.to_string()))
}

/// `%XX` sequences decoded (others kept as they are), if the result is UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h)? * 16 + hex(l)?) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(text: &str) -> String {
        let p = url(text).expect_err(text);
        assert_eq!(p.slug, "validation-failed");
        assert!(p.detail.contains("`url`"), "{}", p.detail);
        p.detail
    }

    #[test]
    fn credentials_leave_the_url_decoded() {
        let p = url("rtsp://ad%40min:p%3Ass%20w@cam.local:554/Streaming/101?x=1").unwrap();
        assert_eq!(p.url, "rtsp://cam.local:554/Streaming/101?x=1");
        assert!(p.had_userinfo);
        assert_eq!(p.username.as_deref(), Some("ad@min"));
        assert_eq!(p.password.as_deref(), Some("p:ss w"));
        let p = url("rtsps://viewer@[2001:db8::1]/live").unwrap();
        assert_eq!(p.url, "rtsps://[2001:db8::1]/live");
        assert_eq!((p.username.as_deref(), p.password), (Some("viewer"), None));
        let p = url("rtsp://10.0.0.7/h264").unwrap();
        assert_eq!(p.url, "rtsp://10.0.0.7/h264");
        assert!(!p.had_userinfo && p.username.is_none() && p.password.is_none());
        // A password alone (some cameras have no user name).
        let p = url("rtsp://:secret@cam/").unwrap();
        assert_eq!((p.username, p.password.as_deref()), (None, Some("secret")));
        assert_eq!(p.url, "rtsp://cam/");
    }

    #[test]
    fn bad_urls_are_refused_without_being_repeated() {
        for bad in [
            "http://x",
            "rtsp://",
            "rtsp:///path",
            "garbage",
            "",
            "RTSP://cam/",
            "rtsp://cam/a b",
            "rtsp://cam/\n",
            "rtsp://cam/#frag",
            "rtsp://cam:99999/",
            "rtsp://u:p@/x",
        ] {
            let detail = refused(bad);
            assert!(bad.len() < 8 || !detail.contains(bad), "{detail}");
        }
        let long = format!("rtsp://cam/{}", "a".repeat(MAX_URL));
        assert!(refused(&long).contains("longer than 2048"));
        assert!(url(&format!("rtsp://cam/{}", "a".repeat(MAX_URL - 11))).is_ok());
        let detail = refused("rtsp://hunter2:%FF%FE@cam/");
        assert!(!detail.contains("hunter2"), "{detail}");
        let detail = refused(&format!("rtsp://u:{}@cam/", "s".repeat(300)));
        assert!(detail.contains("`password` (in `url`)") && !detail.contains("sss"));
    }

    #[test]
    fn credentials_and_names_are_bounded() {
        assert_eq!(username("", "`username`").unwrap(), None);
        assert_eq!(
            username("admin", "`username`").unwrap().as_deref(),
            Some("admin")
        );
        assert!(username("a:b", "`username`").is_err());
        assert!(username("a\r\nX-Evil: 1", "`username`").is_err());
        assert!(username(&"u".repeat(257), "`username`").is_err());
        assert!(password(&"p".repeat(256), "`password`").unwrap().is_some());
        assert!(password(&"p".repeat(257), "`password`").is_err());
        assert!(password("a:b c\"", "`password`").unwrap().is_some());
        assert!(password("\u{0}", "`password`").is_err());
        assert_eq!(name("  Lobby  ").unwrap(), "Lobby");
        assert!(name("   ").is_err());
        assert!(name(&"n".repeat(81)).is_err());
        assert!(name(&"n".repeat(80)).is_ok());
    }

    #[test]
    fn percent_decoding_keeps_what_is_not_an_escape() {
        assert_eq!(percent_decode("a%41%zz%4").as_deref(), Some("aA%zz%4"));
        assert_eq!(percent_decode("%C3%A9").as_deref(), Some("é"));
        assert_eq!(percent_decode("%FF"), None);
    }
}

//! Searches: forcing each engine's safe mode on the request, and reading what
//! was searched for. Pure functions of the URL's parts.

use haven_policy::safesearch::{Engine, SafeSearch, YoutubeMode};

/// What a request asks of a search engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Search {
    /// The engine.
    pub engine: Engine,
    /// The words searched for, decoded; `None` for pages that are not a
    /// search, and for search-as-you-type suggestions (fragments of words).
    pub terms: Option<String>,
}

/// Recognises a search engine request and the terms in it.
pub fn read(host: &str, path: &str, query: Option<&str>) -> Option<Search> {
    let engine = Engine::of_host(host)?;
    let param = match engine {
        // Suggestions while typing have their own paths; they are not searches.
        _ if is_suggestion(engine, path) => None,
        Engine::Google if path == "/search" => Some("q"),
        Engine::Bing if path == "/search" || path == "/images/search" || path == "/videos/search" => Some("q"),
        Engine::DuckDuckGo if path == "/" || path == "/html" || path == "/html/" || path == "/lite" => Some("q"),
        Engine::Youtube if path == "/results" => Some("search_query"),
        _ => None,
    };
    let terms = param.and_then(|p| query.and_then(|q| get(q, p))).map(|t| t.split_whitespace().collect::<Vec<_>>().join(" "));
    Some(Search { engine, terms: terms.filter(|t| !t.is_empty()) })
}

fn is_suggestion(engine: Engine, path: &str) -> bool {
    match engine {
        Engine::Google | Engine::Youtube => path.starts_with("/complete/"),
        Engine::Bing => path.starts_with("/AS/") || path.starts_with("/as/") || path.starts_with("/osjson"),
        Engine::DuckDuckGo => path.starts_with("/ac"),
    }
}

/// The query with the engine's safe mode forced, if it needs changing.
/// (YouTube's mode is a request header: see [`youtube_header`].)
pub fn enforce(engine: Engine, safe: SafeSearch, query: Option<&str>) -> Option<String> {
    if !safe.search {
        return None;
    }
    let (key, value) = match engine {
        Engine::Google => ("safe", "active"),
        Engine::Bing => ("adlt", "strict"),
        Engine::DuckDuckGo => ("kp", "1"),
        Engine::Youtube => return None,
    };
    let q = query.unwrap_or_default();
    let mut parts: Vec<String> = q.split('&').filter(|p| !p.is_empty() && p.split('=').next() != Some(key)).map(str::to_string).collect();
    parts.push(format!("{key}={value}"));
    let out = parts.join("&");
    (out != q).then_some(out)
}

/// The `YouTube-Restrict` header value for a group, if any.
pub fn youtube_header(safe: SafeSearch) -> Option<&'static str> {
    match safe.youtube {
        YoutubeMode::Strict => Some("Strict"),
        YoutubeMode::Moderate => Some("Moderate"),
        YoutubeMode::Off => None,
    }
}

/// One query parameter, percent- and plus-decoded.
pub fn get(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(k) == name).then(|| decode(v))
    })
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_from_each_engine_but_not_from_suggestions() {
        let t = |h, p, q| read(h, p, Some(q)).and_then(|s| s.terms);
        assert_eq!(t("www.google.co.uk", "/search", "q=how+to+tie+a+noose&hl=en").as_deref(), Some("how to tie a noose"));
        assert_eq!(t("www.bing.com", "/search", "q=caf%C3%A9%20near%20me").as_deref(), Some("café near me"));
        assert_eq!(t("duckduckgo.com", "/", "q=maths%2Bhelp").as_deref(), Some("maths+help"));
        assert_eq!(t("www.youtube.com", "/results", "search_query=minecraft+songs").as_deref(), Some("minecraft songs"));
        assert_eq!(t("www.google.com", "/complete/search", "q=how+to+ti"), None);
        assert_eq!(t("www.bing.com", "/AS/Suggestions", "qry=kil"), None);
        assert_eq!(t("duckduckgo.com", "/ac/", "q=kil"), None);
        assert!(read("example.com", "/search", Some("q=x")).is_none());
        assert_eq!(t("www.google.com", "/search", "q=+++"), None);
        assert_eq!(t("www.google.com", "/search", "q=%zz%"), Some("%zz%".into()), "bad escapes stay as typed");
    }

    #[test]
    fn safe_mode_is_forced_and_replaces_what_the_user_set() {
        let on = SafeSearch::default();
        assert_eq!(enforce(Engine::Google, on, Some("q=x&safe=off")).as_deref(), Some("q=x&safe=active"));
        assert_eq!(enforce(Engine::Google, on, Some("q=x&safe=active")), None, "already safe: untouched");
        assert_eq!(enforce(Engine::Bing, on, Some("q=x")).as_deref(), Some("q=x&adlt=strict"));
        assert_eq!(enforce(Engine::DuckDuckGo, on, None).as_deref(), Some("kp=1"));
        assert_eq!(enforce(Engine::Youtube, on, Some("search_query=x")), None);
        assert_eq!(youtube_header(on), Some("Strict"));
        let off = SafeSearch { search: false, youtube: YoutubeMode::Off };
        assert_eq!(enforce(Engine::Google, off, Some("q=x&safe=off")), None);
        assert_eq!(youtube_header(off), None);
    }
}

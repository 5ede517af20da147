//! Safe search: which hosts are search engines, and the name each one offers
//! for its filtered mode (answered by CNAME in DNS, by redirect in the proxy).

use serde::{Deserialize, Serialize};

/// How YouTube is restricted for a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum YoutubeMode {
    /// Restricted Mode, strict (`restrict.youtube.com`).
    #[default]
    Strict,
    /// Restricted Mode, moderate (`restrictmoderate.youtube.com`).
    Moderate,
    /// YouTube unrestricted.
    Off,
}

/// A group's safe-search settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SafeSearch {
    /// Force Google, Bing and DuckDuckGo safe search.
    pub search: bool,
    /// YouTube Restricted Mode.
    pub youtube: YoutubeMode,
}

impl Default for SafeSearch {
    fn default() -> Self {
        Self { search: true, youtube: YoutubeMode::Strict }
    }
}

/// The search engine a host belongs to, if it is one that offers safe search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Engine {
    /// Google search, every country domain.
    Google,
    /// Microsoft Bing.
    Bing,
    /// YouTube, including its API hosts.
    Youtube,
    /// DuckDuckGo.
    DuckDuckGo,
}

impl Engine {
    /// Recognises the hosts each engine serves search from.
    pub fn of_host(host: &str) -> Option<Self> {
        let h = host.strip_prefix("www.").unwrap_or(host);
        match h {
            "youtube.com" | "m.youtube.com" | "youtubei.googleapis.com" | "youtube.googleapis.com" | "youtube-nocookie.com" => Some(Self::Youtube),
            "bing.com" => Some(Self::Bing),
            "duckduckgo.com" => Some(Self::DuckDuckGo),
            _ if is_google_search(h) => Some(Self::Google),
            _ => None,
        }
    }

    /// The name that serves the engine's filtered mode, or `None` when the
    /// settings leave this engine unrestricted.
    pub fn safe_host(self, settings: SafeSearch) -> Option<&'static str> {
        match self {
            Self::Youtube => match settings.youtube {
                YoutubeMode::Strict => Some("restrict.youtube.com"),
                YoutubeMode::Moderate => Some("restrictmoderate.youtube.com"),
                YoutubeMode::Off => None,
            },
            _ if !settings.search => None,
            Self::Google => Some("forcesafesearch.google.com"),
            Self::Bing => Some("strict.bing.com"),
            Self::DuckDuckGo => Some("safe.duckduckgo.com"),
        }
    }
}

/// `google.com`, `google.co.uk`, `google.de`: the label `google` followed by a
/// country or generic suffix of one or two short labels.
fn is_google_search(h: &str) -> bool {
    let Some(rest) = h.strip_prefix("google.") else { return false };
    let labels: Vec<&str> = rest.split('.').collect();
    match labels.as_slice() {
        [tld] => tld.len() >= 2 && tld.len() <= 3,
        [sld, cc] => matches!(*sld, "co" | "com") && cc.len() == 2,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engines_and_targets() {
        let s = SafeSearch::default();
        assert_eq!(Engine::of_host("www.google.co.uk"), Some(Engine::Google));
        assert_eq!(Engine::of_host("www.google.com"), Some(Engine::Google));
        assert_eq!(Engine::of_host("mail.google.com"), None);
        assert_eq!(Engine::of_host("google.example.com"), None);
        assert_eq!(Engine::of_host("www.bing.com").and_then(|e| e.safe_host(s)), Some("strict.bing.com"));
        let moderate = SafeSearch { youtube: YoutubeMode::Moderate, ..s };
        assert_eq!(Engine::Youtube.safe_host(moderate), Some("restrictmoderate.youtube.com"));
        let off = SafeSearch { search: false, youtube: YoutubeMode::Off };
        assert_eq!(Engine::Google.safe_host(off), None);
    }
}

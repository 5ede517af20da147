//! The pages the proxy itself serves: the block page (what was blocked, why in
//! words a child understands, a reference, and two buttons), the thank-you
//! after a button, and short error pages for origin failures.

use haven_policy::{Decision, PolicySet, Rule, Subject};

/// The reserved host the block page's buttons post to. `.invalid` never
/// resolves (RFC 6761), so nothing leaves the school if the proxy is bypassed.
pub const BUTTON_HOST: &str = "block.haven.invalid";

/// Why something was blocked, in words for a child.
pub fn reason_for_child(set: &PolicySet, who: &Subject, d: &Decision) -> String {
    let cats: Vec<String> = d.decisive.iter().map(|c| c.title().to_lowercase()).collect();
    let about = if cats.is_empty() { String::new() } else { format!(" about {}", cats.join(" and ")) };
    match &d.rule {
        Rule::IllegalContent => "This page is on a list of pages that are against the law to show, so it is blocked for everyone.".into(),
        Rule::Restriction(i) => format!("Your school has turned this off for now: {}.", set.restrictions[*i].reason.trim_end_matches('.')),
        Rule::Window(_) => "This is not available at this time of day. Try again later, or ask a member of staff.".into(),
        Rule::BlockedCategory => {
            format!("Your school blocks sites{about} for {}, to help keep you safe online.", set.groups[who.group].name)
        }
        Rule::Entry { .. } => "Your school has blocked this site.".into(),
        Rule::Uncategorised => "Your school only lets you visit sites it knows about. This one is new to it.".into(),
        Rule::Model => format!("Haven's filter thinks this new site is{about}, which your school blocks, to help keep you safe online."),
        Rule::Allowance(_) | Rule::AllowedCategory | Rule::Default => "This was blocked by your school's filter.".into(),
    }
}

/// Escapes text for HTML.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem;color:#1b1b1b;line-height:1.5}\
h1{font-size:1.6rem}.what{background:#f3f3f3;padding:.6rem .8rem;border-radius:6px;word-break:break-all}\
.ref{color:#555}form{display:inline}button{font-size:1rem;padding:.6rem 1rem;margin:.3rem .5rem .3rem 0;border-radius:6px;border:1px solid #888;background:#fff;cursor:pointer}\
button.worry{border-color:#a40000;color:#a40000}textarea{width:100%;min-height:4rem;font:inherit}";

/// What the block page shows.
pub struct Blocked<'a> {
    /// The address asked for.
    pub what: &'a str,
    /// Category titles.
    pub categories: Vec<&'static str>,
    /// The reason, for a child.
    pub reason: String,
    /// The reference number.
    pub reference: &'a str,
}

/// The block page.
pub fn block_page(b: &Blocked<'_>) -> String {
    let cats = if b.categories.is_empty() { String::new() } else { format!("<p>Category: <strong>{}</strong></p>", esc(&b.categories.join(", "))) };
    let form = |path: &str, label: &str, class: &str, prompt: &str| {
        format!(
            "<form method=\"post\" action=\"http://{BUTTON_HOST}/{path}\"><input type=\"hidden\" name=\"ref\" value=\"{r}\">\
             <p><label>{prompt}<br><textarea name=\"note\" maxlength=\"1000\"></textarea></label></p>\
             <button class=\"{class}\" type=\"submit\">{label}</button></form>",
            r = esc(b.reference)
        )
    };
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <title>This page is blocked</title><style>{STYLE}</style></head><body>\
         <h1>This page is blocked</h1><p class=\"what\">{what}</p>{cats}<p>{reason}</p>\
         <p class=\"ref\">Reference: <strong>{r}</strong>. If you talk to a teacher about this, tell them this number.</p>\
         <details><summary>I think this should be allowed</summary>{allow}</details>\
         <details><summary>I saw something worrying</summary>{worry}</details>\
         </body></html>",
        what = esc(b.what),
        reason = esc(&b.reason),
        r = esc(b.reference),
        allow = form("review", "I think this should be allowed", "", "Why do you need it? (optional)"),
        worry = form("worry", "I saw something worrying", "worry", "What did you see? You can leave this empty. (optional)"),
    )
}

/// The IWF's standard wording for a page on its list, word for word as it
/// asks its members to show it.
pub const IWF_DENIED: &str = "Access has been denied by your internet access provider because this page may contain indecent images of children \
     as identified by the Internet Watch Foundation.";

/// The block page for a page on the IWF's list (category `csam`): the IWF's
/// standard wording and its usual pointers (what the list is, appeals, help
/// for someone worried about their own behaviour), instead of Haven's reason
/// for a child. It never shows the address, and has no report buttons: a
/// report would put the address back in front of staff.
pub fn iwf_block_page(reference: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <title>Access denied</title><style>{STYLE}</style></head><body>\
         <h1>Access denied</h1><p>{IWF_DENIED}</p>\
         <p>Deliberate attempts to access this or related material may result in you committing a criminal offence.</p>\
         <p>The IWF list holds only web pages with child sexual abuse content, and is updated twice a day. \
         To find out more, visit <a href=\"https://www.iwf.org.uk/\">www.iwf.org.uk</a>. If you think this page has been blocked in error, \
         you can appeal through the IWF's content assessment appeals process on its website.</p>\
         <p>If you are worried about your own online behaviour, Stop It Now offers confidential help: \
         <a href=\"https://www.stopitnow.org.uk/\">www.stopitnow.org.uk</a>, 0808 1000 900.</p>\
         <p>If something you saw online has upset you, talk to a teacher you trust, or call Childline free on 0800 1111.</p>\
         <p class=\"ref\">Reference: <strong>{r}</strong></p></body></html>",
        r = esc(reference)
    )
}

/// The page after a button was pressed.
pub fn thanks_page(kind: &str, reference: &str) -> String {
    let said = if kind == "worry" {
        "Thank you for telling us. A member of staff who keeps pupils safe will look at this. \
         If you feel unsafe right now, talk to a teacher you trust, or call Childline free on 0800 1111."
    } else {
        "Thank you. A member of staff will look at whether this site should be allowed."
    };
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Thank you</title><style>{STYLE}</style></head>\
         <body><h1>Thank you</h1><p>{said}</p><p class=\"ref\">Reference: <strong>{}</strong></p></body></html>",
        esc(reference)
    )
}

/// A short page for something that went wrong between the proxy and the site.
pub fn error_page(title: &str, detail: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title><style>{STYLE}</style></head>\
         <body><h1>{t}</h1><p>{d}</p><p class=\"ref\">Haven web filter</p></body></html>",
        t = esc(title),
        d = esc(detail)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_block_page_escapes_what_it_shows_and_has_both_buttons() {
        let p = block_page(&Blocked {
            what: "http://x.example/<script>alert(1)</script>",
            categories: vec!["Gambling"],
            reason: "Your school blocks sites about gambling.".into(),
            reference: "HVN-ABCD-2345",
        });
        assert!(!p.contains("<script>alert"));
        assert!(p.contains("&lt;script&gt;"));
        assert!(p.contains("I think this should be allowed") && p.contains("I saw something worrying"));
        assert!(p.contains("HVN-ABCD-2345") && p.contains("Gambling"));
        assert!(p.contains(&format!("http://{BUTTON_HOST}/review")) && p.contains(&format!("http://{BUTTON_HOST}/worry")));
    }

    #[test]
    fn the_iwf_block_page_has_the_iwfs_wording_and_no_address_or_buttons() {
        let p = iwf_block_page("HVN-ABCD-2345");
        assert!(p.contains(
            "Access has been denied by your internet access provider because this page may contain indecent images of children \
             as identified by the Internet Watch Foundation."
        ));
        assert!(p.contains("www.iwf.org.uk") && p.contains("appeal") && p.contains("Stop It Now") && p.contains("HVN-ABCD-2345"));
        assert!(!p.contains("<form") && !p.contains("<button") && !p.contains(BUTTON_HOST), "no report buttons");
    }
}

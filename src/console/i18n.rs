//! The console's words in Russian and English, from one catalogue (`assets/catalogue.toml`,
//! compiled in): templates and handlers ask for a message by its id, so no page text lives in
//! code. Each id holds both languages side by side, so a message cannot exist in one alone.

use std::collections::HashMap;
use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    Ru,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Ru => "ru",
        }
    }

    pub fn parse(s: &str) -> Option<Lang> {
        match s {
            "en" => Some(Lang::En),
            "ru" => Some(Lang::Ru),
            _ => None,
        }
    }

    /// The first of the browser's `Accept-Language` ranges the console speaks; English else.
    pub fn from_accept(header: &str) -> Lang {
        let mut best: Option<(f32, Lang)> = None;
        for part in header.split(',') {
            let mut it = part.split(';');
            let tag = it.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = it
                .find_map(|p| {
                    p.trim()
                        .strip_prefix("q=")
                        .and_then(|v| v.parse::<f32>().ok())
                })
                .unwrap_or(1.0);
            let primary = tag.split('-').next().unwrap_or("");
            if let Some(l) = Lang::parse(primary) {
                if best.is_none_or(|(bq, _)| q > bq) {
                    best = Some((q, l));
                }
            }
        }
        best.map_or(Lang::En, |(_, l)| l)
    }
}

pub const CATALOGUE: &str = include_str!("../../assets/catalogue.toml");

/// One message in both languages.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Message {
    en: String,
    ru: String,
}

type Table = HashMap<String, Message>;

fn table() -> &'static Table {
    static T: OnceLock<Table> = OnceLock::new();
    T.get_or_init(|| match toml::from_str::<Table>(CATALOGUE) {
        Ok(t) => t,
        Err(e) => {
            // A unit test keeps this from shipping; ids then show as themselves.
            tracing::error!("console catalogue: {e}");
            Table::new()
        }
    })
}

/// The messages of one language, as templates use them: `{{ t.s("nav.keys") }}`.
#[derive(Debug, Clone, Copy)]
pub struct Tr {
    pub lang: Lang,
}

impl Tr {
    /// The message `id`; the id itself if the catalogue has none (a test forbids that).
    pub fn s<'a>(&self, id: &'a str) -> &'a str {
        match table().get(id) {
            Some(m) => match self.lang {
                Lang::En => m.en.as_str(),
                Lang::Ru => m.ru.as_str(),
            },
            None => id,
        }
    }

    /// The message `id` with `{0}`, `{1}`, … replaced by `args` (data, never markup: the
    /// templates escape the result).
    pub fn f(&self, id: &str, args: &[&dyn std::fmt::Display]) -> String {
        let mut out = self.s(id).to_owned();
        for (i, a) in args.iter().enumerate() {
            out = out.replace(&format!("{{{i}}}"), &a.to_string());
        }
        out
    }

    /// A field's label: the catalogue's `field.<Name>`, else the API's own name.
    pub fn field<'a>(&self, name: &'a str) -> std::borrow::Cow<'a, str> {
        let id = format!("field.{name}");
        match table().get(&id) {
            Some(_) => self.s(&id).to_owned().into(),
            None => name.into(),
        }
    }

    pub fn code(&self) -> &'static str {
        self.lang.code()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `t.s("…")`, `t.f("…"` and `s("…")` id in `text`.
    fn ids(text: &str) -> Vec<String> {
        let mut out = Vec::new();
        for pat in [".s(\"", ".f(\""] {
            for piece in text.split(pat).skip(1) {
                out.push(piece.split('"').next().unwrap_or("").to_owned());
            }
        }
        out
    }

    fn files(dir: &str) -> Vec<(String, String)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        std::fs::read_dir(&dir)
            .expect("dir")
            .map(|f| {
                let p = f.expect("entry").path();
                (
                    p.display().to_string(),
                    std::fs::read_to_string(&p).expect("read"),
                )
            })
            .collect()
    }

    #[test]
    fn every_message_is_in_both_languages_and_every_id_used_exists() {
        let t = table();
        assert!(t.len() > 100, "the catalogue did not load");
        for (id, m) in t {
            assert!(
                !m.en.trim().is_empty() && !m.ru.trim().is_empty(),
                "{id}: empty"
            );
            // Placeholders the same in both.
            for i in 0..4 {
                let p = format!("{{{i}}}");
                assert_eq!(m.en.contains(&p), m.ru.contains(&p), "{id}: {p}");
            }
        }
        let prefixes: std::collections::HashSet<&str> =
            t.keys().filter_map(|k| k.split('.').next()).collect();
        let mut used = 0;
        for (name, text) in files("templates")
            .into_iter()
            .chain(files("src/console"))
            .filter(|(name, _)| !name.ends_with("i18n.rs"))
        {
            let mut found = ids(&text);
            if name.ends_with(".rs") {
                // Ids handed around as literals ("settings.bad_user") are checked too.
                found.extend(
                    text.split('"')
                        .skip(1)
                        .step_by(2)
                        .filter(|l| {
                            l.split_once('.').is_some_and(|(p, rest)| {
                                prefixes.contains(p)
                                    && !rest.is_empty()
                                    && rest != "html"
                                    && rest.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                            })
                        })
                        .map(str::to_owned),
                );
            }
            for id in found {
                assert!(t.contains_key(&id), "{name}: {id} is not in the catalogue");
                used += 1;
            }
        }
        assert!(used > 200, "{used}");
    }

    /// The words a template shows outside its tags and expressions: none but the brand and
    /// the language switch's RU / EN, so every word comes from the catalogue.
    #[test]
    fn templates_hold_no_words_of_their_own() {
        for (name, text) in files("templates") {
            let mut rest = String::new();
            let mut s = text.as_str();
            // Drop {{ … }}, {% … %}, {# … #} and <…>.
            while let Some(i) = s.find(['{', '<']) {
                rest.push_str(&s[..i]);
                let close = match &s[i..] {
                    t if t.starts_with("{{") => "}}",
                    t if t.starts_with("{%") => "%}",
                    t if t.starts_with("{#") => "#}",
                    t if t.starts_with('<') => ">",
                    _ => {
                        rest.push_str(&s[i..=i]);
                        s = &s[i + 1..];
                        continue;
                    }
                };
                match s[i..].find(close) {
                    Some(j) => s = &s[i + j + close.len()..],
                    None => panic!("{name}: unclosed {close}"),
                }
                rest.push(' ');
            }
            rest.push_str(s);
            for word in rest.split_whitespace() {
                let word = word.trim_matches(|c: char| !c.is_alphanumeric());
                assert!(
                    word.is_empty() || ["keybridge", "RU", "EN"].contains(&word),
                    "{name}: {word:?} is not from the catalogue"
                );
            }
        }
    }

    /// No inline script, handler or style anywhere: the Content-Security-Policy would block
    /// them, and the console must work under it.
    #[test]
    fn templates_have_no_inline_script_or_style() {
        for (name, text) in files("templates") {
            let lower = text.to_ascii_lowercase();
            assert!(!lower.contains("style="), "{name}: a style attribute");
            assert!(!lower.contains("<style"), "{name}: a style element");
            assert!(!lower.contains("javascript:"), "{name}: a javascript: URL");
            for piece in lower.split("<script").skip(1) {
                let tag = piece.split('>').next().unwrap_or("");
                assert!(tag.contains("src="), "{name}: an inline script");
            }
            for word in lower.split(|c: char| c.is_whitespace() || c == '<') {
                assert!(
                    !(word.starts_with("on") && word.contains('=')),
                    "{name}: an inline handler {word}"
                );
            }
        }
    }

    /// Every form that changes something carries the session's CSRF token (the login form
    /// its own), and nothing in the pages or assets points outside the console: it works
    /// air-gapped.
    #[test]
    fn every_post_form_has_a_token_and_nothing_is_fetched_from_elsewhere() {
        let mut forms = 0;
        for (name, text) in files("templates") {
            for piece in text.split("<form").skip(1) {
                let form = piece.split("</form>").next().unwrap_or("");
                let head = form.split('>').next().unwrap_or("");
                if head.contains("method=\"post\"") {
                    forms += 1;
                    assert!(
                        form.contains("name=\"csrf\" value=\"{{ c.csrf }}\"")
                            || form.contains("name=\"csrf\" value=\"{{ csrf }}\""),
                        "{name}: a form without its CSRF token: {head}"
                    );
                }
            }
        }
        assert!(forms >= 10, "{forms}");
        for (name, text) in files("templates").into_iter().chain(files("assets")) {
            // An SVG names its namespace by URL; nothing is fetched from it.
            let text = text.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
            for scheme in ["http://", "https://", "//fonts", "@import"] {
                assert!(!text.contains(scheme), "{name}: {scheme}");
            }
        }
    }

    #[test]
    fn placeholders_are_filled() {
        let t = Tr { lang: Lang::En };
        let s = t.f("login.locked", &[&42]);
        assert!(s.contains("42") && !s.contains("{0}"), "{s}");
        assert_eq!(t.s("no.such.id"), "no.such.id");
    }

    #[test]
    fn accept_language_picks_the_preferred_spoken_language() {
        assert_eq!(Lang::from_accept("ru-RU,ru;q=0.9,en;q=0.8"), Lang::Ru);
        assert_eq!(Lang::from_accept("de,en;q=0.5,ru;q=0.4"), Lang::En);
        assert_eq!(Lang::from_accept("de"), Lang::En);
        assert_eq!(Lang::from_accept("en;q=0.2, RU;q=0.7"), Lang::Ru);
        assert_eq!(Lang::from_accept(";;,,q=x"), Lang::En);
    }
}

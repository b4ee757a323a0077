//! The console's words in Russian and English, from one catalogue (`assets/catalogue.toml`,
//! compiled in): templates ask for a message by its id, so no page text lives in code.

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

type Table = HashMap<String, String>;

fn tables() -> &'static (Table, Table) {
    static T: OnceLock<(Table, Table)> = OnceLock::new();
    T.get_or_init(|| {
        #[derive(serde::Deserialize)]
        struct Cat {
            en: Table,
            ru: Table,
        }
        match toml::from_str::<Cat>(CATALOGUE) {
            Ok(c) => (c.en, c.ru),
            Err(e) => {
                // A unit test keeps this from shipping; ids then show as themselves.
                tracing::error!("console catalogue: {e}");
                (Table::new(), Table::new())
            }
        }
    })
}

/// The messages of one language, as templates use them: `{{ t.s("nav.keys") }}`.
#[derive(Debug, Clone, Copy)]
pub struct Tr {
    pub lang: Lang,
}

impl Tr {
    pub fn s<'a>(&self, id: &'a str) -> &'a str {
        let (en, ru) = tables();
        let t = match self.lang {
            Lang::En => en,
            Lang::Ru => ru,
        };
        match t.get(id) {
            Some(v) => v.as_str(),
            None => id,
        }
    }

    pub fn code(&self) -> &'static str {
        self.lang.code()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_languages_have_every_message_and_templates_use_only_known_ones() {
        let (en, ru) = tables();
        assert!(!en.is_empty());
        let mut a: Vec<_> = en.keys().collect();
        let mut b: Vec<_> = ru.keys().collect();
        a.sort();
        b.sort();
        assert_eq!(a, b, "the catalogue's languages differ");
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/templates");
        let mut used = 0;
        for f in std::fs::read_dir(dir).expect("templates") {
            let text = std::fs::read_to_string(f.expect("entry").path()).expect("template");
            for piece in text.split("t.s(\"").skip(1) {
                let id = piece.split('"').next().unwrap_or("");
                assert!(en.contains_key(id), "{id} is not in the catalogue");
                used += 1;
            }
        }
        assert!(used > 20);
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

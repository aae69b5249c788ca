//! `redact`: masks sensitive data in JSON messages before they leave a pipeline.
//!
//! Config:
//!
//! | key | meaning | default |
//! |---|---|---|
//! | `fields` | dotted paths whose values are replaced by the mask, e.g. `card,customer.phone` | — |
//! | `emails` | mask e-mail addresses in every string (`jane@example.com` → `j***@example.com`) | `false` |
//! | `cards` | mask card numbers (13–19 digits, spaces or dashes allowed) in every string, keeping the last 4 | `false` |
//! | `mask` | the replacement for `fields` | `***` |
//!
//! Non-JSON payloads are masked as text when `emails` or `cards` is on; `fields` needs JSON.

use regex::Regex;
use weir_sdk::json::{Value, get_path_mut};
use weir_sdk::prelude::*;

/// The configured redactor.
pub struct Redact {
    fields: Vec<String>,
    mask: String,
    emails: Option<Regex>,
    cards: Option<Regex>,
}

impl Map for Redact {
    type In = Message;
    type Out = Output;

    fn init(config: &Config) -> Result<Self, Error> {
        config.reject_unknown(&["fields", "emails", "cards", "mask"])?;
        let fields: Vec<String> = config
            .get("fields")
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        let emails = config.parse_or("emails", false)?;
        let cards = config.parse_or("cards", false)?;
        if fields.is_empty() && !emails && !cards {
            return Err(Error::fatal("nothing to redact: set `fields`, `emails=true` or `cards=true`"));
        }
        Ok(Redact {
            fields,
            mask: config.get("mask").unwrap_or("***").to_string(),
            emails: emails.then(|| {
                Regex::new(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+\.[A-Za-z]{2,})").expect("valid regex")
            }),
            cards: cards.then(|| Regex::new(r"\b(?:\d[ -]?){9,15}(\d{4})\b").expect("valid regex")),
        })
    }

    fn map(&mut self, msg: Message) -> Result<Output, Error> {
        let value = match msg.json::<Value>() {
            Ok(mut doc) => {
                for path in &self.fields {
                    if let Some(v) = get_path_mut(&mut doc, path) {
                        *v = Value::String(self.mask.clone());
                    }
                }
                self.scrub(&mut doc);
                weir_sdk::serde_json::to_vec(&doc)?
            }
            Err(_) if self.fields.is_empty() => self.text(msg.text()?).into_bytes(),
            Err(e) => return Err(e),
        };
        Ok(Output::replacing(&msg, value))
    }
}

impl Redact {
    /// Mask e-mails and card numbers in every string of the document.
    fn scrub(&self, v: &mut Value) {
        match v {
            Value::String(s) => *s = self.text(s),
            Value::Array(a) => a.iter_mut().for_each(|x| self.scrub(x)),
            Value::Object(m) => m.values_mut().for_each(|x| self.scrub(x)),
            _ => {}
        }
    }

    fn text(&self, s: &str) -> String {
        let mut out = s.to_string();
        if let Some(re) = &self.emails {
            out = re.replace_all(&out, "$1***@$2").into_owned();
        }
        if let Some(re) = &self.cards {
            out = re.replace_all(&out, "**** **** **** $1").into_owned();
        }
        out
    }
}

weir_sdk::export!(Redact as map);

#[cfg(test)]
mod tests {
    use super::*;

    fn run(pairs: &[(&str, &str)], doc: &str) -> String {
        let mut r = Redact::init(&Config::from_pairs(pairs.iter().copied())).unwrap();
        String::from_utf8(r.map(Message::new(doc)).unwrap().value).unwrap()
    }

    #[test]
    fn masks_fields_emails_and_cards() {
        let out = run(
            &[("fields", "customer.phone"), ("emails", "true"), ("cards", "true")],
            r#"{"customer":{"phone":"555-1234","email":"jane@example.com"},"note":"card 4111 1111 1111 1234 on file"}"#,
        );
        assert_eq!(
            out,
            r#"{"customer":{"email":"j***@example.com","phone":"***"},"note":"card **** **** **** 1234 on file"}"#
        );
        assert_eq!(run(&[("emails", "true")], "mail bob@corp.io now"), "mail b***@corp.io now");
    }

    #[test]
    fn needs_something_to_do() {
        let e = Redact::init(&Config::default()).err().unwrap();
        assert!(e.message().contains("nothing to redact"), "{e}");
    }
}

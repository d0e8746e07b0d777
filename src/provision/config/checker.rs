//! The problem collector every table's parser reports into, and the small readers of one
//! key (a ranged integer, one of a set of words, a port's MAC) that all tables share.

use std::ops::Range;
use std::path::Path;
use std::str::FromStr;

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use super::{Mac, Problem};
use crate::model::location::Location;
use crate::model::suggest::edit_distance;

/// Collects problems against one file's text.
pub(super) struct Checker<'a> {
    pub(super) path: &'a Path,
    pub(super) text: &'a str,
    pub(super) problems: Vec<Problem>,
}

impl Checker<'_> {
    pub(super) fn at(&self, span: &Range<usize>) -> Location {
        Location::at(self.path, self.text, span.start)
    }

    pub(super) fn report(
        &mut self,
        span: &Range<usize>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.problems.push(Problem {
            at: self.at(span),
            message: message.into(),
            hint: hint.into(),
        });
    }

    /// Deserializes one table into `T`, reporting unknown keys and wrongly typed values one by
    /// one (serde alone stops at the first) and leaving those fields unset.
    pub(super) fn table<T: DeserializeOwned + Default>(
        &mut self,
        table: &Spanned<DeTable<'_>>,
        what: &str,
        header: &str,
        keys: &[(&str, &str)],
    ) -> T {
        let mut good = DeTable::new();
        for (key, value) in table.get_ref().iter() {
            let name = key.get_ref().as_ref();
            let Some((_, takes)) = keys.iter().find(|(k, _)| *k == name) else {
                self.unknown_key(key.span(), what, name, header, keys);
                continue;
            };
            let mut one = DeTable::new();
            one.insert(key.clone(), value.clone());
            match deserialize::<T>(one, table.span()) {
                Ok(_) => {
                    good.insert(key.clone(), value.clone());
                }
                Err(e) => {
                    let span = e.span().unwrap_or(value.span());
                    self.report(
                        &span,
                        format!("{what}: {name}: {}", type_message(e.message())),
                        format!("{name} takes {takes}"),
                    );
                }
            }
        }
        deserialize::<T>(good, table.span()).unwrap_or_else(|e| {
            // Each key passed alone; a failure together is a bug here, but still bad input.
            let span = e.span().unwrap_or(table.span());
            self.report(
                &span,
                format!("{what}: {}", e.message().trim()),
                "see examples/host.toml",
            );
            T::default()
        })
    }

    pub(super) fn unknown_key(
        &mut self,
        span: Range<usize>,
        what: &str,
        key: &str,
        header: &str,
        keys: &[(&str, &str)],
    ) {
        let valid: Vec<&str> = keys.iter().map(|(k, _)| *k).collect();
        let mut hint = String::new();
        if let Some(near) = valid
            .iter()
            .find(|k| key.len() > 2 && edit_distance(k, key) <= 2)
        {
            hint = format!("did you mean {near}? ");
        }
        hint += &format!("valid keys in {header}: {}", valid.join(", "));
        self.report(&span, format!("{what}: unknown key {key}"), hint);
    }

    /// The `[[name]]` tables of a top-level key; anything else there is reported.
    pub(super) fn tables<'i>(
        &mut self,
        key: &Spanned<toml::de::DeString<'i>>,
        value: &Spanned<DeValue<'i>>,
    ) -> Vec<Spanned<DeTable<'i>>> {
        let name = key.get_ref().as_ref();
        let hint = format!("write each one as a [[{name}]] table (double brackets)");
        match value.get_ref() {
            DeValue::Array(items) => {
                let mut out = Vec::new();
                for item in items.iter() {
                    match item.get_ref() {
                        DeValue::Table(t) => out.push(Spanned::new(item.span(), t.clone())),
                        other => self.report(
                            &item.span(),
                            format!("{name}: expected a table, found {}", other.type_str()),
                            hint.clone(),
                        ),
                    }
                }
                out
            }
            DeValue::Table(_) => {
                self.report(
                    &key.span(),
                    format!("[{name}] is a single table, but {name} is a list"),
                    hint,
                );
                Vec::new()
            }
            other => {
                self.report(
                    &value.span(),
                    format!(
                        "{name}: expected [[{name}]] tables, found {}",
                        other.type_str()
                    ),
                    hint,
                );
                Vec::new()
            }
        }
    }
}

fn deserialize<T: DeserializeOwned>(
    table: DeTable<'_>,
    span: Range<usize>,
) -> Result<T, toml::de::Error> {
    T::deserialize(ValueDeserializer::from(Spanned::new(
        span,
        DeValue::Table(table),
    )))
}

/// Rewords serde's "invalid type: string \"x\", expected i64" as "expected an integer, found
/// string \"x\"": what was wanted first, in words rather than Rust types.
fn type_message(raw: &str) -> String {
    let raw = raw.trim();
    let rest = raw
        .strip_prefix("invalid type: ")
        .or_else(|| raw.strip_prefix("invalid value: "));
    let Some((found, expected)) = rest.and_then(|r| r.split_once(", expected ")) else {
        return raw.to_string();
    };
    let expected = match expected {
        "i64" | "u64" | "i32" | "u32" => "a whole number",
        "a boolean" => "true or false",
        "a string" => "a string in quotes",
        other => other,
    };
    format!("expected {expected}, found {found}")
}

/// Levenshtein distance, for "did you mean" on short keys.
pub(super) const MAC_HINT: &str = "write six two-digit hex bytes separated by colons, e.g. \"02:00:00:00:01:01\" (02 as the first byte marks a locally administered address)";

/// A MAC a port can own: well-formed, unicast, not zero. Reports and returns None otherwise.
pub(super) fn port_mac(ck: &mut Checker<'_>, what: &str, mac: &Spanned<String>) -> Option<Mac> {
    let text = mac.get_ref();
    let span = mac.span();
    let Ok(m) = Mac::from_str(text) else {
        ck.report(
            &span,
            format!("{what}: mac {text:?} is not a MAC address"),
            MAC_HINT,
        );
        return None;
    };
    if m.is_broadcast() {
        ck.report(
            &span,
            format!("{what}: mac {m} is the broadcast address"),
            "a port's own address must be unicast: the first byte must be even, e.g. 02",
        );
    } else if m.is_multicast() {
        ck.report(
            &span,
            format!("{what}: mac {m} is a multicast address"),
            format!(
                "a port's own address must be unicast: the first byte must be even ({:02x} is odd), e.g. 02",
                m.0[0]
            ),
        );
    } else if m.is_zero() {
        ck.report(
            &span,
            format!("{what}: mac {m} is all zeros"),
            "the kernel reads 00:00:00:00:00:00 as \"no address\" and the VF makes one up; give each vPort its own unicast MAC",
        );
    } else {
        return Some(m);
    }
    None
}

/// An integer key within `range`, reported with `hint` when outside it.
pub(super) fn ranged<T: TryFrom<i64>>(
    ck: &mut Checker<'_>,
    what: &str,
    key: &str,
    value: &Option<Spanned<i64>>,
    range: (i64, i64),
    hint: &str,
) -> Option<T> {
    let v = value.as_ref()?;
    let n = *v.get_ref();
    let converted = T::try_from(n).ok();
    if n < range.0 || n > range.1 || converted.is_none() {
        ck.report(
            &v.span(),
            format!("{what}: {key} {n} is outside {}..{}", range.0, range.1),
            hint,
        );
        return None;
    }
    converted
}

/// One of a closed set of words, reported with the choices when it is not.
pub(super) fn word<T: Copy>(
    ck: &mut Checker<'_>,
    what: &str,
    key: &str,
    value: &Option<Spanned<String>>,
    choices: &[(&str, T)],
    hint: &str,
) -> Option<T> {
    let v = value.as_ref()?;
    let found = choices
        .iter()
        .find(|(w, _)| w.eq_ignore_ascii_case(v.get_ref()));
    if found.is_none() {
        let list: Vec<String> = choices.iter().map(|(w, _)| format!("{w:?}")).collect();
        ck.report(
            &v.span(),
            format!(
                "{what}: {key} {:?} is not one of {}",
                v.get_ref(),
                list.join(", ")
            ),
            hint,
        );
    }
    found.map(|(_, t)| *t)
}

/// A key of a table, by its text.
pub(super) fn lookup<'t, 'i>(
    table: &'t Spanned<DeTable<'i>>,
    key: &str,
) -> Option<&'t Spanned<DeValue<'i>>> {
    table
        .get_ref()
        .iter()
        .find(|(k, _)| k.get_ref().as_ref() == key)
        .map(|(_, v)| v)
}

//! Single-value extended properties in query options (docs/graph.md section 12), as documented
//! in "Get singleValueLegacyExtendedProperty"
//! (<https://learn.microsoft.com/graph/api/singlevaluelegacyextendedproperty-get>):
//!
//! - `$filter=singleValueExtendedProperties/Any(ep: ep/id eq '{id}' and ep/value eq '{value}')`
//!   finds the messages that have the property; for string values the value may also be
//!   compared with `ne`, `contains(ep/value, '…')` or `startswith(ep/value, '…')`. "Filtering
//!   the string name (`Name`) in the **id** of an extended property is case-sensitive.
//!   Filtering the **value** property of an extended property is case-insensitive."
//! - `$expand=singleValueExtendedProperties($filter=id eq '{id}')` returns a message with that
//!   property, "currently the only way to get the singleValueLegacyExtendedProperty object".
//!
//! Numeric comparisons (`cast(ep/value, Edm.Int32) eq 12`) are documented too; the sandbox
//! stores string values only and refuses them with 400.

use super::error::GraphError;
use crate::state::{Message, extended_ids_match};

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Word(String),
    Str(String),
    Open,
    Close,
    Comma,
    Colon,
    Equals,
}

/// Splits an OData expression into words, `'…'` literals (`''` is a quote) and punctuation.
/// `None` for an unterminated literal.
fn tokens(s: &str) -> Option<Vec<Tok>> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut Vec<Tok>| {
        if !word.is_empty() {
            out.push(Tok::Word(std::mem::take(word)));
        }
    };
    while let Some(c) = chars.next() {
        let punct = match c {
            '(' => Some(Tok::Open),
            ')' => Some(Tok::Close),
            ',' => Some(Tok::Comma),
            ':' => Some(Tok::Colon),
            '=' => Some(Tok::Equals),
            _ => None,
        };
        if let Some(p) = punct {
            flush(&mut word, &mut out);
            out.push(p);
        } else if c == '\'' {
            flush(&mut word, &mut out);
            let mut literal = String::new();
            loop {
                match chars.next()? {
                    '\'' if chars.peek() == Some(&'\'') => {
                        chars.next();
                        literal.push('\'');
                    }
                    '\'' => break,
                    other => literal.push(other),
                }
            }
            out.push(Tok::Str(literal));
        } else if c.is_whitespace() {
            flush(&mut word, &mut out);
        } else {
            word.push(c);
        }
    }
    flush(&mut word, &mut out);
    Some(out)
}

fn is_word(t: Option<&Tok>, w: &str) -> bool {
    matches!(t, Some(Tok::Word(x)) if x.eq_ignore_ascii_case(w))
}

/// How a filter compares the property's value (case-insensitively).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ValueOp {
    Eq,
    Ne,
    Contains,
    StartsWith,
}

/// One `singleValueExtendedProperties/Any(…)` clause of a message `$filter`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AnyClause {
    id: String,
    op: ValueOp,
    /// Lowercased.
    value: String,
}

impl AnyClause {
    /// Whether `s` is such a clause (so the caller parses it with [`AnyClause::parse`]).
    pub(crate) fn starts(s: &str) -> bool {
        let prefix = "singleValueExtendedProperties/";
        s.trim_start()
            .get(..prefix.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
    }

    /// Parses `singleValueExtendedProperties/Any(ep: ep/id eq '…' and <value test>)`, the lambda
    /// variable named as the client likes; `None` if it is not of the documented form.
    pub(crate) fn parse(s: &str) -> Option<Self> {
        let toks = tokens(s)?;
        let [
            Tok::Word(any),
            Tok::Open,
            Tok::Word(var),
            Tok::Colon,
            body @ ..,
            Tok::Close,
        ] = toks.as_slice()
        else {
            return None;
        };
        if !any.eq_ignore_ascii_case("singleValueExtendedProperties/any") {
            return None;
        }
        let split = body.iter().position(|t| is_word(Some(t), "and"))?;
        let (left, right) = (body.get(..split)?, body.get(split + 1..)?);
        let (id, test) = match id_test(var, left) {
            Some(id) => (id, value_test(var, right)?),
            None => (id_test(var, right)?, value_test(var, left)?),
        };
        Some(Self {
            id,
            op: test.0,
            value: test.1.to_lowercase(),
        })
    }

    pub(crate) fn matches(&self, m: &Message) -> bool {
        m.extended_property(&self.id).is_some_and(|v| {
            let v = v.to_lowercase();
            match self.op {
                ValueOp::Eq => v == self.value,
                ValueOp::Ne => v != self.value,
                ValueOp::Contains => v.contains(&self.value),
                ValueOp::StartsWith => v.starts_with(&self.value),
            }
        })
    }
}

/// `ep/id eq '…'` → the id.
fn id_test(var: &str, toks: &[Tok]) -> Option<String> {
    match toks {
        [Tok::Word(path), Tok::Word(eq), Tok::Str(id)]
            if path.eq_ignore_ascii_case(&format!("{var}/id")) && eq.eq_ignore_ascii_case("eq") =>
        {
            Some(id.clone())
        }
        _ => None,
    }
}

/// `ep/value eq|ne '…'`, `contains(ep/value, '…')` or `startswith(ep/value, '…')`.
fn value_test(var: &str, toks: &[Tok]) -> Option<(ValueOp, String)> {
    let value_path = format!("{var}/value");
    match toks {
        [Tok::Word(path), Tok::Word(op), Tok::Str(v)] if path.eq_ignore_ascii_case(&value_path) => {
            let op = match op.to_ascii_lowercase().as_str() {
                "eq" => ValueOp::Eq,
                "ne" => ValueOp::Ne,
                _ => return None,
            };
            Some((op, v.clone()))
        }
        [
            Tok::Word(function),
            Tok::Open,
            Tok::Word(path),
            Tok::Comma,
            Tok::Str(v),
            Tok::Close,
        ] if path.eq_ignore_ascii_case(&value_path) => {
            let op = match function.to_ascii_lowercase().as_str() {
                "contains" => ValueOp::Contains,
                "startswith" => ValueOp::StartsWith,
                _ => return None,
            };
            Some((op, v.clone()))
        }
        _ => None,
    }
}

/// `$expand=singleValueExtendedProperties($filter=id eq '…' [or id eq '…']…)`: the ids asked
/// for. `Ok(None)` without `$expand`; 400 for any other expansion (the sandbox serves no other)
/// and for `singleValueExtendedProperties` without a filter on `id` (the docs give no other way:
/// "You cannot use the REST API to get all the extended properties of a specific instance in
/// one call", <https://learn.microsoft.com/graph/api/resources/extended-properties-overview>).
pub(crate) fn expand(raw: Option<&str>) -> Result<Option<Vec<String>>, GraphError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let invalid = || {
        GraphError::bad_request(format!(
            "The sandbox supports $expand=singleValueExtendedProperties($filter=id eq '...') only, not '{raw}'."
        ))
    };
    let toks = tokens(raw).ok_or_else(invalid)?;
    let [
        Tok::Word(nav),
        Tok::Open,
        Tok::Word(filter),
        Tok::Equals,
        rest @ ..,
        Tok::Close,
    ] = toks.as_slice()
    else {
        return Err(invalid());
    };
    if !nav.eq_ignore_ascii_case("singleValueExtendedProperties")
        || !filter.eq_ignore_ascii_case("$filter")
    {
        return Err(invalid());
    }
    let mut ids = Vec::new();
    for clause in rest.split(|t| is_word(Some(t), "or")) {
        match clause {
            [Tok::Word(path), Tok::Word(eq), Tok::Str(id)]
                if path.eq_ignore_ascii_case("id") && eq.eq_ignore_ascii_case("eq") =>
            {
                ids.push(id.clone());
            }
            _ => return Err(invalid()),
        }
    }
    Ok(Some(ids))
}

/// The message's properties among `ids`, as `singleValueExtendedProperties` shows them.
pub(crate) fn expanded(m: &Message, ids: &[String]) -> Vec<serde_json::Value> {
    m.extended
        .iter()
        .filter(|p| ids.iter().any(|id| extended_ids_match(&p.id, id)))
        .map(|p| serde_json::json!({"id": p.id, "value": p.value}))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "String {00020329-0000-0000-C000-000000000046} Name MailroomIdempotencyKey";

    #[test]
    fn any_clause_in_the_documented_forms() {
        let c = AnyClause::parse(&format!(
            "singleValueExtendedProperties/Any(ep: ep/id eq '{ID}' and ep/value eq 'ABC')"
        ))
        .unwrap();
        assert_eq!(
            (c.id.as_str(), c.op, c.value.as_str()),
            (ID, ValueOp::Eq, "abc")
        );
        let c = AnyClause::parse(&format!(
            "singleValueExtendedProperties/any(x:x/Id eq '{ID}' and contains(x/Value, 'it''s'))"
        ))
        .unwrap();
        assert_eq!((c.op, c.value.as_str()), (ValueOp::Contains, "it's"));
        assert!(
            AnyClause::parse(&format!(
                "singleValueExtendedProperties/Any(ep: ep/id eq '{ID}' and cast(ep/value, Edm.Int32) eq 12)"
            ))
            .is_none()
        );
        assert!(
            AnyClause::parse(&format!(
                "singleValueExtendedProperties/Any(ep: ep/id eq '{ID}')"
            ))
            .is_none()
        );
    }

    #[test]
    fn expand_takes_ids_only() {
        let ids = expand(Some(&format!(
            "singleValueExtendedProperties($filter=id eq '{ID}' or id eq 'String 0x007D')"
        )))
        .unwrap()
        .unwrap();
        assert_eq!(ids, [ID, "String 0x007D"]);
        assert!(expand(Some("singleValueExtendedProperties")).is_err());
        assert!(expand(Some("attachments")).is_err());
        assert_eq!(expand(None).unwrap(), None);
    }

    #[test]
    fn names_are_case_sensitive_types_and_guids_are_not() {
        let lower = "string {00020329-0000-0000-c000-000000000046} name MailroomIdempotencyKey";
        assert!(extended_ids_match(ID, lower));
        assert!(!extended_ids_match(
            ID,
            "String {00020329-0000-0000-C000-000000000046} Name mailroomidempotencykey"
        ));
    }
}

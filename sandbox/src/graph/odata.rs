//! OData query options and `Prefer` preferences.

use axum::http::HeaderMap;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::error::GraphError;
use super::extprops::AnyClause;
use crate::state::Message;

/// Largest page Graph serves for mail (docs/graph.md section 2).
pub(crate) const MAX_PAGE: usize = 1000;
/// Graph's default page size for mail lists and delta.
pub(crate) const DEFAULT_PAGE: usize = 10;

/// Decoded query parameters, in order.
#[derive(Clone, Debug, Default)]
pub(crate) struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    pub(crate) fn parse(raw: Option<&str>) -> Self {
        let pairs = raw
            .map(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        Self { pairs }
    }

    /// A parameter by name; system query options are case-insensitive.
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    /// The query re-encoded with `key` set to `value` (replacing any previous value).
    pub(crate) fn with(&self, key: &str, value: &str) -> String {
        let mut out = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in &self.pairs {
            if !k.eq_ignore_ascii_case(key) {
                out.append_pair(k, v);
            }
        }
        out.append_pair(key, value);
        out.finish()
    }
}

/// `$top`: 1..=1000, else 400.
pub(crate) fn top(q: &Query) -> Result<usize, GraphError> {
    match q.get("$top") {
        None => Ok(DEFAULT_PAGE),
        Some(v) => match v.trim().parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
            _ => Err(GraphError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "ErrorInvalidUrlQuery",
                format!(
                    "The value '{v}' of the query option $top is invalid; it must be between 1 and {MAX_PAGE}."
                ),
            )),
        },
    }
}

/// `$skip`: a non-negative integer.
pub(crate) fn skip(q: &Query) -> Result<usize, GraphError> {
    match q.get("$skip") {
        None => Ok(0),
        Some(v) => v.trim().parse::<usize>().map_err(|_| {
            GraphError::bad_request(format!(
                "Invalid value '{v}' for query option $skip: expected a non-negative integer."
            ))
        }),
    }
}

/// `$select`: the requested properties mapped to their canonical names. With `strict`, an
/// unknown property is a 400 as on Graph; otherwise unknown ones are ignored.
pub(crate) fn select(
    q: &Query,
    known: &[&'static str],
    type_name: &str,
    strict: bool,
) -> Result<Option<Vec<&'static str>>, GraphError> {
    let Some(raw) = q.get("$select") else {
        return Ok(None);
    };
    parse_select(raw, known, type_name, strict).map(Some)
}

pub(crate) fn parse_select(
    raw: &str,
    known: &[&'static str],
    type_name: &str,
    strict: bool,
) -> Result<Vec<&'static str>, GraphError> {
    let mut out = Vec::new();
    for name in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match known.iter().find(|k| k.eq_ignore_ascii_case(name)) {
            Some(k) => out.push(*k),
            None if strict => {
                return Err(GraphError::new(
                    axum::http::StatusCode::BAD_REQUEST,
                    "RequestBroker--ParseUri",
                    format!("Could not find a property named '{name}' on type '{type_name}'."),
                ));
            }
            None => {}
        }
    }
    Ok(out)
}

/// Options the sandbox refuses rather than silently ignoring.
pub(crate) fn reject_unsupported(q: &Query, options: &[&str]) -> Result<(), GraphError> {
    for option in options {
        if q.get(option).is_some() {
            return Err(GraphError::bad_request(format!(
                "The query option '{option}' is not supported by the sandbox for this request."
            )));
        }
    }
    Ok(())
}

/// `$orderby` for messages: only `receivedDateTime [asc|desc]`.
pub(crate) fn order_descending(q: &Query) -> Result<bool, GraphError> {
    let Some(raw) = q.get("$orderby") else {
        // Graph's default order for messages is receivedDateTime desc.
        return Ok(true);
    };
    let mut words = raw.split_whitespace();
    let property = words.next().unwrap_or_default();
    let direction = words.next().unwrap_or("asc");
    if !property.eq_ignore_ascii_case("receivedDateTime") || words.next().is_some() {
        return Err(GraphError::bad_request(format!(
            "The sandbox supports $orderby=receivedDateTime [asc|desc] only, not '{raw}'."
        )));
    }
    match direction.to_ascii_lowercase().as_str() {
        "asc" => Ok(false),
        "desc" => Ok(true),
        _ => Err(GraphError::bad_request(format!(
            "Invalid sort direction '{direction}'."
        ))),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cmp {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

impl Cmp {
    fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "eq" => Some(Cmp::Eq),
            "ne" => Some(Cmp::Ne),
            "gt" => Some(Cmp::Gt),
            "ge" => Some(Cmp::Ge),
            "lt" => Some(Cmp::Lt),
            "le" => Some(Cmp::Le),
            _ => None,
        }
    }

    fn test<T: Ord>(self, a: &T, b: &T) -> bool {
        match self {
            Cmp::Eq => a == b,
            Cmp::Ne => a != b,
            Cmp::Gt => a > b,
            Cmp::Ge => a >= b,
            Cmp::Lt => a < b,
            Cmp::Le => a <= b,
        }
    }
}

#[derive(Clone, Debug)]
enum Clause {
    Received(Cmp, OffsetDateTime),
    IsRead(bool),
    HasAttachments(bool),
    /// `singleValueExtendedProperties/Any(…)` (see `extprops`).
    Extended(AnyClause),
}

/// Splits a `$filter` at the ` and `s outside literals and parentheses.
fn split_and(raw: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut quoted, mut start) = (0usize, false, 0usize);
    let bytes = raw.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes.get(i) {
            Some(b'\'') => quoted = !quoted,
            Some(b'(') if !quoted => depth += 1,
            Some(b')') if !quoted => depth = depth.saturating_sub(1),
            Some(b' ')
                if !quoted
                    && depth == 0
                    && raw
                        .get(i..i + 5)
                        .is_some_and(|w| w.eq_ignore_ascii_case(" and ")) =>
            {
                parts.push(raw.get(start..i).unwrap_or_default());
                start = i + 5;
                i += 5;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    parts.push(raw.get(start..).unwrap_or_default());
    parts
}

/// A message `$filter`: clauses joined by `and` over `receivedDateTime`, `isRead`,
/// `hasAttachments` and single-value extended properties.
#[derive(Clone, Debug, Default)]
pub(crate) struct MessageFilter {
    clauses: Vec<Clause>,
}

impl MessageFilter {
    pub(crate) fn parse(q: &Query) -> Result<Self, GraphError> {
        let Some(raw) = q.get("$filter") else {
            return Ok(Self::default());
        };
        let invalid = || {
            GraphError::bad_request(format!(
                "Invalid filter clause: the sandbox supports receivedDateTime comparisons, isRead/hasAttachments eq true|false and singleValueExtendedProperties/Any(ep: ep/id eq '...' and ep/value eq '...') joined by 'and', not '{raw}'."
            ))
        };
        let mut clauses = Vec::new();
        for part in split_and(raw) {
            if AnyClause::starts(part) {
                clauses.push(Clause::Extended(
                    AnyClause::parse(part).ok_or_else(invalid)?,
                ));
                continue;
            }
            let words: Vec<&str> = part.split_whitespace().collect();
            let [property, op, value] = words.as_slice() else {
                return Err(invalid());
            };
            let cmp = Cmp::parse(op).ok_or_else(invalid)?;
            let value = value.trim_matches('\'');
            let clause = if property.eq_ignore_ascii_case("receivedDateTime") {
                let t = OffsetDateTime::parse(value, &Rfc3339).map_err(|_| invalid())?;
                Clause::Received(cmp, t)
            } else {
                let b = match value {
                    "true" => true,
                    "false" => false,
                    _ => return Err(invalid()),
                };
                if cmp != Cmp::Eq {
                    return Err(invalid());
                }
                if property.eq_ignore_ascii_case("isRead") {
                    Clause::IsRead(b)
                } else if property.eq_ignore_ascii_case("hasAttachments") {
                    Clause::HasAttachments(b)
                } else {
                    return Err(invalid());
                }
            };
            clauses.push(clause);
        }
        Ok(Self { clauses })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.clauses.is_empty()
    }

    /// Graph's rule: properties in `$orderby` must come first in `$filter`, else
    /// `InefficientFilter` (docs/graph.md section 2).
    pub(crate) fn check_order(&self, q: &Query) -> Result<(), GraphError> {
        if q.get("$orderby").is_none() || self.is_empty() {
            return Ok(());
        }
        match self.clauses.first() {
            Some(Clause::Received(..)) => Ok(()),
            _ => Err(GraphError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "InefficientFilter",
                "The restriction or sort order is too complex for this operation.",
            )),
        }
    }

    pub(crate) fn matches(&self, m: &Message) -> bool {
        self.clauses.iter().all(|c| match c {
            Clause::Received(cmp, t) => cmp.test(&m.received, t),
            Clause::IsRead(b) => m.is_read == *b,
            Clause::HasAttachments(b) => m.has_attachments == *b,
            Clause::Extended(any) => any.matches(m),
        })
    }
}

/// `$filter=displayName eq 'X'` for folders (`''` escapes a quote), compared case-insensitively
/// as Exchange does.
pub(crate) fn folder_name_filter(q: &Query) -> Result<Option<String>, GraphError> {
    let Some(raw) = q.get("$filter") else {
        return Ok(None);
    };
    let invalid = || {
        GraphError::bad_request(format!(
            "Invalid filter clause: the sandbox supports displayName eq '...' only, not '{raw}'."
        ))
    };
    let s = raw.trim();
    let rest = s
        .get(..11)
        .filter(|p| p.eq_ignore_ascii_case("displayName"))
        .and_then(|_| s.get(11..))
        .ok_or_else(invalid)?;
    let rest = rest.trim_start();
    let rest = rest
        .get(..2)
        .filter(|p| p.eq_ignore_ascii_case("eq"))
        .and_then(|_| rest.get(2..))
        .ok_or_else(invalid)?
        .trim();
    let inner = rest
        .strip_prefix('\'')
        .and_then(|r| r.strip_suffix('\''))
        .ok_or_else(invalid)?;
    // Inside the literal a quote must be doubled.
    if inner.replace("''", "").contains('\'') {
        return Err(invalid());
    }
    Ok(Some(inner.replace("''", "'")))
}

/// Preferences from `Prefer` headers (several may share one header, comma-separated).
#[derive(Clone, Debug, Default)]
pub(crate) struct Prefs {
    /// `IdType="ImmutableId"` (docs/graph.md section 2).
    pub(crate) immutable_ids: bool,
    /// `odata.maxpagesize=N`.
    pub(crate) max_page_size: Option<usize>,
    /// `outlook.body-content-type="text"`.
    pub(crate) body_text: bool,
}

impl Prefs {
    pub(crate) fn parse(headers: &HeaderMap) -> Self {
        let mut prefs = Self::default();
        for value in headers.get_all("prefer") {
            let Ok(value) = value.to_str() else {
                continue;
            };
            for pref in value.split(',') {
                let (key, val) = pref.split_once('=').unwrap_or((pref, ""));
                let key = key.trim();
                let val = val.trim().trim_matches('"');
                if key.eq_ignore_ascii_case("IdType") {
                    prefs.immutable_ids = val.eq_ignore_ascii_case("ImmutableId");
                } else if key.eq_ignore_ascii_case("odata.maxpagesize") {
                    prefs.max_page_size = val.parse().ok();
                } else if key.eq_ignore_ascii_case("outlook.body-content-type") {
                    prefs.body_text = val.eq_ignore_ascii_case("text");
                }
            }
        }
        prefs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn prefer_header_with_several_preferences() {
        let mut h = HeaderMap::new();
        h.append(
            "prefer",
            HeaderValue::from_static("odata.maxpagesize=50, IdType=\"ImmutableId\""),
        );
        h.append(
            "prefer",
            HeaderValue::from_static("outlook.body-content-type=\"text\""),
        );
        let p = Prefs::parse(&h);
        assert!(p.immutable_ids && p.body_text);
        assert_eq!(p.max_page_size, Some(50));
    }

    #[test]
    fn folder_filter_unescapes_quotes() {
        let q = Query::parse(Some("%24filter=displayName%20eq%20%27Bob%27%27s%20mail%27"));
        assert_eq!(
            folder_name_filter(&q).unwrap().as_deref(),
            Some("Bob's mail")
        );
        let q = Query::parse(Some("$filter=displayName eq 'a'b'"));
        assert!(folder_name_filter(&q).is_err());
        let q = Query::parse(Some("$filter=startswith(displayName,'a')"));
        assert!(folder_name_filter(&q).is_err());
    }

    #[test]
    fn top_bounds() {
        assert_eq!(top(&Query::parse(Some("$top=1000"))).unwrap(), 1000);
        assert!(top(&Query::parse(Some("$top=1001"))).is_err());
        assert!(top(&Query::parse(Some("$top=x"))).is_err());
    }

    #[test]
    fn and_inside_a_lambda_or_a_literal_does_not_split() {
        let raw = "isRead eq false and singleValueExtendedProperties/Any(ep: ep/id eq 'a and b' and ep/value eq 'x') AND hasAttachments eq true";
        assert_eq!(
            split_and(raw),
            [
                "isRead eq false",
                "singleValueExtendedProperties/Any(ep: ep/id eq 'a and b' and ep/value eq 'x')",
                "hasAttachments eq true"
            ]
        );
        let q = Query::parse(Some(&format!("$filter={}", raw.replace(' ', "%20"))));
        assert_eq!(MessageFilter::parse(&q).unwrap().clauses.len(), 3);
    }

    #[test]
    fn message_filter_and_order_rule() {
        let q = Query::parse(Some(
            "$filter=isRead eq false and receivedDateTime ge 2025-01-01T00:00:00Z&$orderby=receivedDateTime desc",
        ));
        let f = MessageFilter::parse(&q).unwrap();
        assert_eq!(f.check_order(&q).unwrap_err().code, "InefficientFilter");
    }
}

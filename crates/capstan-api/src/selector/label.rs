//! Label selectors as Kubernetes 1.33 parses, matches and prints them
//! (`k8s.io/apimachinery/pkg/labels/selector.go`, `metav1.LabelSelectorAsSelector`).
//!
//! The string parser mirrors Kubernetes' hand-written lexer and recursive-descent parser rather
//! than a cleaner grammar, because clients depend on its exact acceptance (`x in (a,,b)` is valid,
//! `x in (,,)` is not) and its exact error texts.

use std::collections::BTreeSet;
use std::fmt;

use serde_json::{Map, Value};

use super::SelectorError;
use super::go_text;
use super::names::{is_qualified_name, is_valid_label_value};

/// How a requirement relates a label to its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    /// `key in (a,b)`, `In` in a `metav1.LabelSelector`: the label is set to one of the values.
    In,
    /// `key notin (a,b)`, `NotIn`: the label is unset or set to none of the values.
    NotIn,
    /// `key=a`, and every `matchLabels` entry.
    Equals,
    /// `key==a`: the same as `=`, kept apart only to print back as written.
    DoubleEquals,
    /// `key!=a`: the label is unset or set to another value.
    NotEquals,
    /// `key`, `Exists`: the label is set, to anything.
    Exists,
    /// `!key`, `DoesNotExist`: the label is unset.
    DoesNotExist,
    /// `key>1`: the label is set to an integer greater than the value.
    GreaterThan,
    /// `key<1`: the label is set to an integer less than the value.
    LessThan,
}

/// One condition on one label; a selector holds when all of its requirements hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    key: String,
    operator: Operator,
    /// As given: sorted and de-duplicated when parsed from a string, as written in a
    /// `metav1.LabelSelector` (Kubernetes keeps duplicates there and sorts only when printing).
    values: Vec<String>,
}

impl Requirement {
    /// Kubernetes' `NewRequirement`: checks the key, the number of values the operator needs,
    /// integer values for `>`/`<`, and every value; all failures are reported together.
    fn new(key: String, operator: Operator, values: Vec<String>) -> Result<Self, String> {
        let mut errors = Vec::new();
        if let Err(message) = is_qualified_name(&key) {
            errors.push(go_text::invalid("key", &go_text::quote(&key), &message));
        }
        let count_error = match operator {
            Operator::In | Operator::NotIn if values.is_empty() => {
                Some("for 'in', 'notin' operators, values set can't be empty")
            }
            Operator::Equals | Operator::DoubleEquals | Operator::NotEquals
                if values.len() != 1 =>
            {
                Some("exact-match compatibility requires one single value")
            }
            Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
                Some("values set must be empty for exists and does not exist")
            }
            Operator::GreaterThan | Operator::LessThan if values.len() != 1 => {
                Some("for 'Gt', 'Lt' operators, exactly one value is required")
            }
            _ => None,
        };
        if let Some(detail) = count_error {
            errors.push(go_text::invalid(
                "values",
                &go_text::string_slice(&values),
                detail,
            ));
        }
        if matches!(operator, Operator::GreaterThan | Operator::LessThan) {
            for (i, value) in values.iter().enumerate() {
                if parse_go_int(value).is_none() {
                    errors.push(go_text::invalid(
                        &format!("values[{i}]"),
                        &go_text::quote(value),
                        "for 'Gt', 'Lt' operators, the value must be an integer",
                    ));
                }
            }
        }
        for (i, value) in values.iter().enumerate() {
            if let Err(message) = is_valid_label_value(value) {
                errors.push(go_text::invalid(
                    &format!("values[{i}][{key}]"),
                    &go_text::quote(value),
                    &message,
                ));
            }
        }
        match go_text::aggregate(errors) {
            Some(message) => Err(message),
            None => Ok(Requirement {
                key,
                operator,
                values,
            }),
        }
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn operator(&self) -> Operator {
        self.operator
    }

    pub fn values(&self) -> &[String] {
        &self.values
    }

    /// Does the requirement hold for these labels? Only string label values count: anything
    /// else cannot pass validation, so it is treated as unset.
    pub fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        let value = labels
            .and_then(|labels| labels.get(&self.key))
            .and_then(Value::as_str);
        let listed = |v: &str| self.values.iter().any(|candidate| candidate == v);
        match self.operator {
            Operator::In | Operator::Equals | Operator::DoubleEquals => value.is_some_and(listed),
            Operator::NotIn | Operator::NotEquals => value.is_none_or(|v| !listed(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                // A label that is not an integer never compares, whatever the operator.
                let (Some(actual), [bound]) =
                    (value.and_then(parse_go_int), self.values.as_slice())
                else {
                    return false;
                };
                let Some(bound) = parse_go_int(bound) else {
                    return false;
                };
                if self.operator == Operator::GreaterThan {
                    actual > bound
                } else {
                    actual < bound
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    /// Kubernetes' `Requirement.String()`: values sorted (duplicates kept), `in`/`notin` lists in
    /// parentheses, `!` before a key that must be unset.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.operator == Operator::DoesNotExist {
            f.write_str("!")?;
        }
        f.write_str(&self.key)?;
        let separator = match self.operator {
            Operator::Exists | Operator::DoesNotExist => return Ok(()),
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::In => " in ",
            Operator::NotIn => " notin ",
            Operator::GreaterThan => ">",
            Operator::LessThan => "<",
        };
        f.write_str(separator)?;
        let set = matches!(self.operator, Operator::In | Operator::NotIn);
        if set {
            f.write_str("(")?;
        }
        let mut sorted: Vec<&str> = self.values.iter().map(String::as_str).collect();
        sorted.sort_unstable();
        f.write_str(&sorted.join(","))?;
        if set {
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// A set of label requirements, all of which must hold. The default (no requirements) matches
/// every object; [`LabelSelector::nothing`] matches none.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {
    /// Sorted by key, as Kubernetes sorts them, so that equal selectors print the same.
    requirements: Vec<Requirement>,
    /// Kubernetes' `labels.Nothing()`: what a missing (`null`) `metav1.LabelSelector` selects.
    nothing: bool,
}

impl LabelSelector {
    /// Parses a `labelSelector` query string (`a=b,c!=d,e in (x,y),f notin (z),g,!h,i>1`).
    /// An empty or blank string selects everything.
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let mut requirements = Parser::new(s)
            .parse()
            .map_err(SelectorError::InvalidLabelSelector)?;
        // Stable, like Kubernetes' sort for the handful of requirements selectors carry, so that
        // requirements on one key print in the order they were written.
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector {
            requirements,
            nothing: false,
        })
    }

    /// Builds the selector of a `metav1.LabelSelector` object (`matchLabels` and
    /// `matchExpressions` with `In`, `NotIn`, `Exists`, `DoesNotExist`) as Kubernetes'
    /// `LabelSelectorAsSelector` does: `null` selects nothing, `{}` selects everything.
    pub fn from_label_selector(v: &Value) -> Result<Self, SelectorError> {
        let invalid = SelectorError::InvalidLabelSelectorObject;
        let object = match v {
            Value::Null => return Ok(LabelSelector::nothing()),
            Value::Object(object) => object,
            _ => return Err(invalid("a label selector must be an object".into())),
        };
        let match_labels = match object.get("matchLabels") {
            None | Some(Value::Null) => None,
            Some(Value::Object(labels)) => Some(labels),
            Some(_) => return Err(invalid("matchLabels must be an object".into())),
        };
        let match_expressions: &[Value] = match object.get("matchExpressions") {
            None | Some(Value::Null) => &[],
            Some(Value::Array(expressions)) => expressions,
            Some(_) => return Err(invalid("matchExpressions must be a list".into())),
        };

        let mut requirements = Vec::new();
        // Kubernetes walks matchLabels in Go's random map order and stops at the first error;
        // key order makes the reported error deterministic.
        let mut labels: Vec<(&String, &Value)> = match_labels.into_iter().flatten().collect();
        labels.sort_by(|a, b| a.0.cmp(b.0));
        for (key, value) in labels {
            let Some(value) = value.as_str() else {
                return Err(invalid(format!("matchLabels[{key}] must be a string")));
            };
            let requirement = Requirement::new(key.clone(), Operator::Equals, vec![value.into()])
                .map_err(invalid)?;
            requirements.push(requirement);
        }
        for expression in match_expressions {
            let key = expression.get("key").and_then(Value::as_str).unwrap_or("");
            let operator = expression
                .get("operator")
                .and_then(Value::as_str)
                .unwrap_or("");
            let operator = match operator {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => {
                    return Err(invalid(format!(
                        "{} is not a valid label selector operator",
                        go_text::quote(other)
                    )));
                }
            };
            let values = match expression.get("values") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(values)) => values
                    .iter()
                    .map(|value| value.as_str().map(str::to_string))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| invalid("matchExpressions values must be strings".into()))?,
                Some(_) => return Err(invalid("matchExpressions values must be a list".into())),
            };
            let requirement =
                Requirement::new(key.to_string(), operator, values).map_err(invalid)?;
            requirements.push(requirement);
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector {
            requirements,
            nothing: false,
        })
    }

    /// The selector of a plain label map, such as a Service's `spec.selector`: every entry must
    /// match exactly (Kubernetes' `SelectorFromSet`). Not validated, as in Kubernetes; entries
    /// whose value is not a string are skipped. An empty map selects everything.
    pub fn from_set(labels: &Map<String, Value>) -> Self {
        let mut requirements: Vec<Requirement> = labels
            .iter()
            .filter_map(|(key, value)| {
                value.as_str().map(|value| Requirement {
                    key: key.clone(),
                    operator: Operator::Equals,
                    values: vec![value.to_string()],
                })
            })
            .collect();
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        LabelSelector {
            requirements,
            nothing: false,
        }
    }

    /// The selector that matches no object (Kubernetes' `labels.Nothing()`).
    pub fn nothing() -> Self {
        LabelSelector {
            requirements: Vec::new(),
            nothing: true,
        }
    }

    /// Do these labels (`metadata.labels`, `None` when the object has none) satisfy every
    /// requirement?
    pub fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Does the selector leave the selection unrestricted? (False for [`LabelSelector::nothing`],
    /// as in Kubernetes.)
    pub fn is_empty(&self) -> bool {
        !self.nothing && self.requirements.is_empty()
    }

    /// Is this the selector that matches nothing?
    pub fn matches_nothing(&self) -> bool {
        self.nothing
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }
}

impl fmt::Display for LabelSelector {
    /// Kubernetes' `Selector.String()`: requirements by key, comma-separated, no spaces except
    /// around `in`/`notin`; empty for both everything and nothing.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, requirement) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{requirement}")?;
        }
        Ok(())
    }
}

/// Go's `strconv.ParseInt(s, 10, 64)`: optional sign, decimal digits, no spaces, 64 bits.
fn parse_go_int(s: &str) -> Option<i64> {
    s.parse().ok()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    /// Never produced in practice (every single special character is a token), kept because
    /// Kubernetes' lexer has it.
    Error,
    EndOfString,
    ClosedPar,
    Comma,
    DoesNotExist,
    DoubleEquals,
    Equals,
    GreaterThan,
    Identifier,
    In,
    LessThan,
    NotEquals,
    NotIn,
    OpenPar,
}

/// Kubernetes' `string2token`: the literals that are tokens rather than identifiers.
fn literal_token(literal: &[u8]) -> Option<Token> {
    Some(match literal {
        b")" => Token::ClosedPar,
        b"," => Token::Comma,
        b"!" => Token::DoesNotExist,
        b"==" => Token::DoubleEquals,
        b"=" => Token::Equals,
        b">" => Token::GreaterThan,
        b"in" => Token::In,
        b"<" => Token::LessThan,
        b"!=" => Token::NotEquals,
        b"notin" => Token::NotIn,
        b"(" => Token::OpenPar,
        _ => return None,
    })
}

fn is_whitespace(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_special_symbol(byte: u8) -> bool {
    matches!(byte, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

/// Kubernetes' byte-wise lexer. Like it, `read` yields 0 both at the end of input and for a NUL
/// byte, so a NUL ends whatever is being scanned.
struct Lexer<'a> {
    source: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    fn read(&mut self) -> u8 {
        match self.source.as_bytes().get(self.pos) {
            Some(&byte) => {
                self.pos += 1;
                byte
            }
            None => 0,
        }
    }

    fn unread(&mut self) {
        self.pos -= 1;
    }

    fn lex(&mut self) -> (Token, String) {
        let mut byte = self.read();
        while is_whitespace(byte) {
            byte = self.read();
        }
        if byte == 0 {
            return (Token::EndOfString, String::new());
        }
        self.unread();
        if is_special_symbol(byte) {
            self.scan_special_symbol()
        } else {
            self.scan_identifier_or_keyword()
        }
    }

    fn scan_identifier_or_keyword(&mut self) -> (Token, String) {
        let start = self.pos;
        let end = loop {
            let before = self.pos;
            let byte = self.read();
            if byte == 0 {
                break before;
            }
            if is_special_symbol(byte) || is_whitespace(byte) {
                self.unread();
                break before;
            }
        };
        // Boundaries fall on ASCII bytes or the end, so the slice is valid UTF-8.
        let literal = &self.source[start..end];
        let token = literal_token(literal.as_bytes()).unwrap_or(Token::Identifier);
        (token, literal.to_string())
    }

    /// The longest run of special characters that is a token (`!=` over `!`).
    fn scan_special_symbol(&mut self) -> (Token, String) {
        let start = self.pos;
        let mut last: Option<(Token, usize)> = None;
        loop {
            let byte = self.read();
            if byte == 0 {
                break;
            }
            if !is_special_symbol(byte) {
                self.unread();
                break;
            }
            match literal_token(&self.source.as_bytes()[start..self.pos]) {
                Some(token) => last = Some((token, self.pos)),
                None if last.is_some() => {
                    self.unread();
                    break;
                }
                None => {}
            }
        }
        match last {
            Some((token, end)) => (token, self.source[start..end].to_string()),
            None => (
                Token::Error,
                format!(
                    "error expected: keyword found '{}'",
                    &self.source[start..self.pos]
                ),
            ),
        }
    }
}

/// Where the parser is: after a key `in`/`notin` are operators, elsewhere they are plain
/// identifiers (`x in (in)`, `notin=in`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    KeyAndOperator,
    Values,
}

struct Parser {
    items: Vec<(Token, String)>,
    position: usize,
}

impl Parser {
    fn new(source: &str) -> Self {
        let mut lexer = Lexer { source, pos: 0 };
        let mut items = Vec::new();
        loop {
            let (token, literal) = lexer.lex();
            let done = token == Token::EndOfString;
            items.push((token, literal));
            if done {
                break;
            }
        }
        Parser { items, position: 0 }
    }

    fn in_context(token: Token, context: Context) -> Token {
        match token {
            Token::In | Token::NotIn if context == Context::Values => Token::Identifier,
            other => other,
        }
    }

    fn lookahead(&self, context: Context) -> (Token, &str) {
        match self.items.get(self.position) {
            Some((token, literal)) => (Self::in_context(*token, context), literal),
            None => (Token::EndOfString, ""),
        }
    }

    fn consume(&mut self, context: Context) -> (Token, String) {
        let (token, literal) = self.lookahead(context);
        let item = (token, literal.to_string());
        self.position += 1;
        item
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, String> {
        let mut requirements = Vec::new();
        loop {
            let (token, literal) = self.lookahead(Context::Values);
            match token {
                Token::Identifier | Token::DoesNotExist => {
                    let requirement = self
                        .parse_requirement()
                        .map_err(|e| format!("unable to parse requirement: {e}"))?;
                    requirements.push(requirement);
                    let (token, literal) = self.consume(Context::Values);
                    match token {
                        Token::EndOfString => return Ok(requirements),
                        Token::Comma => {
                            let (next, next_literal) = self.lookahead(Context::Values);
                            if next != Token::Identifier && next != Token::DoesNotExist {
                                return Err(format!(
                                    "found '{next_literal}', expected: identifier after ','"
                                ));
                            }
                        }
                        _ => {
                            return Err(format!(
                                "found '{literal}', expected: ',' or 'end of string'"
                            ));
                        }
                    }
                }
                Token::EndOfString => return Ok(requirements),
                _ => {
                    return Err(format!(
                        "found '{literal}', expected: !, identifier, or 'end of string'"
                    ));
                }
            }
        }
    }

    fn parse_requirement(&mut self) -> Result<Requirement, String> {
        let (key, operator) = self.parse_key_and_infer_operator()?;
        if let Some(operator) = operator {
            return Requirement::new(key, operator, Vec::new());
        }
        let operator = self.parse_operator()?;
        let values = match operator {
            Operator::In | Operator::NotIn => self.parse_values()?,
            _ => self.parse_exact_value()?,
        };
        // Kubernetes collects values in a set: sorted, without duplicates.
        Requirement::new(key, operator, values.into_iter().collect())
    }

    /// The key, and `Exists`/`DoesNotExist` when no binary operator follows it. A `!key` stays
    /// `DoesNotExist` even when something follows; the caller then trips over that something.
    fn parse_key_and_infer_operator(&mut self) -> Result<(String, Option<Operator>), String> {
        let mut operator = None;
        let (mut token, mut literal) = self.consume(Context::Values);
        if token == Token::DoesNotExist {
            operator = Some(Operator::DoesNotExist);
            (token, literal) = self.consume(Context::Values);
        }
        if token != Token::Identifier {
            return Err(format!("found '{literal}', expected: identifier"));
        }
        if let Err(message) = is_qualified_name(&literal) {
            // Kubernetes validates the key here with a nil field path, which prints as `<nil>`.
            return Err(go_text::invalid(
                "<nil>",
                &go_text::quote(&literal),
                &message,
            ));
        }
        let (next, _) = self.lookahead(Context::Values);
        if operator.is_none() && matches!(next, Token::EndOfString | Token::Comma) {
            operator = Some(Operator::Exists);
        }
        Ok((literal, operator))
    }

    fn parse_operator(&mut self) -> Result<Operator, String> {
        let (token, literal) = self.consume(Context::KeyAndOperator);
        Ok(match token {
            Token::In => Operator::In,
            Token::Equals => Operator::Equals,
            Token::DoubleEquals => Operator::DoubleEquals,
            Token::GreaterThan => Operator::GreaterThan,
            Token::LessThan => Operator::LessThan,
            Token::NotIn => Operator::NotIn,
            Token::NotEquals => Operator::NotEquals,
            _ => {
                return Err(format!(
                    "found '{literal}', expected: in, notin, =, ==, !=, gt, lt"
                ));
            }
        })
    }

    /// `(a,b)`; `()` is the set holding only the empty value.
    fn parse_values(&mut self) -> Result<BTreeSet<String>, String> {
        let (token, literal) = self.consume(Context::Values);
        if token != Token::OpenPar {
            return Err(format!("found '{literal}' expected: '('"));
        }
        let (token, literal) = self.lookahead(Context::Values);
        let literal = literal.to_string();
        match token {
            Token::Identifier | Token::Comma => {
                let values = self.parse_identifiers_list()?;
                let (token, _) = self.consume(Context::Values);
                if token != Token::ClosedPar {
                    return Err(format!("found '{literal}', expected: ')'"));
                }
                Ok(values)
            }
            Token::ClosedPar => {
                self.consume(Context::Values);
                Ok(BTreeSet::from([String::new()]))
            }
            _ => Err(format!(
                "found '{literal}', expected: ',', ')' or identifier"
            )),
        }
    }

    /// A comma-separated list in which missing values are empty ones (`(a,,b)`, `(,a)`,
    /// `(a,)`). Leaves the closing parenthesis for the caller. As in Kubernetes 1.33, a doubled
    /// comma swallows the comma after it, which is why `(,,)` and `(a,,)` are refused.
    fn parse_identifiers_list(&mut self) -> Result<BTreeSet<String>, String> {
        let mut values = BTreeSet::new();
        loop {
            let (token, literal) = self.consume(Context::Values);
            match token {
                Token::Identifier => {
                    values.insert(literal);
                    let (next, next_literal) = self.lookahead(Context::Values);
                    match next {
                        Token::Comma => continue,
                        Token::ClosedPar => return Ok(values),
                        _ => {
                            return Err(format!("found '{next_literal}', expected: ',' or ')'"));
                        }
                    }
                }
                Token::Comma => {
                    if values.is_empty() {
                        values.insert(String::new());
                    }
                    let (next, _) = self.lookahead(Context::Values);
                    if next == Token::ClosedPar {
                        values.insert(String::new());
                        return Ok(values);
                    }
                    if next == Token::Comma {
                        self.consume(Context::Values);
                        values.insert(String::new());
                    }
                }
                _ => return Err(format!("found '{literal}', expected: ',', or identifier")),
            }
        }
    }

    /// The value after `=`, `==`, `!=`, `>`, `<`; nothing before `,` or the end is the empty
    /// value.
    fn parse_exact_value(&mut self) -> Result<BTreeSet<String>, String> {
        let (next, _) = self.lookahead(Context::Values);
        if matches!(next, Token::EndOfString | Token::Comma) {
            return Ok(BTreeSet::from([String::new()]));
        }
        let (token, literal) = self.consume(Context::Values);
        if token == Token::Identifier {
            Ok(BTreeSet::from([literal]))
        } else {
            Err(format!("found '{literal}', expected: identifier"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Kubernetes' rule texts, which most validation messages end with.
    const NAME_RULE: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
    const VALUE_RULE: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

    fn expand(message: &str) -> String {
        message
            .replace("<NAME_RULE>", NAME_RULE)
            .replace("<VALUE_RULE>", VALUE_RULE)
    }

    fn labels(value: serde_json::Value) -> Map<String, Value> {
        value.as_object().cloned().expect("labels are an object")
    }

    /// Each output was produced by kubectl 1.33 from the same input.
    #[test]
    fn selectors_print_back_in_kubernetes_canonical_form() {
        let cases = [
            ("", ""),
            ("   ", ""),
            ("x=a,y=b,z=c", "x=a,y=b,z=c"),
            ("z=1, b in (y,x,x), !a", "!a,b in (x,y),z=1"),
            ("a=x,x=a", "a=x,x=a"),
            ("x=a,a=x", "a=x,x=a"),
            ("x= ,z= ", "x=,z="),
            ("x = y", "x=y"),
            ("x==y", "x==y"),
            ("x!=,y", "x!=,y"),
            ("x > 1", "x>1"),
            ("x>1,z<5", "x>1,z<5"),
            ("x<9223372036854775807", "x<9223372036854775807"),
            (
                "x notin (abc,def),bar,z in (),w",
                "bar,w,x notin (abc,def),z in ()",
            ),
            ("x in(a)", "x in (a)"),
            ("x notin ( )", "x notin ()"),
            ("x in (abc,)", "x in (,abc)"),
            ("x notin (, a)", "x notin (,a)"),
            ("x in (a,,b)", "x in (,a,b)"),
            ("x in (a,,,b)", "x in (,a,b)"),
            ("x in (,,,)", "x in ()"),
            ("x in (b,a,a)", "x in (a,b)"),
            ("a in (x,y,notin, z,in)", "a in (in,notin,x,y,z)"),
            ("in in (in)", "in in (in)"),
            ("notin=in", "notin=in"),
            ("!in", "!in"),
            ("x=1,x!=2,x", "x=1,x!=2,x"),
            ("b,a,a", "a,a,b"),
            ("\rx", "x"),
            ("a.b/c", "a.b/c"),
            (
                "this-is-another-dns.domain.com/key-with-dash in (so,what)",
                "this-is-another-dns.domain.com/key-with-dash in (so,what)",
            ),
        ];
        for (input, want) in cases {
            let selector = LabelSelector::parse(input)
                .unwrap_or_else(|e| panic!("{input:?} should parse: {e}"));
            assert_eq!(selector.to_string(), want, "printing {input:?}");
        }
    }

    /// Each message was produced by kubectl 1.33 from the same input.
    #[test]
    fn malformed_selectors_are_refused_with_kubernetes_wording() {
        let cases = [
            ("x==a==b", "found '==', expected: ',' or 'end of string'"),
            ("!x=a", "found '=', expected: ',' or 'end of string'"),
            (
                "a in (xyz)b notin ()",
                "found 'b', expected: ',' or 'end of string'",
            ),
            (
                "(",
                "found '(', expected: !, identifier, or 'end of string'",
            ),
            (
                ",x,y",
                "found ',', expected: !, identifier, or 'end of string'",
            ),
            ("a,", "found '', expected: identifier after ','"),
            ("x in (a),,y", "found ',', expected: identifier after ','"),
            (
                "a (",
                "unable to parse requirement: found '(', expected: in, notin, =, ==, !=, gt, lt",
            ),
            (
                "a b c",
                "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt",
            ),
            (
                "x in",
                "unable to parse requirement: found '' expected: '('",
            ),
            (
                "x in,y",
                "unable to parse requirement: found ',' expected: '('",
            ),
            (
                "a notin(",
                "unable to parse requirement: found '', expected: ',', ')' or identifier",
            ),
            (
                "x in ((a))",
                "unable to parse requirement: found '(', expected: ',', ')' or identifier",
            ),
            (
                "a in (xyz abc)",
                "unable to parse requirement: found 'abc', expected: ',' or ')'",
            ),
            (
                "a in (b,c",
                "unable to parse requirement: found '', expected: ',' or ')'",
            ),
            (
                "x in (,,)",
                "unable to parse requirement: found ')', expected: ',', or identifier",
            ),
            (
                "x in (a,,)",
                "unable to parse requirement: found ')', expected: ',', or identifier",
            ),
            (
                "x=(a)",
                "unable to parse requirement: found '(', expected: identifier",
            ),
            (
                "x<=1",
                "unable to parse requirement: found '=', expected: identifier",
            ),
            (
                "!",
                "unable to parse requirement: found '', expected: identifier",
            ),
            (
                "!!x",
                "unable to parse requirement: found '!', expected: identifier",
            ),
            (
                "x<a",
                "unable to parse requirement: values[0]: Invalid value: \"a\": for 'Gt', 'Lt' operators, the value must be an integer",
            ),
            (
                "x>",
                "unable to parse requirement: values[0]: Invalid value: \"\": for 'Gt', 'Lt' operators, the value must be an integer",
            ),
            (
                "x>99999999999999999999",
                "unable to parse requirement: values[0]: Invalid value: \"99999999999999999999\": for 'Gt', 'Lt' operators, the value must be an integer",
            ),
            (
                "x>-1",
                "unable to parse requirement: values[0][x]: Invalid value: \"-1\": <VALUE_RULE>",
            ),
            (
                "x=a||y=b",
                "unable to parse requirement: values[0][x]: Invalid value: \"a||y\": <VALUE_RULE>",
            ),
            (
                "x=\"a\"",
                "unable to parse requirement: values[0][x]: Invalid value: \"\\\"a\\\"\": <VALUE_RULE>",
            ),
            (
                "-a",
                "unable to parse requirement: <nil>: Invalid value: \"-a\": name part <NAME_RULE>",
            ),
            (
                "/x",
                "unable to parse requirement: <nil>: Invalid value: \"/x\": prefix part must be non-empty",
            ),
            (
                "x/",
                "unable to parse requirement: <nil>: Invalid value: \"x/\": name part must be non-empty; name part <NAME_RULE>",
            ),
            (
                "a/b/c=x",
                "unable to parse requirement: <nil>: Invalid value: \"a/b/c\": a qualified name <NAME_RULE> with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(
                LabelSelector::parse(input),
                Err(SelectorError::InvalidLabelSelector(expand(want))),
                "parsing {input:?}"
            );
        }
        let too_long = format!("x in ({}-)", "a".repeat(64));
        assert_eq!(
            LabelSelector::parse(&too_long).unwrap_err().to_string(),
            format!(
                "unable to parse requirement: values[0][x]: Invalid value: \"{}-\": must be no more than 63 characters; {VALUE_RULE}",
                "a".repeat(64)
            )
        );
    }

    #[test]
    fn a_nul_byte_ends_what_the_lexer_is_scanning() {
        // Kubernetes' lexer reads NUL as the end of input. Where a token starts, that ends the
        // selector; inside a token, the NUL is swallowed and scanning goes on after it.
        assert_eq!(
            LabelSelector::parse("a=b, \0c"),
            Err(SelectorError::InvalidLabelSelector(
                "found '', expected: identifier after ','".into()
            ))
        );
        assert_eq!(LabelSelector::parse("a\0").unwrap().to_string(), "a");
        assert_eq!(
            LabelSelector::parse("a=b,\0c").unwrap().to_string(),
            "a=b,c"
        );
    }

    #[test]
    fn requirements_match_as_kubernetes_matches_them() {
        let set = labels(json!({"app": "web", "tier": "front", "empty": "", "n": "5"}));
        let cases = [
            ("", true),
            ("app=web", true),
            ("app==web", true),
            ("app=db", false),
            ("app!=db", true),
            ("app!=web", false),
            ("missing!=x", true),
            ("app in (db,web)", true),
            ("app in (db)", false),
            ("missing in (x)", false),
            ("app notin (db)", true),
            ("app notin (web)", false),
            ("missing notin (x)", true),
            ("app", true),
            ("missing", false),
            ("!missing", true),
            ("!app", false),
            ("empty", true),
            ("empty=", true),
            ("empty in ()", true),
            ("missing in ()", false),
            ("missing=", false),
            ("app=web,tier=front", true),
            ("app=web,tier=back", false),
            ("n>4", true),
            ("n>5", false),
            ("n<6", true),
            ("n<5", false),
            ("app>1", false),
            ("missing<1", false),
        ];
        for (selector, want) in cases {
            let parsed = LabelSelector::parse(selector).expect(selector);
            assert_eq!(parsed.matches(Some(&set)), want, "{selector:?}");
        }
    }

    #[test]
    fn notin_matches_objects_without_the_label() {
        let selector = LabelSelector::parse("env notin (prod)").unwrap();
        assert!(selector.matches(None));
        assert!(selector.matches(Some(&labels(json!({"app": "web"})))));
        assert!(selector.matches(Some(&labels(json!({"env": "dev"})))));
        assert!(!selector.matches(Some(&labels(json!({"env": "prod"})))));
        let not_equal = LabelSelector::parse("env!=prod").unwrap();
        assert!(not_equal.matches(None));
    }

    #[test]
    fn greater_and_less_than_compare_only_integer_labels() {
        let cases = [
            ("x>1", json!({"x": "2"}), true),
            ("x>1", json!({"x": "0"}), false),
            ("x<1", json!({"x": "0"}), true),
            ("x>1", json!({"x": "v2"}), false),
            ("x>1", json!({"x": "1.5"}), false),
            ("x<1", json!({"x": "-5"}), true),
            ("x>1", json!({"x": "99999999999999999999"}), false),
            ("x>1", json!({}), false),
        ];
        for (selector, set, want) in cases {
            let parsed = LabelSelector::parse(selector).unwrap();
            assert_eq!(
                parsed.matches(Some(&labels(set.clone()))),
                want,
                "{selector} on {set}"
            );
        }
    }

    #[test]
    fn non_string_label_values_count_as_unset() {
        let set = labels(json!({"n": 5}));
        assert!(!LabelSelector::parse("n").unwrap().matches(Some(&set)));
        assert!(
            LabelSelector::parse("n notin (5)")
                .unwrap()
                .matches(Some(&set))
        );
    }

    #[test]
    fn an_empty_selector_matches_everything_and_nothing_matches_nothing() {
        let everything = LabelSelector::default();
        assert!(everything.is_empty());
        assert!(everything.matches(None));
        assert_eq!(everything, LabelSelector::parse("").unwrap());

        let nothing = LabelSelector::nothing();
        assert!(!nothing.is_empty());
        assert!(nothing.matches_nothing());
        assert!(!nothing.matches(None));
        assert!(!nothing.matches(Some(&labels(json!({"app": "web"})))));
        assert_eq!(nothing.to_string(), "");
    }

    /// Each output was produced by kubectl 1.33 from a Deployment with the same selector.
    #[test]
    fn label_selector_objects_build_the_selector_kubernetes_builds() {
        let cases = [
            (
                json!({"matchLabels": {"app": "web", "tier": "b"}}),
                "app=web,tier=b",
            ),
            (
                json!({"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["b", "a", "a"]}]}),
                "app=web,tier in (a,a,b)",
            ),
            (
                json!({"matchExpressions": [
                    {"key": "z", "operator": "Exists"},
                    {"key": "a", "operator": "DoesNotExist"},
                    {"key": "m", "operator": "NotIn", "values": ["q", "p"]}
                ]}),
                "!a,m notin (p,q),z",
            ),
            (
                json!({"matchLabels": {"z": "1"}, "matchExpressions": [{"key": "z", "operator": "Exists"}]}),
                "z=1,z",
            ),
            (json!({"matchLabels": {"a": ""}}), "a="),
            (
                json!({"matchExpressions": [{"key": "x", "operator": "In", "values": [""]}]}),
                "x in ()",
            ),
            (json!({}), ""),
            (json!({"matchLabels": null, "matchExpressions": null}), ""),
        ];
        for (object, want) in cases {
            let selector = LabelSelector::from_label_selector(&object)
                .unwrap_or_else(|e| panic!("{object} should convert: {e}"));
            assert_eq!(selector.to_string(), want, "{object}");
            assert!(!selector.matches_nothing());
        }
        let selector = LabelSelector::from_label_selector(
            &json!({"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}]}),
        )
        .unwrap();
        assert!(selector.matches(Some(&labels(json!({"app": "web"})))));
        assert!(!selector.matches(Some(&labels(json!({"app": "web", "tier": "db"})))));
        assert!(!selector.matches(None));
    }

    #[test]
    fn a_missing_label_selector_object_selects_nothing() {
        let selector = LabelSelector::from_label_selector(&Value::Null).unwrap();
        assert!(selector.matches_nothing());
        assert!(!selector.matches(None));
    }

    /// Each message was produced by kubectl 1.33 from a Deployment with the same selector.
    #[test]
    fn invalid_label_selector_objects_are_refused_with_kubernetes_wording() {
        let cases = [
            (
                json!({"matchExpressions": [{"key": "x", "operator": "In"}]}),
                "values: Invalid value: []string(nil): for 'in', 'notin' operators, values set can't be empty",
            ),
            (
                json!({"matchExpressions": [{"key": "x", "operator": "NotIn", "values": []}]}),
                "values: Invalid value: []string(nil): for 'in', 'notin' operators, values set can't be empty",
            ),
            (
                json!({"matchExpressions": [{"key": "x", "operator": "Exists", "values": ["a"]}]}),
                "values: Invalid value: []string{\"a\"}: values set must be empty for exists and does not exist",
            ),
            (
                json!({"matchExpressions": [{"key": "x", "operator": "DoesNotExist", "values": ["a", "b"]}]}),
                "values: Invalid value: []string{\"a\", \"b\"}: values set must be empty for exists and does not exist",
            ),
            (
                json!({"matchExpressions": [{"key": "x", "operator": "Gt", "values": ["1"]}]}),
                "\"Gt\" is not a valid label selector operator",
            ),
            (
                json!({"matchExpressions": [{"key": "x", "operator": "in", "values": ["1"]}]}),
                "\"in\" is not a valid label selector operator",
            ),
            (
                json!({"matchExpressions": [{"key": "x", "values": ["1"]}]}),
                "\"\" is not a valid label selector operator",
            ),
            (
                json!({"matchLabels": {"a b": "c"}}),
                "key: Invalid value: \"a b\": name part <NAME_RULE>",
            ),
            (
                json!({"matchLabels": {"a": "-c"}}),
                "values[0][a]: Invalid value: \"-c\": <VALUE_RULE>",
            ),
            (
                json!({"matchExpressions": [{"key": "", "operator": "Exists"}]}),
                "key: Invalid value: \"\": name part must be non-empty; name part <NAME_RULE>",
            ),
            (
                json!({"matchExpressions": [{"key": "a/b/c", "operator": "NotIn"}]}),
                "[key: Invalid value: \"a/b/c\": a qualified name <NAME_RULE> with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName'), values: Invalid value: []string(nil): for 'in', 'notin' operators, values set can't be empty]",
            ),
            (
                json!({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["x y", "-z"]}]}),
                "[values[0][a]: Invalid value: \"x y\": <VALUE_RULE>, values[1][a]: Invalid value: \"-z\": <VALUE_RULE>]",
            ),
        ];
        for (object, want) in cases {
            assert_eq!(
                LabelSelector::from_label_selector(&object),
                Err(SelectorError::InvalidLabelSelectorObject(expand(want))),
                "{object}"
            );
        }
    }

    #[test]
    fn a_label_map_selects_objects_carrying_every_entry() {
        let selector = LabelSelector::from_set(&labels(json!({"tier": "front", "app": "web"})));
        assert_eq!(selector.to_string(), "app=web,tier=front");
        assert!(selector.matches(Some(&labels(
            json!({"app": "web", "tier": "front", "x": "y"})
        ))));
        assert!(!selector.matches(Some(&labels(json!({"app": "web"})))));
        assert!(LabelSelector::from_set(&Map::new()).is_empty());
    }

    #[test]
    fn requirements_are_exposed_sorted_by_key() {
        let selector = LabelSelector::parse("b in (y,x),a").unwrap();
        let requirements = selector.requirements();
        assert_eq!(requirements[0].key(), "a");
        assert_eq!(requirements[0].operator(), Operator::Exists);
        assert_eq!(requirements[1].key(), "b");
        assert_eq!(requirements[1].operator(), Operator::In);
        assert_eq!(requirements[1].values(), ["x", "y"]);
    }
}

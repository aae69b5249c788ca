//! JSON Schema: compiled by `jsonschema` (which checks payloads), a canonical text with object
//! keys sorted, and Confluent's compatibility rules walked over the two raw documents.
//!
//! Compatibility asks whether every value the writer's schema accepts is accepted by the
//! reader's. The rule names in the reasons are Confluent's (`PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL`,
//! `REQUIRED_ATTRIBUTE_ADDED`, `TYPE_NARROWED`, ...), so a client sees the names it knows.

use std::collections::{BTreeSet, HashSet};

use jsonschema::{Draft, Registry, Validator};
use serde_json::{Map, Value};

use super::format::Resolved;

/// A parsed JSON Schema, the schemas it references, and its compiled validator.
#[derive(Debug)]
pub struct JsonSchema {
    value: Value,
    refs: Vec<(String, Value)>,
    validator: Validator,
}

impl JsonSchema {
    /// Parse `text`; `refs` are the documents its `$ref`s name (by the `$ref` URL).
    pub fn parse(text: &str, refs: &[Resolved]) -> Result<JsonSchema, String> {
        let value = parse_document(text).map_err(|e| format!("invalid JSON schema: {e}"))?;
        let mut docs = Vec::with_capacity(refs.len());
        for r in refs {
            let doc =
                parse_document(&r.schema).map_err(|e| format!("invalid JSON schema reference {:?}: {e}", r.name))?;
            docs.push((r.name.clone(), doc));
        }
        let validator = compile(&value, &docs)?;
        Ok(JsonSchema { value, refs: docs, validator })
    }

    /// The schema's `title` (its record name for the record naming strategies).
    pub fn title(&self) -> Option<String> {
        self.value.get("title")?.as_str().map(str::to_string)
    }

    /// Compact JSON with every object's keys sorted: key order and whitespace do not make a
    /// different schema.
    pub fn canonical(&self) -> String {
        sorted(&self.value).to_string()
    }

    /// Why `writer`'s data cannot be read with this schema (empty: it can).
    pub fn can_read(&self, writer: &JsonSchema) -> Vec<String> {
        let mut walk = Walk::default();
        walk.compare(Node::root(writer), Node::root(self), "#");
        let mut seen = HashSet::new();
        walk.reasons.retain(|r| seen.insert(r.clone()));
        walk.reasons
    }

    /// The payload must be UTF-8 JSON that the schema accepts; the error names the first
    /// failing location.
    pub fn validate(&self, payload: &[u8]) -> Result<(), String> {
        let text = std::str::from_utf8(payload).map_err(|e| format!("payload is not UTF-8: {e}"))?;
        let value: Value = serde_json::from_str(text).map_err(|e| format!("payload is not JSON: {e}"))?;
        self.validator.validate(&value).map_err(|e| {
            let at = e.instance_path().to_string();
            let at = if at.is_empty() { "/".to_string() } else { at };
            format!("payload does not match the JSON schema at {at}: {e}")
        })
    }

    /// The referenced document a `$ref` URL (without its fragment) names.
    fn document(&self, url: &str) -> Option<&Value> {
        if self.value.get("$id").and_then(Value::as_str) == Some(url) {
            return Some(&self.value);
        }
        let bare = url.trim_start_matches("./");
        self.refs
            .iter()
            .find(|(name, _)| {
                let name = name.trim_start_matches("./");
                name == bare || bare.ends_with(&format!("/{name}")) || name.ends_with(&format!("/{bare}"))
            })
            .map(|(_, doc)| doc)
    }
}

/// A document must be JSON and a schema: an object or a boolean.
fn parse_document(text: &str) -> Result<Value, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    match value {
        Value::Object(_) | Value::Bool(_) => Ok(value),
        other => Err(format!("a schema is a JSON object or a boolean, not a JSON {}", json_type(&other))),
    }
}

/// Compile the validator once; references are registered under the names the schema's
/// `$ref`s use, so nothing is ever fetched. Without `$schema`, draft 7 (Confluent's default);
/// references without one follow the root's draft.
fn compile(root: &Value, docs: &[(String, Value)]) -> Result<Validator, String> {
    let draft = match Draft::Draft7.detect(root) {
        Draft::Unknown => None, // a custom meta-schema: the library decides (and fails offline)
        known => Some(known),
    };
    let mut options = jsonschema::options().offline();
    if let Some(draft) = draft {
        options = options.with_draft(draft);
    }
    if docs.is_empty() {
        return options.build(root).map_err(|e| format!("invalid JSON schema: {e}"));
    }
    let mut builder = Registry::new().draft(draft.unwrap_or(Draft::Draft7));
    for (name, doc) in docs {
        for uri in resource_uris(root, name) {
            builder = builder
                .add(&uri, doc.clone())
                .map_err(|e| format!("invalid JSON schema reference name {name:?}: {e}"))?;
        }
    }
    let registry = builder.prepare().map_err(|e| format!("invalid JSON schema references: {e}"))?;
    options.with_registry(&registry).build(root).map_err(|e| format!("invalid JSON schema: {e}"))
}

/// A reference is registered under its name, and also resolved against the root's `$id`
/// (a relative `$ref` in a schema with an `$id` resolves against that).
fn resource_uris(root: &Value, name: &str) -> Vec<String> {
    let mut uris = vec![name.to_string()];
    if let Some(id) = root.get("$id").and_then(Value::as_str)
        && let Ok(base) = jsonschema::uri::from_str(id)
        && let Ok(full) = jsonschema::uri::resolve_against(&base.borrow(), name)
        && full.as_str() != name
    {
        uris.push(full.as_str().to_string());
    }
    uris
}

/// A copy with every object's keys inserted in sorted order.
fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let mut out = Map::new();
            for k in keys {
                out.insert(k.clone(), sorted(&map[k]));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// The JSON Schema type name of a value (`integer` for whole numbers).
fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(n) if n.as_f64().is_some_and(|f| f.fract() == 0.0) => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The keywords that constrain values; a schema with none of them accepts anything.
const ASSERTIONS: &[&str] = &[
    "type",
    "enum",
    "const",
    "properties",
    "required",
    "additionalProperties",
    "patternProperties",
    "propertyNames",
    "minProperties",
    "maxProperties",
    "dependencies",
    "dependentRequired",
    "dependentSchemas",
    "items",
    "prefixItems",
    "additionalItems",
    "contains",
    "minItems",
    "maxItems",
    "uniqueItems",
    "minLength",
    "maxLength",
    "pattern",
    "format",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "allOf",
    "anyOf",
    "oneOf",
    "not",
    "if",
    "$ref",
    "unevaluatedProperties",
    "unevaluatedItems",
];

const OBJECT_KEYWORDS: &[&str] = &[
    "properties",
    "required",
    "additionalProperties",
    "patternProperties",
    "propertyNames",
    "minProperties",
    "maxProperties",
    "dependencies",
    "dependentRequired",
    "dependentSchemas",
];
const ARRAY_KEYWORDS: &[&str] =
    &["items", "prefixItems", "additionalItems", "contains", "minItems", "maxItems", "uniqueItems"];
const STRING_KEYWORDS: &[&str] = &["minLength", "maxLength", "pattern"];
const NUMBER_KEYWORDS: &[&str] = &["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"];

/// `true`, or an object without assertions: every value is accepted.
fn accepts_all(schema: &Value) -> bool {
    match schema {
        Value::Bool(b) => *b,
        Value::Object(map) => !ASSERTIONS.iter().any(|k| map.contains_key(*k)),
        _ => true,
    }
}

/// `false`: no value is accepted.
fn rejects_all(schema: &Value) -> bool {
    matches!(schema, Value::Bool(false))
}

/// A schema whose only assertion is `keyword` (annotations aside).
fn only(schema: &Value, keyword: &str) -> bool {
    schema.as_object().is_some_and(|map| {
        map.contains_key(keyword) && ASSERTIONS.iter().all(|k| *k == keyword || !map.contains_key(*k))
    })
}

static TRUE: Value = Value::Bool(true);

/// A schema and where it lives: the schema that owns its document (for external `$ref`s) and
/// the document (for local ones).
#[derive(Clone, Copy)]
struct Node<'a> {
    owner: &'a JsonSchema,
    doc: &'a Value,
    schema: &'a Value,
}

impl<'a> Node<'a> {
    fn root(owner: &'a JsonSchema) -> Node<'a> {
        Node { owner, doc: &owner.value, schema: &owner.value }
    }

    /// Another schema of the same document.
    fn at(self, schema: &'a Value) -> Node<'a> {
        Node { schema, ..self }
    }

    /// A subschema under `key`, if any.
    fn get(self, key: &str) -> Option<Node<'a>> {
        self.schema.get(key).map(|s| self.at(s))
    }

    fn branches(self, key: &str) -> Vec<Node<'a>> {
        match self.schema.get(key) {
            Some(Value::Array(items)) => items.iter().map(|s| self.at(s)).collect(),
            _ => Vec::new(),
        }
    }

    fn number(self, key: &str) -> Option<f64> {
        self.schema.get(key).and_then(Value::as_f64)
    }

    fn has(self, key: &str) -> bool {
        self.schema.get(key).is_some()
    }

    /// Follow `$ref`s (a bounded number of hops, so a cycle of bare references ends).
    fn resolve(self) -> Node<'a> {
        let mut node = self;
        for _ in 0..32 {
            let Some(reference) = node.schema.get("$ref").and_then(Value::as_str) else {
                return node;
            };
            match node.lookup(reference) {
                Some(next) => node = next,
                None => return node,
            }
        }
        node
    }

    /// The schema a `$ref` names: a JSON pointer into this document or a referenced one.
    fn lookup(self, reference: &str) -> Option<Node<'a>> {
        let (url, fragment) = reference.split_once('#').unwrap_or((reference, ""));
        let doc = if url.is_empty() { self.doc } else { self.owner.document(url)? };
        let pointer = percent_decode(fragment);
        if !pointer.is_empty() && !pointer.starts_with('/') {
            return None; // a named anchor: not followed
        }
        let schema = doc.pointer(&pointer)?;
        Some(Node { owner: self.owner, doc, schema })
    }
}

/// Undo the percent-encoding a URI fragment may carry (`%24defs` for `$defs`).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Escape a property name as a JSON pointer segment.
fn segment(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

/// The types a schema declares: `type`, or else the types of its `enum`/`const` values.
fn declared_types(schema: &Value) -> Option<BTreeSet<&'static str>> {
    match schema.get("type") {
        Some(Value::String(t)) => return Some(type_names(std::iter::once(t.as_str()))),
        Some(Value::Array(ts)) => return Some(type_names(ts.iter().filter_map(Value::as_str))),
        _ => {}
    }
    enum_values(schema).map(|values| values.iter().map(json_type).collect())
}

fn type_names<'t>(names: impl Iterator<Item = &'t str>) -> BTreeSet<&'static str> {
    const KNOWN: &[&str] = &["null", "boolean", "object", "array", "number", "string", "integer"];
    names.filter_map(|n| KNOWN.iter().find(|k| **k == n).copied()).collect()
}

/// The types a writer can produce: declared, or else implied by its keywords (as Confluent
/// reads `{"properties": …}` as an object schema). `None`: any type.
fn writer_types(schema: &Value) -> Option<BTreeSet<&'static str>> {
    if let Some(types) = declared_types(schema) {
        return Some(types);
    }
    let map = schema.as_object()?;
    let kinds = [
        ("object", OBJECT_KEYWORDS),
        ("array", ARRAY_KEYWORDS),
        ("string", STRING_KEYWORDS),
        ("number", NUMBER_KEYWORDS),
    ];
    let implied: BTreeSet<&'static str> =
        kinds.iter().filter(|(_, keys)| keys.iter().any(|k| map.contains_key(*k))).map(|(kind, _)| *kind).collect();
    (implied.len() == 1).then_some(implied)
}

/// Whether `t` values are accepted by a reader of types `reader` (integers are numbers).
fn covers(reader: &BTreeSet<&str>, t: &str) -> bool {
    reader.contains(t) || (t == "integer" && reader.contains("number"))
}

/// Whether a schema may accept values of `kind` (so its `kind` keywords matter).
fn may_be(schema: &Value, kind: &str) -> bool {
    writer_types(schema).is_none_or(|types| covers(&types, kind) || (kind == "number" && types.contains("integer")))
}

/// `enum`, or `const` as a one-value enum.
fn enum_values(schema: &Value) -> Option<Vec<Value>> {
    if let Some(Value::Array(values)) = schema.get("enum") {
        return Some(values.clone());
    }
    schema.get("const").map(|v| vec![v.clone()])
}

/// What a schema says of members it does not name (properties or tuple items).
enum Extra<'a> {
    /// Anything (the keyword is absent, `true` or `{}`).
    Open,
    /// Nothing (`false`).
    Closed,
    /// Values of a schema.
    Schema(Node<'a>),
}

fn extra<'a>(node: Node<'a>, key: &str) -> Extra<'a> {
    match node.get(key) {
        None => Extra::Open,
        Some(n) if rejects_all(n.schema) => Extra::Closed,
        Some(n) if accepts_all(n.schema) => Extra::Open,
        Some(n) => Extra::Schema(n),
    }
}

/// An upper or lower bound: its value and whether it is exclusive.
#[derive(Clone, Copy)]
struct Bound {
    value: f64,
    exclusive: bool,
}

/// The tighter of `inclusive` and `exclusive` keywords; `upper` picks the direction.
fn bound(node: Node<'_>, inclusive: &str, exclusive: &str, upper: bool) -> Option<Bound> {
    let a = node.number(inclusive).map(|value| Bound { value, exclusive: false });
    // Draft 4 writes `exclusiveMaximum: true` beside `maximum`.
    let draft4 = node.schema.get(exclusive).and_then(Value::as_bool) == Some(true);
    let a = a.map(|b| Bound { exclusive: draft4, ..b });
    let b = node.number(exclusive).map(|value| Bound { value, exclusive: true });
    match (a, b) {
        (Some(a), Some(b)) => {
            let b_tighter = if upper { b.value <= a.value } else { b.value >= a.value };
            Some(if b_tighter { b } else { a })
        }
        (a, b) => a.or(b),
    }
}

/// Whether a reader's bound admits every value within the writer's.
fn bound_admits(writer: Bound, reader: Bound, upper: bool) -> bool {
    let wider = if upper { reader.value > writer.value } else { reader.value < writer.value };
    wider || (reader.value == writer.value && (!reader.exclusive || writer.exclusive))
}

/// Whether `value` is a whole multiple of `of` (within float rounding).
fn is_multiple(value: f64, of: f64) -> bool {
    if of == 0.0 {
        return false;
    }
    let q = value / of;
    (q - q.round()).abs() < 1e-9
}

/// Whether `key` matches the ECMA regex `pattern` (through `jsonschema`, which has one).
fn pattern_matches(pattern: &str, key: &str) -> bool {
    let schema = serde_json::json!({ "pattern": pattern });
    jsonschema::validator_for(&schema).is_ok_and(|v| v.is_valid(&Value::String(key.to_string())))
}

/// What a schema's content model says of a property it does not list.
enum Model<'a> {
    /// Anything may be there.
    Open,
    /// Values of a schema (a matching `patternProperties`, or `additionalProperties`).
    Partial(Node<'a>),
    /// Nothing may be there (`additionalProperties: false`).
    Closed,
}

/// The content model for `key`: the first matching `patternProperties` schema, else
/// `additionalProperties`.
fn model_for<'a>(node: Node<'a>, key: &str) -> Model<'a> {
    if let Some(Value::Object(patterns)) = node.schema.get("patternProperties")
        && let Some((_, s)) = patterns.iter().find(|(p, _)| pattern_matches(p, key))
    {
        return Model::Partial(node.at(s));
    }
    match extra(node, "additionalProperties") {
        Extra::Open => Model::Open,
        Extra::Closed => Model::Closed,
        Extra::Schema(s) => Model::Partial(s),
    }
}

/// The names in a schema's `required`.
fn required(node: Node<'_>) -> BTreeSet<&str> {
    match node.schema.get("required") {
        Some(Value::Array(names)) => names.iter().filter_map(Value::as_str).collect(),
        _ => BTreeSet::new(),
    }
}

fn properties<'a>(node: Node<'a>) -> Option<&'a Map<String, Value>> {
    node.schema.get("properties").and_then(Value::as_object)
}

/// A schema's array items: a schema for all of them, or a tuple and what follows it.
struct Items<'a> {
    all: Option<Node<'a>>,
    tuple: Vec<Node<'a>>,
    rest: Extra<'a>,
}

fn items(node: Node<'_>) -> Items<'_> {
    if node.has("prefixItems") {
        // Draft 2020-12: `prefixItems` is the tuple, `items` what follows it.
        return Items { all: None, tuple: node.branches("prefixItems"), rest: extra(node, "items") };
    }
    match node.schema.get("items") {
        Some(Value::Array(_)) => {
            Items { all: None, tuple: node.branches("items"), rest: extra(node, "additionalItems") }
        }
        Some(s) => Items { all: Some(node.at(s)), tuple: Vec::new(), rest: Extra::Open },
        None => Items { all: None, tuple: Vec::new(), rest: Extra::Open },
    }
}

/// The comparison of a writer's schema with a reader's, collecting reasons.
#[derive(Default)]
struct Walk {
    reasons: Vec<String>,
    /// Pairs (writer, reader) being compared, so recursive definitions end.
    active: HashSet<(usize, usize)>,
}

impl Walk {
    fn add(&mut self, rule: &str, path: &str, detail: impl std::fmt::Display) {
        self.reasons.push(format!("{rule} at {path}: {detail}"));
    }

    /// The reasons a comparison would give, without keeping them.
    fn check(&mut self, writer: Node<'_>, reader: Node<'_>, path: &str) -> Vec<String> {
        let outer = std::mem::take(&mut self.reasons);
        self.compare(writer, reader, path);
        std::mem::replace(&mut self.reasons, outer)
    }

    fn compare(&mut self, writer: Node<'_>, reader: Node<'_>, path: &str) {
        let (w, r) = (writer.resolve(), reader.resolve());
        let key = (w.schema as *const Value as usize, r.schema as *const Value as usize);
        if !self.active.insert(key) {
            return; // already being compared further up: a recursive definition
        }
        self.compare_resolved(w, r, path);
        self.active.remove(&key);
    }

    fn compare_resolved(&mut self, w: Node<'_>, r: Node<'_>, path: &str) {
        if accepts_all(r.schema) || rejects_all(w.schema) {
            return;
        }
        if rejects_all(r.schema) {
            self.add("TYPE_CHANGED", path, "the reader's schema is false and accepts no value");
            return;
        }
        if self.compare_combined(w, r, path) {
            return;
        }
        self.compare_types(w, r, path);
        self.compare_enum(w, r, path);
        if may_be(w.schema, "string") && may_be(r.schema, "string") {
            self.compare_strings(w, r, path);
        }
        if may_be(w.schema, "number") && may_be(r.schema, "number") {
            self.compare_numbers(w, r, path);
        }
        if may_be(w.schema, "object") && may_be(r.schema, "object") {
            self.compare_objects(w, r, path);
        }
        if may_be(w.schema, "array") && may_be(r.schema, "array") {
            self.compare_arrays(w, r, path);
        }
        self.compare_not(w, r, path);
    }

    /// `anyOf`/`oneOf`/`allOf` on either side; true when nothing else is left to compare.
    fn compare_combined(&mut self, w: Node<'_>, r: Node<'_>, path: &str) -> bool {
        // A writer's union is read when each of its branches is.
        for kw in ["anyOf", "oneOf"] {
            if only(w.schema, kw) {
                for (i, b) in w.branches(kw).into_iter().enumerate() {
                    self.compare(b, r, &format!("{path}/{kw}/{i}"));
                }
                return true;
            }
        }
        // Each part of a reader's allOf must read the writer's values.
        for (i, b) in r.branches("allOf").into_iter().enumerate() {
            self.compare(w, b, &format!("{path}/allOf/{i}"));
        }
        if only(r.schema, "allOf") {
            return true;
        }
        if only(w.schema, "allOf") {
            self.compare_writer_product(w, r, path);
            return true;
        }
        for kw in ["anyOf", "oneOf"] {
            if r.has(kw) {
                self.compare_reader_union(w, r, kw, path);
                if only(r.schema, kw) {
                    return true;
                }
            }
        }
        false
    }

    /// A writer's allOf is read when one of its parts alone is (the best effort short of
    /// merging the parts); otherwise the closest part's reasons are given.
    fn compare_writer_product(&mut self, w: Node<'_>, r: Node<'_>, path: &str) {
        let mut best: Option<Vec<String>> = None;
        for (i, b) in w.branches("allOf").into_iter().enumerate() {
            let reasons = self.check(b, r, &format!("{path}/allOf/{i}"));
            if best.as_ref().is_none_or(|x| reasons.len() < x.len()) {
                best = Some(reasons);
            }
        }
        self.reasons.extend(best.unwrap_or_default());
    }

    /// A reader's union reads the writer's values when one of its branches does.
    fn compare_reader_union(&mut self, w: Node<'_>, r: Node<'_>, kw: &str, path: &str) {
        let branches = r.branches(kw);
        let readable =
            branches.iter().enumerate().any(|(i, b)| self.check(w, *b, &format!("{path}/{kw}/{i}")).is_empty());
        if !readable {
            self.add("SUM_TYPE_NARROWED", path, format!("no branch of the reader's {kw} reads the writer's values"));
        }
    }

    /// TYPE_NARROWED / TYPE_CHANGED: the reader's `type` must accept every type the writer's
    /// schema produces (an integer writer is read by a number reader, not the reverse).
    fn compare_types(&mut self, w: Node<'_>, r: Node<'_>, path: &str) {
        let Some(rt) = declared_types(r.schema) else { return };
        let wt = writer_types(w.schema);
        let missing: Vec<&str> = match &wt {
            None => vec!["any"],
            Some(wt) => wt.iter().copied().filter(|t| !covers(&rt, t)).collect(),
        };
        if missing.is_empty() {
            return;
        }
        let narrowed = wt.as_ref().is_none_or(|wt| rt.iter().all(|t| covers(wt, t)));
        let rule = if narrowed { "TYPE_NARROWED" } else { "TYPE_CHANGED" };
        let rt: Vec<&str> = rt.into_iter().collect();
        let detail =
            format!("values of type {} from the writer are not of the reader's type {rt:?}", missing.join(", "));
        self.add(rule, path, detail);
    }

    /// ENUM_ARRAY_NARROWED / ENUM_ARRAY_CHANGED: every value the writer's enum allows must be
    /// in the reader's.
    fn compare_enum(&mut self, w: Node<'_>, r: Node<'_>, path: &str) {
        let Some(re) = enum_values(r.schema) else { return };
        let at = format!("{path}/enum");
        let Some(we) = enum_values(w.schema) else {
            self.add("ENUM_ARRAY_NARROWED", &at, "the reader allows only its enum values; the writer has no enum");
            return;
        };
        let missing: Vec<&Value> = we.iter().filter(|v| !re.contains(v)).collect();
        if missing.is_empty() {
            return;
        }
        let rule = if re.iter().all(|v| we.contains(v)) { "ENUM_ARRAY_NARROWED" } else { "ENUM_ARRAY_CHANGED" };
        let missing: Vec<String> = missing.iter().map(|v| v.to_string()).collect();
        self.add(rule, &at, format!("the writer's values {} are not in the reader's enum", missing.join(", ")));
    }

    /// A reader's upper limit must not be added or lowered (`..._ADDED`, `..._DECREASED`).
    fn upper_limit(&mut self, w: Node<'_>, r: Node<'_>, key: &str, rule: &str, path: &str) {
        let Some(rv) = r.number(key) else { return };
        let at = format!("{path}/{key}");
        match w.number(key) {
            None => self.add(&format!("{rule}_ADDED"), &at, format!("the reader adds {key} {rv}")),
            Some(wv) if rv < wv => {
                self.add(&format!("{rule}_DECREASED"), &at, format!("the reader lowers {key} from {wv} to {rv}"))
            }
            Some(_) => {}
        }
    }

    /// A reader's lower limit must not be added or raised (`..._ADDED`, `..._INCREASED`).
    fn lower_limit(&mut self, w: Node<'_>, r: Node<'_>, key: &str, rule: &str, path: &str) {
        let Some(rv) = r.number(key) else { return };
        let at = format!("{path}/{key}");
        match w.number(key) {
            None => self.add(&format!("{rule}_ADDED"), &at, format!("the reader adds {key} {rv}")),
            Some(wv) if rv > wv => {
                self.add(&format!("{rule}_INCREASED"), &at, format!("the reader raises {key} from {wv} to {rv}"))
            }
            Some(_) => {}
        }
    }

    fn compare_strings(&mut self, w: Node<'_>, r: Node<'_>, path: &str) {
        self.upper_limit(w, r, "maxLength", "MAX_LENGTH", path);
        self.lower_limit(w, r, "minLength", "MIN_LENGTH", path);
        let Some(rp) = r.schema.get("pattern").and_then(Value::as_str) else { return };
        let at = format!("{path}/pattern");
        match w.schema.get("pattern").and_then(Value::as_str) {
            None => self.add("PATTERN_ADDED", &at, format!("the reader adds pattern {rp:?}")),
            Some(wp) if wp != rp => {
                self.add("PATTERN_CHANGED", &at, format!("the reader changes pattern {wp:?} to {rp:?}"))
            }
            Some(_) => {}
        }
    }

    fn compare_numbers(&mut self, w: Node<'_>, r: Node<'_>, path: &str) {
        self.compare_bound(w, r, path, true);
        self.compare_bound(w, r, path, false);
        let Some(rm) = r.number("multipleOf") else { return };
        let at = format!("{path}/multipleOf");
        match w.number("multipleOf") {
            None => self.add("MULTIPLE_OF_ADDED", &at, format!("the reader adds multipleOf {rm}")),
            Some(wm) if is_multiple(wm, rm) => {}
            Some(wm) => {
                let rule = if is_multiple(rm, wm) { "MULTIPLE_OF_EXPANDED" } else { "MULTIPLE_OF_CHANGED" };
                self.add(rule, &at, format!("multiples of {wm} are not all multiples of {rm}"));
            }
        }
    }

    /// maximum/exclusiveMaximum (upper) or minimum/exclusiveMinimum: the reader's range must
    /// hold the writer's.
    fn compare_bound(&mut self, w: Node<'_>, r: Node<'_>, path: &str, upper: bool) {
        let (inclusive, exclusive) =
            if upper { ("maximum", "exclusiveMaximum") } else { ("minimum", "exclusiveMinimum") };
        let Some(rb) = bound(r, inclusive, exclusive, upper) else { return };
        let key = if rb.exclusive && r.number(exclusive).is_some() { exclusive } else { inclusive };
        let rule = key.replace("exclusive", "EXCLUSIVE_").to_ascii_uppercase();
        let at = format!("{path}/{key}");
        match bound(w, inclusive, exclusive, upper) {
            None => self.add(&format!("{rule}_ADDED"), &at, format!("the reader adds {key} {}", rb.value)),
            Some(wb) if !bound_admits(wb, rb, upper) => {
                let change = if upper { "DECREASED" } else { "INCREASED" };
                self.add(
                    &format!("{rule}_{change}"),
                    &at,
                    format!("the writer's limit {} admits values the reader's {key} {} rejects", wb.value, rb.value),
                );
            }
            Some(_) => {}
        }
    }

    fn compare_objects(&mut self, w: Node<'_>, r: Node<'_>, path: &str) {
        self.compare_required(w, r, path);
        self.compare_properties(w, r, path);
        self.compare_pattern_properties(w, r, path);
        self.compare_additional(w, r, "additionalProperties", "ADDITIONAL_PROPERTIES", path);
        self.upper_limit(w, r, "maxProperties", "MAX_PROPERTIES", path);
        self.lower_limit(w, r, "minProperties", "MIN_PROPERTIES", path);
        self.compare_dependencies(w, r, path);
    }

    /// REQUIRED_ATTRIBUTE_ADDED / REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL: a property
    /// the reader newly requires may be missing from the writer's data, unless it has a
    /// default.
    fn compare_required(&mut self, w: Node<'_>, r: Node<'_>, path: &str) {
        let wr = required(w);
        let rprops = properties(r);
        let wprops = properties(w);
        for name in required(r).difference(&wr) {
            let prop = rprops.and_then(|p| p.get(*name));
            if prop.is_some_and(|p| p.get("default").is_some()) {
                continue; // REQUIRED_ATTRIBUTE_WITH_DEFAULT_ADDED: compatible
            }
            let known = wprops.is_some_and(|p| p.contains_key(*name));
            let rule = if known || matches!(model_for(w, name), Model::Open) {
                "REQUIRED_ATTRIBUTE_ADDED"
            } else {
                "REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL"
            };
            let at = format!("{path}/required/{}", segment(name));
            self.add(rule, &at, format!("the reader requires {name:?}, which the writer may leave out"));
        }
    }

    fn compare_properties(&mut self, w: Node<'_>, r: Node<'_>, path: &str) {
        let empty = Map::new();
        let wp = properties(w).unwrap_or(&empty);
        let rp = properties(r).unwrap_or(&empty);
        let names: BTreeSet<&String> = wp.keys().chain(rp.keys()).collect();
        for name in names {
            let at = format!("{path}/properties/{}", segment(name));
            match (wp.get(name), rp.get(name)) {
                (Some(ws), Some(rs)) => self.compare(w.at(ws), r.at(rs), &at),
                (Some(ws), None) => self.property_removed(w.at(ws), r, name, &at),
                (None, Some(rs)) => self.property_added(w, r.at(rs), name, &at),
                (None, None) => {}
            }
        }
    }

    /// A writer's property the reader does not list: read by the reader's open content model,
    /// or by its patternProperties/additionalProperties schema; a closed reader rejects it
    /// (PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL) unless the writer's schema was `false`.
    fn property_removed(&mut self, ws: Node<'_>, r: Node<'_>, name: &str, at: &str) {
        match model_for(r, name) {
            Model::Open => {} // PROPERTY_REMOVED_FROM_OPEN_CONTENT_MODEL
            Model::Partial(s) => {
                let sub = self.check(ws, s, at);
                if !sub.is_empty() {
                    self.add(
                        "PROPERTY_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
                        at,
                        format!("the reader's schema for unlisted properties does not read the writer's {name:?}"),
                    );
                    self.reasons.extend(sub);
                }
            }
            Model::Closed if rejects_all(ws.resolve().schema) => {}
            Model::Closed => self.add(
                "PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL",
                at,
                format!("the writer's property {name:?} is not allowed by the reader's closed content model"),
            ),
        }
    }

    /// A reader's property the writer does not list: under the writer's open content model the
    /// writer may have written anything there, so only a schema accepting anything reads it.
    fn property_added(&mut self, w: Node<'_>, rs: Node<'_>, name: &str, at: &str) {
        match model_for(w, name) {
            Model::Open if !accepts_all(rs.resolve().schema) => self.add(
                "PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL",
                at,
                format!("the writer's open content model may carry any value as {name:?}"),
            ),
            Model::Partial(s) => {
                let sub = self.check(s, rs, at);
                if !sub.is_empty() {
                    self.add("PROPERTY_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL", at, format!("the writer's schema for unlisted properties may carry values for {name:?} the reader rejects"));
                    self.reasons.extend(sub);
                }
            }
            // A closed writer never wrote it: PROPERTY_ADDED_TO_CLOSED_CONTENT_MODEL.
            _ => {}
        }
    }

    /// patternProperties present on both sides under the same pattern.
    fn compare_pattern_properties(&mut self, w: Node<'_>, r: Node<'_>, path: &str) {
        let (Some(wp), Some(rp)) = (
            w.schema.get("patternProperties").and_then(Value::as_object),
            r.schema.get("patternProperties").and_then(Value::as_object),
        ) else {
            return;
        };
        for (pattern, rs) in rp {
            if let Some(ws) = wp.get(pattern) {
                let at = format!("{path}/patternProperties/{}", segment(pattern));
                self.compare(w.at(ws), r.at(rs), &at);
            }
        }
    }

    /// additionalProperties / additionalItems: `..._REMOVED` (open to closed) and
    /// `..._NARROWED` (open to a schema) are incompatible.
    fn compare_additional(&mut self, w: Node<'_>, r: Node<'_>, key: &str, rule: &str, path: &str) {
        let at = format!("{path}/{key}");
        match (extra(w, key), extra(r, key)) {
            (Extra::Open | Extra::Schema(_), Extra::Closed) => self.add(
                &format!("{rule}_REMOVED"),
                &at,
                format!("the reader sets {key} to false; the writer allows them"),
            ),
            (Extra::Open, Extra::Schema(_)) => {
                self.add(&format!("{rule}_NARROWED"), &at, format!("the reader restricts {key} the writer leaves open"))
            }
            (Extra::Schema(ws), Extra::Schema(rs)) => self.compare(ws, rs, &at),
            _ => {}
        }
    }

    /// dependencies (draft 7) / dependentRequired / dependentSchemas.
    fn compare_dependencies(&mut self, w: Node<'_>, r: Node<'_>, path: &str) {
        for key in ["dependencies", "dependentRequired", "dependentSchemas"] {
            let Some(rd) = r.schema.get(key).and_then(Value::as_object) else { continue };
            let wd = w.schema.get(key).and_then(Value::as_object);
            for (name, rdep) in rd {
                let at = format!("{path}/{key}/{}", segment(name));
                self.compare_dependency(w, r, wd.and_then(|d| d.get(name)), rdep, &at);
            }
        }
    }

    fn compare_dependency(&mut self, w: Node<'_>, r: Node<'_>, wdep: Option<&Value>, rdep: &Value, at: &str) {
        match (wdep, rdep) {
            (Some(Value::Array(wa)), Value::Array(ra)) => {
                if ra.iter().all(|x| wa.contains(x)) {
                    return; // DEPENDENCY_ARRAY_NARROWED or unchanged
                }
                let rule = if wa.iter().all(|x| ra.contains(x)) {
                    "DEPENDENCY_ARRAY_EXTENDED"
                } else {
                    "DEPENDENCY_ARRAY_CHANGED"
                };
                self.add(rule, at, "the reader requires properties the writer does not require with it");
            }
            (None, Value::Array(_)) => self.add("DEPENDENCY_ARRAY_ADDED", at, "the reader adds a property dependency"),
            (None, _) => self.add("DEPENDENCY_SCHEMA_ADDED", at, "the reader adds a schema dependency"),
            (Some(ws), rs) => self.compare(w.at(ws), r.at(rs), at),
        }
    }

    fn compare_arrays(&mut self, w: Node<'_>, r: Node<'_>, path: &str) {
        let (wi, ri) = (items(w), items(r));
        let at = format!("{path}/items");
        match (wi.all, ri.all) {
            (Some(ws), Some(rs)) => self.compare(ws, rs, &at),
            (None, Some(rs)) if wi.tuple.is_empty() => self.compare(w.at(&TRUE), rs, &at),
            _ => {}
        }
        self.compare_tuples(&wi, &ri, path);
        self.compare_rest(&wi, &ri, path);
        self.upper_limit(w, r, "maxItems", "MAX_ITEMS", path);
        self.lower_limit(w, r, "minItems", "MIN_ITEMS", path);
        let unique = |n: Node<'_>| n.schema.get("uniqueItems").and_then(Value::as_bool) == Some(true);
        if unique(r) && !unique(w) {
            self.add("UNIQUE_ITEMS_ADDED", &format!("{path}/uniqueItems"), "the reader requires unique items");
        }
    }

    /// Tuple items by position; an item only one side lists is judged by the other side's
    /// content model (ITEM_ADDED_TO_OPEN_CONTENT_MODEL, ITEM_REMOVED_FROM_CLOSED_CONTENT_MODEL).
    fn compare_tuples(&mut self, wi: &Items<'_>, ri: &Items<'_>, path: &str) {
        let n = wi.tuple.len().max(ri.tuple.len());
        for i in 0..n {
            let at = format!("{path}/items/{i}");
            match (wi.tuple.get(i), ri.tuple.get(i)) {
                (Some(ws), Some(rs)) => self.compare(*ws, *rs, &at),
                (Some(ws), None) => self.item_removed(*ws, ri, &at),
                (None, Some(rs)) => self.item_added(wi, *rs, &at),
                (None, None) => {}
            }
        }
    }

    fn item_removed(&mut self, ws: Node<'_>, ri: &Items<'_>, at: &str) {
        let partial = match (&ri.rest, ri.all) {
            (_, Some(all)) => Some(all),
            (Extra::Schema(s), None) => Some(*s),
            (Extra::Open, None) => return, // ITEM_REMOVED_FROM_OPEN_CONTENT_MODEL
            (Extra::Closed, None) => None,
        };
        match partial {
            Some(s) => {
                let sub = self.check(ws, s, at);
                if !sub.is_empty() {
                    self.add(
                        "ITEM_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
                        at,
                        "the reader's schema for further items does not read the writer's item",
                    );
                    self.reasons.extend(sub);
                }
            }
            None if rejects_all(ws.resolve().schema) => {}
            None => self.add(
                "ITEM_REMOVED_FROM_CLOSED_CONTENT_MODEL",
                at,
                "the reader's closed tuple does not allow the writer's item",
            ),
        }
    }

    fn item_added(&mut self, wi: &Items<'_>, rs: Node<'_>, at: &str) {
        match &wi.rest {
            Extra::Open if !accepts_all(rs.resolve().schema) => self.add(
                "ITEM_ADDED_TO_OPEN_CONTENT_MODEL",
                at,
                "the writer's open tuple may carry any value at this position",
            ),
            Extra::Schema(s) => {
                let sub = self.check(*s, rs, at);
                if !sub.is_empty() {
                    self.add(
                        "ITEM_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
                        at,
                        "the writer's schema for further items may carry values the reader's item rejects",
                    );
                    self.reasons.extend(sub);
                }
            }
            _ => {} // ITEM_ADDED_TO_CLOSED_CONTENT_MODEL: compatible
        }
    }

    /// What follows the tuples (additionalItems, or `items` after `prefixItems`).
    fn compare_rest(&mut self, wi: &Items<'_>, ri: &Items<'_>, path: &str) {
        if wi.tuple.is_empty() && ri.tuple.is_empty() {
            return;
        }
        let at = format!("{path}/additionalItems");
        match (&wi.rest, &ri.rest) {
            (Extra::Open | Extra::Schema(_), Extra::Closed) => self.add(
                "ADDITIONAL_ITEMS_REMOVED",
                &at,
                "the reader allows no items beyond its tuple; the writer does",
            ),
            (Extra::Open, Extra::Schema(_)) => self.add(
                "ADDITIONAL_ITEMS_NARROWED",
                &at,
                "the reader restricts items beyond the tuple the writer leaves open",
            ),
            (Extra::Schema(ws), Extra::Schema(rs)) => self.compare(*ws, *rs, &at),
            _ => {}
        }
    }

    /// `not`: the values the reader excludes must be excluded by the writer too.
    fn compare_not(&mut self, w: Node<'_>, r: Node<'_>, path: &str) {
        let Some(rn) = r.get("not") else { return };
        let at = format!("{path}/not");
        match w.get("not") {
            None => self.add("TYPE_CHANGED", &at, "the reader adds a not the writer does not have"),
            Some(wn) => {
                if !self.check(rn, wn, &at).is_empty() {
                    self.add("NOT_TYPE_EXTENDED", &at, "the reader's not excludes values the writer allows");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(text: &str) -> JsonSchema {
        match JsonSchema::parse(text, &[]) {
            Ok(s) => s,
            Err(e) => panic!("{e}: {text}"),
        }
    }

    #[test]
    fn case_table() {
        super::super::cases::run(super::super::SchemaType::Json, include_str!("cases/json.toml"), 55);
    }

    #[test]
    fn reasons_name_the_rule_and_path() {
        let writer = schema(r#"{"type":"object","properties":{"a":{"type":"string"}}}"#);
        let reader = schema(r#"{"type":"object","properties":{"a":{"type":"string"},"x":{"type":"integer"}}}"#);
        let reasons = reader.can_read(&writer);
        assert_eq!(reasons.len(), 1, "{reasons:?}");
        assert!(reasons[0].starts_with("PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL at #/properties/x:"), "{reasons:?}");
    }

    #[test]
    fn parse_rejects_non_schemas() {
        let err = JsonSchema::parse("[1, 2]", &[]).err().unwrap_or_default();
        assert!(err.contains("not a JSON array"), "{err}");
        let err = JsonSchema::parse("{not json", &[]).err().unwrap_or_default();
        assert!(err.contains("not JSON"), "{err}");
        let err = JsonSchema::parse(r#"{"type": 5}"#, &[]).err().unwrap_or_default();
        assert!(err.contains("invalid JSON schema"), "{err}");
        assert!(JsonSchema::parse("true", &[]).is_ok());
    }

    #[test]
    fn canonical_sorts_keys_and_drops_whitespace() {
        let a = schema(r#"{ "type": "object", "properties": { "b": {"type":"string"}, "a": {"type":"integer"} } }"#);
        let b = schema(r#"{"properties":{"a":{"type":"integer"},"b":{"type":"string"}},"type":"object"}"#);
        assert_eq!(a.canonical(), b.canonical());
        assert_eq!(a.canonical(), r#"{"properties":{"a":{"type":"integer"},"b":{"type":"string"}},"type":"object"}"#);
    }

    #[test]
    fn validate_accepts_and_names_the_failing_path() {
        let s = schema(
            r#"{"type":"object","properties":{"id":{"type":"integer"},"tags":{"type":"array","items":{"type":"string"}}},"required":["id"]}"#,
        );
        assert!(s.validate(br#"{"id": 1, "tags": ["a"]}"#).is_ok());
        let err = s.validate(br#"{"id": 1, "tags": ["a", 2]}"#).err().unwrap_or_default();
        assert!(err.contains("/tags/1"), "{err}");
        let err = s.validate(br#"{"tags": []}"#).err().unwrap_or_default();
        assert!(err.contains("id"), "{err}");
        let err = s.validate(b"{\"id\": 1").err().unwrap_or_default();
        assert!(err.contains("not JSON"), "{err}");
        let err = s.validate(&[0xff, 0xfe]).err().unwrap_or_default();
        assert!(err.contains("UTF-8"), "{err}");
    }

    #[test]
    fn validate_follows_references() {
        let refs = [Resolved {
            name: "address.json".to_string(),
            schema: r#"{"type":"object","properties":{"zip":{"type":"string"}},"required":["zip"]}"#.to_string(),
        }];
        let s = JsonSchema::parse(r#"{"type":"object","properties":{"home":{"$ref":"address.json"}}}"#, &refs)
            .expect("schema with a reference");
        assert!(s.validate(br#"{"home": {"zip": "75001"}}"#).is_ok());
        let err = s.validate(br#"{"home": {}}"#).err().unwrap_or_default();
        assert!(err.contains("/home"), "{err}");
    }

    #[test]
    fn draft_2020_tuples_use_prefix_items() {
        let head = r#""$schema":"https://json-schema.org/draft/2020-12/schema","type":"array""#;
        let writer = schema(&format!(r#"{{{head},"prefixItems":[{{"type":"string"}}],"items":false}}"#));
        let reader =
            schema(&format!(r#"{{{head},"prefixItems":[{{"type":"string"}},{{"type":"integer"}}],"items":false}}"#));
        assert!(reader.can_read(&writer).is_empty(), "{:?}", reader.can_read(&writer));
        let reasons = writer.can_read(&reader);
        assert!(
            reasons.iter().any(|r| r.starts_with("ITEM_REMOVED_FROM_CLOSED_CONTENT_MODEL at #/items/1")),
            "{reasons:?}"
        );
        assert!(writer.validate(br#"["a"]"#).is_ok());
        assert!(writer.validate(br#"["a", 1]"#).is_err());
    }

    #[test]
    fn missing_reference_fails_to_parse() {
        let err = JsonSchema::parse(r#"{"$ref":"other.json"}"#, &[]).err().unwrap_or_default();
        assert!(err.contains("invalid JSON schema"), "{err}");
    }

    #[test]
    fn compatibility_follows_external_references() {
        let old = [Resolved {
            name: "item.json".to_string(),
            schema: r#"{"type":"object","properties":{"n":{"type":"integer"}}}"#.to_string(),
        }];
        let new = [Resolved {
            name: "item.json".to_string(),
            schema: r#"{"type":"object","properties":{"n":{"type":"string"}}}"#.to_string(),
        }];
        let text = r#"{"type":"array","items":{"$ref":"item.json"}}"#;
        let writer = JsonSchema::parse(text, &old).expect("writer");
        let reader = JsonSchema::parse(text, &new).expect("reader");
        let reasons = reader.can_read(&writer);
        assert!(reasons.iter().any(|r| r.contains("#/items/properties/n")), "{reasons:?}");
        assert!(writer.can_read(&writer).is_empty());
    }

    #[test]
    fn recursive_definitions_terminate() {
        let text = r##"{"$ref":"#/definitions/node","definitions":{"node":{"type":"object","properties":{"next":{"$ref":"#/definitions/node"},"v":{"type":"integer"}}}}}"##;
        let s = schema(text);
        assert!(s.can_read(&s).is_empty());
        let narrowed = schema(&text.replace(r#""v":{"type":"integer"}"#, r#""v":{"type":"integer","maximum":3}"#));
        let reasons = narrowed.can_read(&s);
        assert!(reasons.iter().any(|r| r.starts_with("MAXIMUM_ADDED at #/properties/v/maximum")), "{reasons:?}");
    }
}

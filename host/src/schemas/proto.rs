//! Protobuf schemas: `.proto` source (parsed by `protox-parse`) or a base64
//! `FileDescriptorProto` (what Confluent's clients send), with the files it imports. Type names
//! are resolved to full names and the common options interpreted, so the two forms of one
//! schema give the same descriptor and the same canonical text. Compatibility follows
//! Confluent's Protobuf rules; payloads are checked by walking the wire format.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use prost::Message;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::uninterpreted_option::NamePart;
use prost_types::{
    DescriptorProto, EnumDescriptorProto, EnumOptions, EnumValueOptions, FieldDescriptorProto, FieldOptions,
    FileDescriptorProto, FileOptions, MessageOptions, MethodOptions, ServiceOptions, UninterpretedOption,
};

use super::format::Resolved;

/// The file name a schema given as `.proto` source gets (Confluent's default name).
const DEFAULT_NAME: &str = "default";

/// Imports a registry has without references: Protobuf's well-known types and Confluent's own.
const BUNDLED_IMPORTS: &[&str] = &["google/protobuf/", "confluent/"];

/// Well-known types that are enums (every other unresolved bundled type is a message).
const BUNDLED_ENUMS: &[&str] = &[
    "google.protobuf.NullValue",
    "google.protobuf.Syntax",
    "google.protobuf.Field.Kind",
    "google.protobuf.Field.Cardinality",
];

/// Messages nest at most this deep in a payload.
const MAX_DEPTH: usize = 100;

/// A parsed Protobuf schema: its file, and every type it and the files it imports define
/// (with their descriptors).
#[derive(Debug)]
pub struct ProtoSchema {
    file: FileDescriptorProto,
    types: Types,
}

impl ProtoSchema {
    /// Parse `text` (`.proto` source or a base64 `FileDescriptorProto`); `refs` are its
    /// imports, named by import path. A missing `google/protobuf/...` or `confluent/...` import
    /// is tolerated: its types are taken on trust.
    pub fn parse(text: &str, refs: &[Resolved]) -> Result<ProtoSchema, String> {
        let mut file = decode(text, DEFAULT_NAME).map_err(|e| format!("invalid Protobuf schema: {e}"))?;
        let mut imports = Vec::with_capacity(refs.len());
        for r in refs {
            let mut import = decode(&r.schema, &r.name)
                .map_err(|e| format!("invalid Protobuf schema reference {:?}: {e}", r.name))?;
            import.name = Some(r.name.clone());
            imports.push(import);
        }
        let names: HashSet<&str> = refs.iter().map(|r| r.name.as_str()).collect();
        let types = Types::collect(std::iter::once(&file).chain(&imports));
        for import in &mut imports {
            prepare(import, &types, &names)?;
        }
        prepare(&mut file, &types, &names)?;
        // Collected again so the descriptors kept for compatibility carry resolved names.
        let types = Types::collect(std::iter::once(&file).chain(&imports));
        Ok(ProtoSchema { file, types })
    }

    /// The normalized descriptor without its file name, base64: the same schema sent as
    /// `.proto` source or as a descriptor has one canonical text.
    pub fn canonical(&self) -> String {
        let mut file = self.file.clone();
        file.name = None;
        STANDARD.encode(file.encode_to_vec())
    }

    /// Why `writer`'s data cannot be read with this schema (empty: it can).
    pub fn can_read(&self, writer: &ProtoSchema) -> Vec<String> {
        let mut diff = Diff { writer, reader: self, reasons: Vec::new(), compared: HashMap::new() };
        diff.compare_files();
        let mut seen = HashSet::new();
        diff.reasons.retain(|r| seen.insert(r.clone()));
        diff.reasons
    }

    /// Check that `payload` is a well-formed encoding of the message `message` names
    /// (Confluent's message indexes: `[0]` the first top-level message, `[1, 0]` the first
    /// message nested in the second; empty means `[0]`).
    pub fn validate(&self, payload: &[u8], message: &[i32]) -> Result<(), String> {
        let (desc, name) = self.message_at(message)?;
        let mut reader = Wire::new(payload);
        self.check_fields(&mut reader, desc, &name, 0, None)
    }

    /// The full name of the message at Confluent's message-index path (`[0]`: the first
    /// top-level message; `[1, 0]`: the first nested message of the second), for the record
    /// naming strategies.
    pub fn message_name(&self, path: &[i32]) -> Option<String> {
        let (first, rest) = path.split_first()?;
        let mut message = self.file.message_type.get(usize::try_from(*first).ok()?)?;
        let mut name = message.name().to_string();
        for i in rest {
            message = message.nested_type.get(usize::try_from(*i).ok()?)?;
            name = format!("{name}.{}", message.name());
        }
        Some(match self.file.package() {
            "" => name,
            package => format!("{package}.{name}"),
        })
    }

    /// The schema as `?format=serialized` asks: the normalized `FileDescriptorProto`, base64.
    pub fn serialized(&self) -> String {
        STANDARD.encode(self.file.encode_to_vec())
    }

    /// The descriptor and full name of the message at a Confluent message-index path. Map
    /// entries are not counted: Confluent's indexes come from the `.proto` text, which has none.
    fn message_at(&self, indexes: &[i32]) -> Result<(&DescriptorProto, String), String> {
        let indexes = if indexes.is_empty() { &[0][..] } else { indexes };
        let mut list: Vec<&DescriptorProto> = self.file.message_type.iter().collect();
        let mut found: Option<&DescriptorProto> = None;
        let mut name = self.file.package().to_string();
        for (depth, &i) in indexes.iter().enumerate() {
            let desc = usize::try_from(i).ok().and_then(|i| list.get(i).copied()).ok_or_else(|| {
                format!("message index {i} at depth {depth} is out of range: there are {} messages there", list.len())
            })?;
            name = join(&name, desc.name());
            list = desc.nested_type.iter().filter(|m| !is_map_entry(m)).collect();
            found = Some(desc);
        }
        found.map(|d| (d, name)).ok_or_else(|| "the schema has no message".to_string())
    }
}

/// `.proto` source, or base64 of a serialized `FileDescriptorProto` (tried first when the
/// text has only base64 characters, which `.proto` source never has).
fn decode(text: &str, name: &str) -> Result<FileDescriptorProto, String> {
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let base64_only =
        !compact.is_empty() && compact.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '='));
    if base64_only {
        let bytes = STANDARD.decode(&compact).map_err(|e| format!("not base64: {e}"))?;
        return FileDescriptorProto::decode(bytes.as_slice())
            .map_err(|e| format!("not a serialized FileDescriptorProto: {e}"));
    }
    protox_parse::parse(name, text).map_err(|e| parse_error(&e, text))
}

/// A parse error with the line and column it points at.
fn parse_error(e: &protox_parse::ParseError, source: &str) -> String {
    let Some(span) = e.span() else { return e.to_string() };
    let before = source.get(..span.start).unwrap_or(source);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("{e} (line {line}, column {column})")
}

/// `scope.name`, or `name` at the root.
fn join(scope: &str, name: &str) -> String {
    if scope.is_empty() { name.to_string() } else { format!("{scope}.{name}") }
}

/// A type some file defines.
#[derive(Debug, Clone)]
struct TypeInfo {
    /// The message's descriptor; `None` for an enum.
    message: Option<DescriptorProto>,
    /// The package of the defining file.
    package: String,
    /// Whether the defining file is proto3 (strings must be UTF-8).
    proto3: bool,
}

/// Every message and enum of a schema and its imports, by full name (no leading dot).
#[derive(Debug, Default)]
struct Types {
    by_name: HashMap<String, TypeInfo>,
}

impl Types {
    fn collect<'a>(files: impl Iterator<Item = &'a FileDescriptorProto>) -> Types {
        let mut types = Types::default();
        for file in files {
            let package = file.package().to_string();
            let proto3 = file.syntax() == "proto3";
            let info = |message: Option<DescriptorProto>| TypeInfo { message, package: package.clone(), proto3 };
            for e in &file.enum_type {
                types.by_name.insert(join(&package, e.name()), info(None));
            }
            for m in &file.message_type {
                types.add_message(&package, m, &info);
            }
        }
        types
    }

    fn add_message(&mut self, scope: &str, m: &DescriptorProto, info: &dyn Fn(Option<DescriptorProto>) -> TypeInfo) {
        let full = join(scope, m.name());
        for e in &m.enum_type {
            self.by_name.insert(join(&full, e.name()), info(None));
        }
        for n in &m.nested_type {
            self.add_message(&full, n, info);
        }
        self.by_name.insert(full, info(Some(m.clone())));
    }

    /// The full name `name` means in `scope`, searching from the innermost scope outwards as
    /// protoc does; a leading dot means the name is already full.
    fn lookup(&self, scope: &str, name: &str) -> Option<String> {
        if let Some(full) = name.strip_prefix('.') {
            return self.by_name.contains_key(full).then(|| full.to_string());
        }
        let mut scope = scope;
        loop {
            let candidate = join(scope, name);
            if self.by_name.contains_key(&candidate) {
                return Some(candidate);
            }
            if scope.is_empty() {
                return None;
            }
            scope = scope.rfind('.').map_or("", |i| &scope[..i]);
        }
    }

    /// The message a field's `type_name` names, with its full name.
    fn message(&self, type_name: &str) -> Option<(&DescriptorProto, &TypeInfo)> {
        let info = self.by_name.get(type_name.trim_start_matches('.'))?;
        info.message.as_ref().map(|m| (m, info))
    }
}

/// Resolve a file's type names and normalize it; an import that is neither among the
/// references nor bundled with a registry is an error.
fn prepare(file: &mut FileDescriptorProto, types: &Types, refs: &HashSet<&str>) -> Result<(), String> {
    let missing: Vec<&String> = file.dependency.iter().filter(|d| !refs.contains(d.as_str())).collect();
    if let Some(d) = missing.iter().find(|d| !BUNDLED_IMPORTS.iter().any(|p| d.starts_with(p))) {
        return Err(format!("import {d:?} is not among the schema's references"));
    }
    let resolver = Resolver { types, trusting: !missing.is_empty() };
    resolver.file(file)?;
    normalize_file(file);
    Ok(())
}

/// Turns the type names a file uses into full names (`.pkg.Msg`) and sets each field's type
/// (protox-parse leaves message and enum fields untyped; protoc's descriptors have both).
struct Resolver<'a> {
    types: &'a Types,
    /// A bundled import is missing: an unknown name is taken as one of its types.
    trusting: bool,
}

impl Resolver<'_> {
    fn file(&self, file: &mut FileDescriptorProto) -> Result<(), String> {
        let package = file.package().to_string();
        for m in &mut file.message_type {
            self.message(&package, m)?;
        }
        for f in &mut file.extension {
            self.field(&package, f)?;
        }
        for s in &mut file.service {
            let at = join(&package, s.name());
            for method in &mut s.method {
                method.input_type = Some(self.name(&at, method.input_type())?.0);
                method.output_type = Some(self.name(&at, method.output_type())?.0);
            }
        }
        Ok(())
    }

    fn message(&self, scope: &str, m: &mut DescriptorProto) -> Result<(), String> {
        let full = join(scope, m.name());
        for f in m.field.iter_mut().chain(m.extension.iter_mut()) {
            self.field(&full, f)?;
        }
        for n in &mut m.nested_type {
            self.message(&full, n)?;
        }
        Ok(())
    }

    fn field(&self, scope: &str, f: &mut FieldDescriptorProto) -> Result<(), String> {
        if let Some(extendee) = f.extendee.clone() {
            f.extendee = Some(self.name(scope, &extendee)?.0);
        }
        let Some(name) = f.type_name.clone() else { return Ok(()) };
        let (full, is_message) = self.name(scope, &name).map_err(|e| format!("field {}.{}: {e}", scope, f.name()))?;
        f.type_name = Some(full);
        if f.r#type != Some(Type::Group as i32) {
            f.set_type(if is_message { Type::Message } else { Type::Enum });
        }
        Ok(())
    }

    /// The full name (with its leading dot) and whether it is a message.
    fn name(&self, scope: &str, name: &str) -> Result<(String, bool), String> {
        if let Some(full) = self.types.lookup(scope, name) {
            let is_message = self.types.by_name.get(&full).is_some_and(|t| t.message.is_some());
            return Ok((format!(".{full}"), is_message));
        }
        if !self.trusting {
            return Err(format!("unknown type {name}"));
        }
        let full = name.trim_start_matches('.');
        Ok((format!(".{full}"), !BUNDLED_ENUMS.contains(&full)))
    }
}

/// What protoc and protox-parse write differently for one schema, made the same: no source
/// info, `proto2` as no syntax, default JSON names dropped, standard options interpreted.
fn normalize_file(file: &mut FileDescriptorProto) {
    file.source_code_info = None;
    if file.syntax.as_deref() == Some("proto2") {
        file.syntax = None;
    }
    file.options = file.options.take().and_then(|o| interpret(o, |o| &mut o.uninterpreted_option, file_option));
    file.message_type.iter_mut().for_each(normalize_message);
    file.enum_type.iter_mut().for_each(normalize_enum);
    file.extension.iter_mut().for_each(normalize_field);
    for s in &mut file.service {
        s.options = s.options.take().and_then(|o| interpret(o, |o| &mut o.uninterpreted_option, service_option));
        for m in &mut s.method {
            m.client_streaming = m.client_streaming.filter(|s| *s);
            m.server_streaming = m.server_streaming.filter(|s| *s);
            m.options = m.options.take().and_then(|o| interpret(o, |o| &mut o.uninterpreted_option, method_option));
        }
    }
}

fn normalize_message(m: &mut DescriptorProto) {
    m.options = m.options.take().and_then(|o| interpret(o, |o| &mut o.uninterpreted_option, message_option));
    m.field.iter_mut().chain(m.extension.iter_mut()).for_each(normalize_field);
    m.nested_type.iter_mut().for_each(normalize_message);
    m.enum_type.iter_mut().for_each(normalize_enum);
}

fn normalize_field(f: &mut FieldDescriptorProto) {
    if f.json_name.as_deref() == Some(default_json_name(f.name()).as_str()) {
        f.json_name = None;
    }
    f.options = f.options.take().and_then(|o| interpret(o, |o| &mut o.uninterpreted_option, field_option));
}

fn normalize_enum(e: &mut EnumDescriptorProto) {
    e.options = e.options.take().and_then(|o| interpret(o, |o| &mut o.uninterpreted_option, enum_option));
    for value in &mut e.value {
        value.options =
            value.options.take().and_then(|o| interpret(o, |o| &mut o.uninterpreted_option, enum_value_option));
    }
}

/// protoc's default JSON name: underscores dropped, the letter after each one capitalized.
fn default_json_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Give each simple (one-part, non-extension) option to `set`; those it takes leave the
/// uninterpreted list, the rest (custom options) stay in it. Options left empty are dropped,
/// as protoc writes none.
fn interpret<O: Default + PartialEq>(
    mut options: O,
    list: fn(&mut O) -> &mut Vec<UninterpretedOption>,
    set: fn(&mut O, &str, &UninterpretedOption) -> bool,
) -> Option<O> {
    let mut uninterpreted = std::mem::take(list(&mut options));
    uninterpreted.retain(|u| match u.name.as_slice() {
        [NamePart { name_part, is_extension: false }] => !set(&mut options, name_part, u),
        _ => true,
    });
    *list(&mut options) = uninterpreted;
    (options != O::default()).then_some(options)
}

fn set_bool(slot: &mut Option<bool>, v: &UninterpretedOption) -> bool {
    let value = match v.identifier_value.as_deref() {
        Some("true") => true,
        Some("false") => false,
        _ => return false,
    };
    *slot = Some(value);
    true
}

fn set_string(slot: &mut Option<String>, v: &UninterpretedOption) -> bool {
    match v.string_value.as_ref().and_then(|s| String::from_utf8(s.clone()).ok()) {
        Some(s) => {
            *slot = Some(s);
            true
        }
        None => false,
    }
}

/// An enum-valued option given by identifier.
fn set_enum(slot: &mut Option<i32>, v: &UninterpretedOption, names: &[(&str, i32)]) -> bool {
    let found = v.identifier_value.as_deref().and_then(|id| names.iter().find(|(n, _)| *n == id));
    match found {
        Some((_, n)) => {
            *slot = Some(*n);
            true
        }
        None => false,
    }
}

fn file_option(o: &mut FileOptions, name: &str, v: &UninterpretedOption) -> bool {
    match name {
        "java_package" => set_string(&mut o.java_package, v),
        "java_outer_classname" => set_string(&mut o.java_outer_classname, v),
        "java_multiple_files" => set_bool(&mut o.java_multiple_files, v),
        "java_string_check_utf8" => set_bool(&mut o.java_string_check_utf8, v),
        "optimize_for" => set_enum(&mut o.optimize_for, v, &[("SPEED", 1), ("CODE_SIZE", 2), ("LITE_RUNTIME", 3)]),
        "go_package" => set_string(&mut o.go_package, v),
        "cc_generic_services" => set_bool(&mut o.cc_generic_services, v),
        "java_generic_services" => set_bool(&mut o.java_generic_services, v),
        "py_generic_services" => set_bool(&mut o.py_generic_services, v),
        "php_generic_services" => set_bool(&mut o.php_generic_services, v),
        "deprecated" => set_bool(&mut o.deprecated, v),
        "cc_enable_arenas" => set_bool(&mut o.cc_enable_arenas, v),
        "objc_class_prefix" => set_string(&mut o.objc_class_prefix, v),
        "csharp_namespace" => set_string(&mut o.csharp_namespace, v),
        "swift_prefix" => set_string(&mut o.swift_prefix, v),
        "php_class_prefix" => set_string(&mut o.php_class_prefix, v),
        "php_namespace" => set_string(&mut o.php_namespace, v),
        "php_metadata_namespace" => set_string(&mut o.php_metadata_namespace, v),
        "ruby_package" => set_string(&mut o.ruby_package, v),
        _ => false,
    }
}

fn service_option(o: &mut ServiceOptions, name: &str, v: &UninterpretedOption) -> bool {
    name == "deprecated" && set_bool(&mut o.deprecated, v)
}

fn enum_option(o: &mut EnumOptions, name: &str, v: &UninterpretedOption) -> bool {
    match name {
        "allow_alias" => set_bool(&mut o.allow_alias, v),
        "deprecated" => set_bool(&mut o.deprecated, v),
        _ => false,
    }
}

fn enum_value_option(o: &mut EnumValueOptions, name: &str, v: &UninterpretedOption) -> bool {
    name == "deprecated" && set_bool(&mut o.deprecated, v)
}

fn message_option(o: &mut MessageOptions, name: &str, v: &UninterpretedOption) -> bool {
    match name {
        "message_set_wire_format" => set_bool(&mut o.message_set_wire_format, v),
        "no_standard_descriptor_accessor" => set_bool(&mut o.no_standard_descriptor_accessor, v),
        "deprecated" => set_bool(&mut o.deprecated, v),
        _ => false,
    }
}

fn field_option(o: &mut FieldOptions, name: &str, v: &UninterpretedOption) -> bool {
    match name {
        "ctype" => set_enum(&mut o.ctype, v, &[("STRING", 0), ("CORD", 1), ("STRING_PIECE", 2)]),
        "packed" => set_bool(&mut o.packed, v),
        "jstype" => set_enum(&mut o.jstype, v, &[("JS_NORMAL", 0), ("JS_STRING", 1), ("JS_NUMBER", 2)]),
        "lazy" => set_bool(&mut o.lazy, v),
        "deprecated" => set_bool(&mut o.deprecated, v),
        "weak" => set_bool(&mut o.weak, v),
        _ => false,
    }
}

fn method_option(o: &mut MethodOptions, name: &str, v: &UninterpretedOption) -> bool {
    match name {
        "deprecated" => set_bool(&mut o.deprecated, v),
        "idempotency_level" => set_enum(
            &mut o.idempotency_level,
            v,
            &[("IDEMPOTENCY_UNKNOWN", 0), ("NO_SIDE_EFFECTS", 1), ("IDEMPOTENT", 2)],
        ),
        _ => false,
    }
}

/// Confluent's groups of scalar types whose encodings read each other (enums are
/// general numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ScalarKind {
    GeneralNumber,
    SignedNumber,
    StringOrBytes,
    Fixed32,
    Fixed64,
    Float,
    Double,
}

/// What a field holds, as Confluent compares fields.
enum FieldKind {
    Scalar(ScalarKind),
    /// A map: its entry message.
    Map(Box<DescriptorProto>),
    /// A message, by full name (with the leading dot).
    Message(String),
}

impl FieldKind {
    fn name(&self) -> &'static str {
        match self {
            FieldKind::Scalar(_) => "scalar",
            FieldKind::Map(_) => "map",
            FieldKind::Message(_) => "message",
        }
    }
}

fn scalar_kind(t: Type) -> Option<ScalarKind> {
    Some(match t {
        Type::Int32 | Type::Int64 | Type::Uint32 | Type::Uint64 | Type::Bool | Type::Enum => ScalarKind::GeneralNumber,
        Type::Sint32 | Type::Sint64 => ScalarKind::SignedNumber,
        Type::String | Type::Bytes => ScalarKind::StringOrBytes,
        Type::Fixed32 | Type::Sfixed32 => ScalarKind::Fixed32,
        Type::Fixed64 | Type::Sfixed64 => ScalarKind::Fixed64,
        Type::Float => ScalarKind::Float,
        Type::Double => ScalarKind::Double,
        Type::Message | Type::Group => return None,
    })
}

/// A field's type as written in `.proto` (for messages).
fn type_label(f: &FieldDescriptorProto) -> String {
    match f.r#type() {
        Type::Message | Type::Enum | Type::Group => f.type_name().trim_start_matches('.').to_string(),
        t => t.as_str_name().trim_start_matches("TYPE_").to_ascii_lowercase(),
    }
}

/// A field belongs to a real oneof (a proto3 `optional` field's synthetic oneof is not one).
fn oneof_of(m: &DescriptorProto, f: &FieldDescriptorProto) -> Option<String> {
    if f.proto3_optional() {
        return None;
    }
    let i = usize::try_from(f.oneof_index?).ok()?;
    m.oneof_decl.get(i).map(|o| o.name().to_string())
}

/// A message's fields by number: outside oneofs, per oneof, and all of them.
struct Fields<'a> {
    top: BTreeMap<i32, &'a FieldDescriptorProto>,
    oneofs: BTreeMap<String, Vec<&'a FieldDescriptorProto>>,
    oneof_of: HashMap<i32, String>,
    all: BTreeMap<i32, &'a FieldDescriptorProto>,
}

impl<'a> Fields<'a> {
    fn of(m: &'a DescriptorProto) -> Fields<'a> {
        let mut fields =
            Fields { top: BTreeMap::new(), oneofs: BTreeMap::new(), oneof_of: HashMap::new(), all: BTreeMap::new() };
        for f in &m.field {
            fields.all.insert(f.number(), f);
            match oneof_of(m, f) {
                Some(o) => {
                    fields.oneof_of.insert(f.number(), o.clone());
                    fields.oneofs.entry(o).or_default().push(f);
                }
                None => {
                    fields.top.insert(f.number(), f);
                }
            }
        }
        fields
    }
}

/// The comparison of a writer's schema with a reader's (Confluent's `original` and `update`).
struct Diff<'a> {
    writer: &'a ProtoSchema,
    reader: &'a ProtoSchema,
    reasons: Vec<String>,
    /// Message pairs (writer, reader) compared, and whether they were compatible; a pair
    /// being compared counts as compatible, so recursive messages end.
    compared: HashMap<(String, String), bool>,
}

impl Diff<'_> {
    fn add(&mut self, rule: &str, at: &str, detail: impl std::fmt::Display) {
        self.reasons.push(format!("{rule} at {at}: {detail}"));
    }

    fn compare_files(&mut self) {
        let (writer, reader) = (self.writer, self.reader);
        let (w, r) = (&writer.file, &reader.file);
        let at = if r.package().is_empty() { "the file".to_string() } else { format!("package {}", r.package()) };
        if w.package() != r.package() {
            self.add("PACKAGE_CHANGED", &at, format!("the package was {:?}, now {:?}", w.package(), r.package()));
        }
        let syntax =
            |f: &FileDescriptorProto| if f.syntax().is_empty() { "proto2".to_string() } else { f.syntax().to_string() };
        if syntax(w) != syntax(r) {
            self.add("SYNTAX_VERSION_CHANGED", &at, format!("the syntax was {}, now {}", syntax(w), syntax(r)));
        }
        let (wp, rp) = (w.package().to_string(), r.package().to_string());
        self.compare_messages(&w.message_type, &r.message_type, &wp, &rp);
    }

    /// Messages of one scope, matched by name: MESSAGE_REMOVED when the reader lacks one
    /// (map entries aside); added, moved or reordered messages are compatible.
    fn compare_messages(&mut self, writer: &[DescriptorProto], reader: &[DescriptorProto], wscope: &str, rscope: &str) {
        // Map entries are compared through their map fields.
        for wm in writer.iter().filter(|m| !is_map_entry(m)) {
            let wfull = join(wscope, wm.name());
            match reader.iter().find(|rm| rm.name() == wm.name()) {
                Some(rm) => {
                    self.compare_message(wm, rm, &wfull, &join(rscope, rm.name()));
                }
                None => self.add("MESSAGE_REMOVED", &wfull, "the reader has no such message"),
            }
        }
    }

    /// Whether the reader's message reads the writer's (reasons added when not).
    fn compare_message(&mut self, wm: &DescriptorProto, rm: &DescriptorProto, wfull: &str, rfull: &str) -> bool {
        let key = (wfull.to_string(), rfull.to_string());
        if let Some(ok) = self.compared.get(&key) {
            return *ok;
        }
        self.compared.insert(key.clone(), true);
        let before = self.reasons.len();
        self.compare_fields(wm, rm, rfull);
        self.compare_messages(&wm.nested_type, &rm.nested_type, wfull, rfull);
        let ok = self.reasons.len() == before;
        self.compared.insert(key, ok);
        ok
    }

    fn compare_fields(&mut self, wm: &DescriptorProto, rm: &DescriptorProto, at: &str) {
        let (wf, rf) = (Fields::of(wm), Fields::of(rm));
        let mut wtop = wf.top.clone();
        self.compare_moves_into_oneofs(&wf, &rf, &mut wtop, at);
        self.compare_shared_oneofs(&wf, &rf, at);
        let numbers: BTreeSet<i32> = wtop.keys().chain(rf.top.keys()).copied().collect();
        for n in numbers {
            match (wtop.get(&n), rf.top.get(&n)) {
                (Some(w), None) if w.label() == Label::Required => {
                    self.add("REQUIRED_FIELD_REMOVED", &field_at(at, w), "a required field of the writer is gone")
                }
                (None, Some(r)) if r.label() == Label::Required => {
                    self.add("REQUIRED_FIELD_ADDED", &field_at(at, r), "the writer's data lacks this required field")
                }
                (Some(w), Some(r)) => self.compare_field(w, r, at),
                _ => {} // FIELD_ADDED, FIELD_REMOVED: compatible
            }
        }
        // Fields that moved into, out of or between oneofs keep their encoding: compared too.
        for (n, w) in &wf.all {
            let Some(r) = rf.all.get(n) else { continue };
            let (wo, ro) = (wf.oneof_of.get(n), rf.oneof_of.get(n));
            if wo != ro {
                self.compare_field(w, r, at);
            }
        }
    }

    /// MULTIPLE_FIELDS_MOVED_TO_ONEOF and FIELD_MOVED_TO_EXISTING_ONEOF: a reader's oneof may
    /// take in at most one of the writer's plain fields, and only as a new oneof.
    fn compare_moves_into_oneofs<'f>(
        &mut self,
        wf: &Fields<'f>,
        rf: &Fields<'_>,
        wtop: &mut BTreeMap<i32, &'f FieldDescriptorProto>,
        at: &str,
    ) {
        for (name, fields) in &rf.oneofs {
            let moved = fields.iter().filter(|f| wtop.remove(&f.number()).is_some()).count();
            let existing = fields.iter().filter(|f| wf.oneof_of.contains_key(&f.number())).count();
            let oneof = format!("{at}.{name}");
            if moved > 1 {
                self.add(
                    "MULTIPLE_FIELDS_MOVED_TO_ONEOF",
                    &oneof,
                    format!("{moved} of the writer's fields are now in one oneof"),
                );
            } else if moved == 1 && existing > 0 {
                self.add(
                    "FIELD_MOVED_TO_EXISTING_ONEOF",
                    &oneof,
                    "a field of the writer joins a oneof that had fields",
                );
            }
        }
    }

    /// Oneofs both sides have: ONEOF_FIELD_REMOVED when a writer's member is gone altogether.
    fn compare_shared_oneofs(&mut self, wf: &Fields<'_>, rf: &Fields<'_>, at: &str) {
        for (name, wfields) in &wf.oneofs {
            let Some(rfields) = rf.oneofs.get(name) else { continue }; // ONEOF_REMOVED: compatible
            for w in wfields {
                match rfields.iter().find(|r| r.number() == w.number()) {
                    Some(r) => self.compare_field(w, r, at),
                    None if !rf.all.contains_key(&w.number()) => self.add(
                        "ONEOF_FIELD_REMOVED",
                        &format!("{at}.{name}"),
                        format!("the writer's oneof member {} (field {}) is gone", w.name(), w.number()),
                    ),
                    None => {} // moved elsewhere: compared by number
                }
            }
        }
    }

    /// One field number on both sides: FIELD_KIND_CHANGED, FIELD_SCALAR_KIND_CHANGED,
    /// FIELD_NAMED_TYPE_CHANGED, and label changes; a rename is compatible.
    fn compare_field(&mut self, w: &FieldDescriptorProto, r: &FieldDescriptorProto, at: &str) {
        let path = field_at(at, r);
        match (self.kind(w, true), self.kind(r, false)) {
            (FieldKind::Scalar(wk), FieldKind::Scalar(rk)) if wk != rk => self.add(
                "FIELD_SCALAR_KIND_CHANGED",
                &path,
                format!("{} does not read {}", type_label(r), type_label(w)),
            ),
            (FieldKind::Scalar(kind), FieldKind::Scalar(_)) => self.compare_labels(w, r, kind, &path),
            (FieldKind::Message(wn), FieldKind::Message(rn)) => self.compare_named(&wn, &rn, &path),
            (FieldKind::Map(we), FieldKind::Map(re)) => self.compare_map(&we, &re, &path),
            (wk, rk) => {
                self.add("FIELD_KIND_CHANGED", &path, format!("a {} field is now a {} field", wk.name(), rk.name()))
            }
        }
        self.compare_required(w, r, &path);
    }

    fn kind(&self, f: &FieldDescriptorProto, writer: bool) -> FieldKind {
        if let Some(kind) = scalar_kind(f.r#type()) {
            return FieldKind::Scalar(kind);
        }
        let types = if writer { &self.writer.types } else { &self.reader.types };
        match types.message(f.type_name()) {
            Some((m, _)) if is_map_entry(m) => FieldKind::Map(Box::new(m.clone())),
            _ => FieldKind::Message(f.type_name().to_string()),
        }
    }

    /// Repeated against singular: numbers are incompatible (packed encodings are not read as
    /// one value: FIELD_NUMERIC_LABEL_CHANGED); strings and bytes are
    /// (FIELD_STRING_OR_BYTES_LABEL_CHANGED: compatible); messages have the same encoding.
    fn compare_labels(&mut self, w: &FieldDescriptorProto, r: &FieldDescriptorProto, kind: ScalarKind, path: &str) {
        let (wr, rr) = (w.label() == Label::Repeated, r.label() == Label::Repeated);
        if wr != rr && kind != ScalarKind::StringOrBytes {
            let change = if rr { "singular to repeated" } else { "repeated to singular" };
            self.add("FIELD_NUMERIC_LABEL_CHANGED", path, format!("a numeric field changed from {change}"));
        }
    }

    /// A field the reader makes required the writer may have left out (proto2).
    fn compare_required(&mut self, w: &FieldDescriptorProto, r: &FieldDescriptorProto, path: &str) {
        if r.label() == Label::Required && w.label() != Label::Required {
            self.add("FIELD_LABEL_CHANGED", path, "the reader requires a field the writer has as optional");
        }
    }

    /// Message fields: the types' names without package must match, and the reader's message
    /// must read the writer's (else FIELD_NAMED_TYPE_CHANGED).
    fn compare_named(&mut self, wn: &str, rn: &str, path: &str) {
        let (writer, reader) = (self.writer, self.reader);
        let (Some((wm, wi)), Some((rm, ri))) = (writer.types.message(wn), reader.types.message(rn)) else {
            if wn != rn {
                self.add(
                    "FIELD_NAMED_TYPE_CHANGED",
                    path,
                    format!("type {} is now {}", wn.trim_start_matches('.'), rn.trim_start_matches('.')),
                );
            }
            return;
        };
        let (wfull, rfull) = (wn.trim_start_matches('.'), rn.trim_start_matches('.'));
        let local = |full: &'_ str, package: &str| -> String {
            full.strip_prefix(package).and_then(|s| s.strip_prefix('.')).unwrap_or(full).to_string()
        };
        if local(wfull, &wi.package) != local(rfull, &ri.package) {
            self.add("FIELD_NAMED_TYPE_CHANGED", path, format!("type {wfull} is now {rfull}"));
            return;
        }
        if !self.compare_message(wm, rm, wfull, rfull) {
            self.add("FIELD_NAMED_TYPE_CHANGED", path, format!("message {rfull} does not read the writer's {wfull}"));
        }
    }

    /// Maps: keys and values compared as fields.
    fn compare_map(&mut self, we: &DescriptorProto, re: &DescriptorProto, path: &str) {
        for n in [1, 2] {
            let (w, r) = (we.field.iter().find(|f| f.number() == n), re.field.iter().find(|f| f.number() == n));
            if let (Some(w), Some(r)) = (w, r) {
                self.compare_field(w, r, path);
            }
        }
    }
}

/// The message protoc generates for a `map<K, V>` field.
fn is_map_entry(m: &DescriptorProto) -> bool {
    m.options.as_ref().and_then(|o| o.map_entry) == Some(true)
}

/// `Message.field (#n)`.
fn field_at(message: &str, f: &FieldDescriptorProto) -> String {
    format!("{message}.{} (#{})", f.name(), f.number())
}

/// The wire type a field's values have (packed repeated numbers aside).
fn wire_type(t: Type) -> u8 {
    match t {
        Type::Double | Type::Fixed64 | Type::Sfixed64 => 1,
        Type::String | Type::Bytes | Type::Message => 2,
        Type::Group => 3,
        Type::Float | Type::Fixed32 | Type::Sfixed32 => 5,
        _ => 0,
    }
}

/// A cursor over wire-format bytes.
struct Wire<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Wire<'a> {
    fn new(bytes: &'a [u8]) -> Wire<'a> {
        Wire { bytes, pos: 0 }
    }

    fn done(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    fn varint(&mut self) -> Result<u64, String> {
        let start = self.pos;
        let mut value = 0u64;
        for shift in (0..70).step_by(7) {
            let Some(&b) = self.bytes.get(self.pos) else {
                return Err(format!("varint at byte {start} runs past the end"));
            };
            self.pos += 1;
            value |= u64::from(b & 0x7f).checked_shl(shift).unwrap_or(0);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(format!("varint at byte {start} is longer than 10 bytes"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.bytes.len()).ok_or_else(|| {
            format!("{n} bytes at byte {} run past the end ({} left)", self.pos, self.bytes.len() - self.pos)
        })?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    /// A length-delimited value; it keeps its absolute position for errors.
    fn delimited(&mut self) -> Result<Wire<'a>, String> {
        let n = self.varint()?;
        let n = usize::try_from(n).map_err(|_| format!("length {n} is too large"))?;
        let start = self.pos;
        self.take(n)?;
        Ok(Wire { bytes: &self.bytes[..start + n], pos: start })
    }

    /// Skip a value of a field the schema does not know.
    fn skip(&mut self, wire: u8, number: u64, depth: usize) -> Result<(), String> {
        match wire {
            0 => self.varint().map(drop),
            1 => self.take(8).map(drop),
            2 => self.delimited().map(drop),
            3 => self.skip_group(number, depth),
            5 => self.take(4).map(drop),
            w => Err(format!("field {number} has invalid wire type {w}")),
        }
    }

    fn skip_group(&mut self, number: u64, depth: usize) -> Result<(), String> {
        if depth >= MAX_DEPTH {
            return Err(format!("groups nest deeper than {MAX_DEPTH}"));
        }
        loop {
            if self.done() {
                return Err(format!("group {number} has no end"));
            }
            let key = self.varint()?;
            let (n, wire) = (key >> 3, (key & 7) as u8);
            if wire == 4 {
                return if n == number {
                    Ok(())
                } else {
                    Err(format!("group {number} ends with the end of group {n}"))
                };
            }
            self.skip(wire, n, depth + 1)?;
        }
    }
}

impl ProtoSchema {
    /// Walk a message's fields until the input ends (or, in a group, until its end tag).
    fn check_fields(
        &self,
        wire: &mut Wire<'_>,
        m: &DescriptorProto,
        name: &str,
        depth: usize,
        group: Option<u64>,
    ) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(format!("messages nest deeper than {MAX_DEPTH}"));
        }
        let proto3 = self.types.by_name.get(name).is_some_and(|t| t.proto3);
        let mut seen = HashSet::new();
        loop {
            if wire.done() {
                if let Some(n) = group {
                    return Err(format!("{name}: group {n} has no end"));
                }
                break;
            }
            let at = wire.pos;
            let key = wire.varint().map_err(|e| format!("{name}: {e}"))?;
            let (number, kind) = (key >> 3, (key & 7) as u8);
            if number == 0 || number > 536_870_911 {
                return Err(format!("{name}: invalid field number {number} at byte {at}"));
            }
            if kind == 4 {
                if group == Some(number) {
                    break;
                }
                return Err(format!("{name}: unexpected end of group {number} at byte {at}"));
            }
            match m.field.iter().find(|f| u64::try_from(f.number()).ok() == Some(number)) {
                Some(f) => {
                    self.check_field(wire, f, kind, depth, proto3)
                        .map_err(|e| format!("{name}.{} (field {number}) at byte {at}: {e}", f.name()))?;
                    seen.insert(number);
                }
                None => wire
                    .skip(kind, number, depth)
                    .map_err(|e| format!("{name}: unknown field {number} at byte {at}: {e}"))?,
            }
        }
        self.check_required(m, name, &seen)
    }

    /// proto2 required fields must be present.
    fn check_required(&self, m: &DescriptorProto, name: &str, seen: &HashSet<u64>) -> Result<(), String> {
        let missing = m
            .field
            .iter()
            .find(|f| f.label() == Label::Required && !u64::try_from(f.number()).is_ok_and(|n| seen.contains(&n)));
        match missing {
            Some(f) => Err(format!("{name}: required field {} (field {}) is missing", f.name(), f.number())),
            None => Ok(()),
        }
    }

    /// One value of a known field: its wire type must fit the field's type; strings of a
    /// proto3 message must be UTF-8 (proto2 parsers do not all check).
    fn check_field(
        &self,
        wire: &mut Wire<'_>,
        f: &FieldDescriptorProto,
        kind: u8,
        depth: usize,
        proto3: bool,
    ) -> Result<(), String> {
        let t = f.r#type();
        let expected = wire_type(t);
        if kind == 2 && expected != 2 && f.label() == Label::Repeated && expected != 3 {
            return check_packed(&mut wire.delimited()?, t);
        }
        if kind != expected {
            return Err(format!("wire type {kind} does not fit a {} field (wire type {expected})", type_label(f)));
        }
        match t {
            Type::Message => {
                let mut inner = wire.delimited()?;
                match self.types.message(f.type_name()) {
                    Some((m, _)) => {
                        self.check_fields(&mut inner, m, f.type_name().trim_start_matches('.'), depth + 1, None)
                    }
                    None => Ok(()), // a bundled type taken on trust
                }
            }
            Type::Group => match self.types.message(f.type_name()) {
                Some((m, _)) => self.check_fields(
                    wire,
                    m,
                    f.type_name().trim_start_matches('.'),
                    depth + 1,
                    Some(u64::try_from(f.number()).unwrap_or(0)),
                ),
                None => wire.skip_group(u64::try_from(f.number()).unwrap_or(0), depth),
            },
            Type::String => {
                let value = wire.delimited()?;
                let text = &value.bytes[value.pos..];
                if proto3 && std::str::from_utf8(text).is_err() {
                    return Err("string is not valid UTF-8".to_string());
                }
                Ok(())
            }
            _ => wire.skip(kind, 0, depth),
        }
    }
}

/// A packed run of numbers: whole varints, or a multiple of the fixed width.
fn check_packed(values: &mut Wire<'_>, t: Type) -> Result<(), String> {
    let width = match wire_type(t) {
        1 => 8,
        5 => 4,
        _ => {
            while !values.done() {
                values.varint()?;
            }
            return Ok(());
        }
    };
    let len = values.bytes.len() - values.pos;
    if !len.is_multiple_of(width) {
        return Err(format!("packed run of {len} bytes is not a multiple of {width}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(text: &str) -> ProtoSchema {
        match ProtoSchema::parse(text, &[]) {
            Ok(s) => s,
            Err(e) => panic!("{e}: {text}"),
        }
    }

    #[test]
    fn case_table() {
        super::super::cases::run(super::super::SchemaType::Protobuf, include_str!("cases/protobuf.toml"), 50);
    }

    const ORDER: &str = r#"
        syntax = "proto3";
        package shop;
        import "google/protobuf/timestamp.proto";
        option java_package = "com.example.shop";

        // An order.
        message Order {
          int64 id = 1;
          string customer = 2 [json_name = "customer"];
          repeated Line lines = 3;
          Status status = 4;
          map<string, int32> counts = 5;
          google.protobuf.Timestamp at = 6;
          optional int32 priority = 7;
          message Line { string sku = 1; sint32 qty = 2; }
          enum Status { NEW = 0; PAID = 1; }
        }
        message Empty {}
    "#;

    #[test]
    fn source_and_descriptor_have_one_canonical_form() {
        let source = schema(ORDER);
        let from_descriptor = schema(&source.serialized());
        assert_eq!(source.canonical(), from_descriptor.canonical());
        assert_eq!(source.serialized(), from_descriptor.serialized());
        assert!(from_descriptor.can_read(&source).is_empty());
        // Comments and layout do not change the canonical form.
        let compact = ORDER.replace("// An order.", "").replace("\n", " ");
        assert_eq!(schema(&compact).canonical(), source.canonical());
    }

    #[test]
    fn descriptor_as_protoc_writes_it_matches_source() {
        // protoc writes full type names, types and JSON names; protox-parse writes neither.
        let source = schema("syntax = \"proto3\"; package p; message A { B b = 1; int32 the_count = 2; } message B {}");
        let field = |name: &str, number, t: Type, type_name: Option<&str>, json: &str| FieldDescriptorProto {
            name: Some(name.to_string()),
            number: Some(number),
            label: Some(Label::Optional as i32),
            r#type: Some(t as i32),
            type_name: type_name.map(str::to_string),
            json_name: Some(json.to_string()),
            ..Default::default()
        };
        let file = FileDescriptorProto {
            name: Some("p/a.proto".to_string()),
            package: Some("p".to_string()),
            syntax: Some("proto3".to_string()),
            message_type: vec![
                DescriptorProto {
                    name: Some("A".to_string()),
                    field: vec![
                        field("b", 1, Type::Message, Some(".p.B"), "b"),
                        field("the_count", 2, Type::Int32, None, "theCount"),
                    ],
                    ..Default::default()
                },
                DescriptorProto { name: Some("B".to_string()), ..Default::default() },
            ],
            ..Default::default()
        };
        let protoc = schema(&STANDARD.encode(file.encode_to_vec()));
        assert_eq!(protoc.canonical(), source.canonical());
    }

    #[test]
    fn services_resolve_their_types() {
        let s = schema("syntax = \"proto3\"; package demo; message Q {} service S { rpc Get(Q) returns (stream Q); }");
        let method = &s.file.service[0].method[0];
        assert_eq!((method.input_type(), method.output_type()), (".demo.Q", ".demo.Q"));
        assert_eq!((method.client_streaming, method.server_streaming), (None, Some(true)));
    }

    #[test]
    fn parse_errors_say_where() {
        let err = ProtoSchema::parse("syntax = \"proto3\";\nmessage A { int32 a = }", &[]).err().unwrap_or_default();
        assert!(err.contains("line 2"), "{err}");
        let err =
            ProtoSchema::parse("syntax = \"proto3\"; message A { Missing m = 1; }", &[]).err().unwrap_or_default();
        assert!(err.contains("unknown type Missing"), "{err}");
        let err = ProtoSchema::parse("syntax = \"proto3\"; import \"other.proto\"; message A {}", &[])
            .err()
            .unwrap_or_default();
        assert!(err.contains("other.proto"), "{err}");
        let err = ProtoSchema::parse("AAAA////", &[]).err().unwrap_or_default();
        assert!(err.contains("FileDescriptorProto"), "{err}");
    }

    #[test]
    fn imports_resolve_through_references() {
        let refs = [Resolved {
            name: "common/money.proto".to_string(),
            schema: "syntax = \"proto3\"; package common; message Money { int64 units = 1; string currency = 2; }"
                .to_string(),
        }];
        let text = "syntax = \"proto3\"; package shop; import \"common/money.proto\"; message Price { common.Money amount = 1; }";
        let s = ProtoSchema::parse(text, &refs).expect("schema with an import");
        assert!(s.types.message(".common.Money").is_some());
        // Price { amount = Money { units = 150, currency = "EUR" } }
        let money = [0x08, 150, 1, 0x12, 3, b'E', b'U', b'R'];
        let mut payload = vec![0x0a, money.len() as u8];
        payload.extend_from_slice(&money);
        assert!(s.validate(&payload, &[0]).is_ok());
        // The import's field 2 is a string: wire type 0 does not fit.
        let bad = [0x0a, 2, 0x10, 1];
        let err = s.validate(&bad, &[0]).err().unwrap_or_default();
        assert!(err.contains("common.Money.currency"), "{err}");
        // An import whose message changed incompatibly makes the schema incompatible.
        let changed = [Resolved {
            name: "common/money.proto".to_string(),
            schema: "syntax = \"proto3\"; package common; message Money { int64 units = 1; double currency = 2; }"
                .to_string(),
        }];
        let reader = ProtoSchema::parse(text, &changed).expect("reader");
        let reasons = reader.can_read(&s);
        assert!(reasons.iter().any(|r| r.starts_with("FIELD_NAMED_TYPE_CHANGED at shop.Price.amount")), "{reasons:?}");
    }

    #[test]
    fn validate_walks_the_wire_format() {
        let s = schema(ORDER);
        // id = 7, customer = "ann", lines = [{sku = "x", qty = -1}], counts = {"a": 2}, at = {seconds = 1}
        let line = [0x0a, 1, b'x', 0x10, 1];
        let entry = [0x0a, 1, b'a', 0x10, 2];
        let mut ok = vec![0x08, 7, 0x12, 3, b'a', b'n', b'n', 0x1a, line.len() as u8];
        ok.extend_from_slice(&line);
        ok.extend_from_slice(&[0x2a, entry.len() as u8]);
        ok.extend_from_slice(&entry);
        ok.extend_from_slice(&[0x32, 2, 0x08, 1]);
        assert_eq!(s.validate(&ok, &[0]), Ok(()));
        assert_eq!(s.validate(&ok, &[]), Ok(()));
        // Unknown field 99 (varint) is allowed.
        let mut unknown = ok.clone();
        unknown.extend_from_slice(&[0x98, 0x06, 5]);
        assert_eq!(s.validate(&unknown, &[0]), Ok(()));
        // customer (field 2) as a varint.
        let err = s.validate(&[0x10, 1], &[0]).err().unwrap_or_default();
        assert!(err.contains("shop.Order.customer (field 2)") && err.contains("wire type 0"), "{err}");
        // A length past the end.
        let err = s.validate(&[0x12, 9, b'a'], &[0]).err().unwrap_or_default();
        assert!(err.contains("past the end"), "{err}");
        // A nested line whose sku is a fixed32.
        let err = s.validate(&[0x1a, 5, 0x0d, 0, 0, 0, 0], &[0]).err().unwrap_or_default();
        assert!(err.contains("shop.Order.Line.sku"), "{err}");
        // Invalid UTF-8 in a proto3 string.
        let err = s.validate(&[0x12, 1, 0xff], &[0]).err().unwrap_or_default();
        assert!(err.contains("UTF-8"), "{err}");
        // A truncated varint.
        let err = s.validate(&[0x08, 0x80], &[0]).err().unwrap_or_default();
        assert!(err.contains("varint"), "{err}");
    }

    #[test]
    fn validate_picks_the_message_by_index() {
        let s = schema(ORDER);
        // [1] is Empty: anything unknown is fine, a bad wire type 7 is not.
        assert_eq!(s.validate(&[0x08, 1], &[1]), Ok(()));
        assert!(s.validate(&[0x0f], &[1]).is_err());
        // [0, 0] is Order.Line: field 2 is sint32 (a varint).
        assert_eq!(s.validate(&[0x10, 3], &[0, 0]), Ok(()));
        let err = s.validate(&[0x15, 0, 0, 0, 0], &[0, 0]).err().unwrap_or_default();
        assert!(err.contains("shop.Order.Line.qty"), "{err}");
        let err = s.validate(&[], &[2]).err().unwrap_or_default();
        assert!(err.contains("out of range"), "{err}");
        let err = s.validate(&[], &[0, 5]).err().unwrap_or_default();
        assert!(err.contains("out of range"), "{err}");
    }

    #[test]
    fn validate_packed_groups_and_required() {
        let s = schema(
            "syntax = \"proto2\"; message M { repeated int32 xs = 1; repeated fixed32 fs = 2; required string name = 3; optional group G = 4 { optional int32 v = 5; } }",
        );
        // xs packed [1, 300], fs packed [1], name = "n", group G { v = 1 }
        let payload = [0x0a, 3, 1, 0xac, 0x02, 0x12, 4, 1, 0, 0, 0, 0x1a, 1, b'n', 0x23, 0x28, 1, 0x24];
        assert_eq!(s.validate(&payload, &[0]), Ok(()));
        // xs unpacked is fine too.
        assert_eq!(s.validate(&[0x08, 1, 0x08, 2, 0x1a, 0], &[0]), Ok(()));
        let err = s.validate(&[0x12, 3, 1, 0, 0, 0x1a, 0], &[0]).err().unwrap_or_default();
        assert!(err.contains("multiple of 4"), "{err}");
        let err = s.validate(&[0x08, 1], &[0]).err().unwrap_or_default();
        assert!(err.contains("required field name"), "{err}");
        let err = s.validate(&[0x1a, 0, 0x23, 0x28, 1], &[0]).err().unwrap_or_default();
        assert!(err.contains("no end"), "{err}");
    }

    #[test]
    fn missing_well_known_imports_are_tolerated() {
        let s = schema(
            "syntax = \"proto3\"; import \"google/protobuf/struct.proto\"; message A { google.protobuf.NullValue n = 1; google.protobuf.Struct s = 2; }",
        );
        let a = &s.file.message_type[0];
        assert_eq!(a.field[0].r#type(), Type::Enum);
        assert_eq!(a.field[1].r#type(), Type::Message);
        assert_eq!(a.field[1].type_name(), ".google.protobuf.Struct");
        assert_eq!(s.validate(&[0x08, 0, 0x12, 2, 0x08, 1], &[0]), Ok(()));
    }

    #[test]
    fn options_are_interpreted() {
        let s = schema(
            "syntax = \"proto3\"; option java_package = \"x.y\"; option optimize_for = SPEED; message A { repeated int32 v = 1 [packed = false, deprecated = true]; }",
        );
        let options = s.file.options.clone().unwrap_or_default();
        assert_eq!(options.java_package.as_deref(), Some("x.y"));
        assert_eq!(options.optimize_for, Some(1));
        assert!(options.uninterpreted_option.is_empty());
        let field = s.file.message_type[0].field[0].options.clone().unwrap_or_default();
        assert_eq!((field.packed, field.deprecated), (Some(false), Some(true)));
    }
}

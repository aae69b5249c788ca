//! Integers and optional twins in request bodies, read as the OpenAPI document types them.
//! JSON Schema counts `3969.0` as the integer 3969 and types these fields `int64`, so a body
//! field takes an integral number however it is written, up to `i64::MAX`, and refuses the rest
//! with what it got.

use serde::de::Error;
use serde::{Deserialize, Deserializer};

fn integral<E: Error>(n: &serde_json::Number) -> Result<i128, E> {
    if let Some(u) = n.as_u64() {
        return Ok(i128::from(u));
    }
    if let Some(i) = n.as_i64() {
        return Ok(i128::from(i));
    }
    match n.as_f64() {
        // Within 2^63 an integral f64 converts exactly.
        Some(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => Ok(f as i128),
        _ => Err(E::custom(format!("expected an integer, got {n}"))),
    }
}

fn bounded<T: TryFrom<i128>, E: Error>(n: &serde_json::Number) -> Result<T, E> {
    let v = integral::<E>(n)?;
    if v > i128::from(i64::MAX) {
        return Err(E::custom(format!("{v} is over {}, the largest integer a field takes", i64::MAX)));
    }
    T::try_from(v).map_err(|_| E::custom(format!("{v} is out of this field's range (see /openapi.json)")))
}

/// An integer field (`#[serde(deserialize_with = "int::one")]`).
pub(super) fn one<'de, D: Deserializer<'de>, T: TryFrom<i128>>(d: D) -> Result<T, D::Error> {
    bounded(&serde_json::Number::deserialize(d)?)
}

/// An optional integer field (with `#[serde(default)]`): null or absent is `None`.
pub(super) fn opt<'de, D: Deserializer<'de>, T: TryFrom<i128>>(d: D) -> Result<Option<T>, D::Error> {
    Option::<serde_json::Number>::deserialize(d)?.map(|n| bounded(&n)).transpose()
}

/// A field that may be given as null: `Some(None)` when present as null, `None` (with
/// `#[serde(default)]`) when absent, so "give one of `value` and `value_base64`" can tell.
pub(super) fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Ok(Some(Option::deserialize(d)?))
}

/// An optional integer query parameter: the same bounds, from its text.
pub(super) fn query<'de, D: Deserializer<'de>, T: TryFrom<i128>>(d: D) -> Result<Option<T>, D::Error> {
    let Some(text) = Option::<String>::deserialize(d)? else { return Ok(None) };
    let n: serde_json::Number =
        text.trim().parse().map_err(|_| D::Error::custom(format!("expected an integer, got {text:?}")))?;
    bounded(&n).map(Some)
}

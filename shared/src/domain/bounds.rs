//! Numeric bounds of request fields, each stated once: validation checks values against them
//! and, with the `openapi` feature, the document's schemas are built from them, so the two
//! cannot drift. Integers are read as JSON Schema defines them: `843.0` is the integer 843.

use serde::{Deserialize, Deserializer};
use serde_json::Number;

/// The largest integer every JSON implementation reads exactly (RFC 7493, I-JSON): the bound
/// for counts that have no smaller natural one.
pub const JSON_SAFE_MAX: i64 = (1 << 53) - 1;

/// An inclusive range of integers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IntRange {
    pub min: i64,
    pub max: i64,
}

impl IntRange {
    pub const fn new(min: i64, max: i64) -> Self {
        Self { min, max }
    }

    pub fn contains(&self, n: i64) -> bool {
        (self.min..=self.max).contains(&n)
    }

    /// `integer` with this range's `minimum` and `maximum`.
    #[cfg(feature = "openapi")]
    pub fn schema(&self) -> utoipa::openapi::schema::Object {
        use utoipa::openapi::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(self.min))
            .maximum(Some(self.max))
            .build()
    }

    /// The same, or `null` (which takes a default).
    #[cfg(feature = "openapi")]
    pub fn nullable_schema(&self) -> utoipa::openapi::schema::Object {
        nullable(self.schema())
    }
}

/// `schema` whose single type becomes that type or `null`.
#[cfg(feature = "openapi")]
pub fn nullable(mut schema: utoipa::openapi::schema::Object) -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::SchemaType;
    if let SchemaType::Type(t) = schema.schema_type {
        schema.schema_type = SchemaType::Array(vec![t, utoipa::openapi::Type::Null]);
    }
    schema
}

/// A JSON number as an integer of type `T`, when it is one: `7` and `7.0` are, `7.5` is not.
fn integer<T: TryFrom<i128>>(n: &Number) -> Option<T> {
    let wide = if let Some(i) = n.as_i64() {
        i128::from(i)
    } else if let Some(u) = n.as_u64() {
        i128::from(u)
    } else {
        let f = n.as_f64()?;
        // Beyond 2^64 a float says nothing exact about the integer it stands for.
        if f.fract() != 0.0 || f.abs() >= 18_446_744_073_709_551_616.0 {
            return None;
        }
        f as i128
    };
    T::try_from(wide).ok()
}

fn not_an_integer<E: serde::de::Error, T>(n: &Number) -> E {
    E::custom(format!(
        "expected an integer that fits {}, found {n}",
        std::any::type_name::<T>()
    ))
}

/// `#[serde(deserialize_with = "json_integer")]`: an integer field that also takes `7.0`.
pub fn json_integer<'de, D: Deserializer<'de>, T: TryFrom<i128>>(d: D) -> Result<T, D::Error> {
    let n = Number::deserialize(d)?;
    integer(&n).ok_or_else(|| not_an_integer::<D::Error, T>(&n))
}

/// The same for an optional field (`null` or absent is `None`; add `#[serde(default)]`).
pub fn json_integer_opt<'de, D: Deserializer<'de>, T: TryFrom<i128>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    match Option::<Number>::deserialize(d)? {
        None => Ok(None),
        Some(n) => integer(&n)
            .map(Some)
            .ok_or_else(|| not_an_integer::<D::Error, T>(&n)),
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::*;

    #[derive(Deserialize)]
    struct Req {
        #[serde(deserialize_with = "json_integer")]
        n: i64,
        #[serde(default, deserialize_with = "json_integer_opt")]
        m: Option<u32>,
    }

    fn read(v: serde_json::Value) -> Result<(i64, Option<u32>), String> {
        serde_json::from_value::<Req>(v)
            .map(|r| (r.n, r.m))
            .map_err(|e| e.to_string())
    }

    /// JSON Schema: "a number with a zero fractional part" is an integer (draft 2020-12,
    /// validation section 6.1.1).
    #[test]
    fn integral_numbers_are_integers() {
        assert_eq!(read(json!({"n": 843.0})), Ok((843, None)));
        assert_eq!(read(json!({"n": -2, "m": 7.0})), Ok((-2, Some(7))));
        assert_eq!(read(json!({"n": 1e3, "m": null})), Ok((1000, None)));
        assert_eq!(read(json!({"n": i64::MAX})), Ok((i64::MAX, None)));
        for bad in [
            json!({"n": 1.5}),
            json!({"n": "1"}),
            json!({"n": u64::MAX}),
            json!({"n": 1e300}),
            json!({"n": 0, "m": -1}),
            json!({"n": 0, "m": 4294967296u64}),
            json!({"n": 0, "m": 0.25}),
        ] {
            assert!(read(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn ranges_are_inclusive() {
        let r = IntRange::new(1, 3);
        assert!(!r.contains(0) && r.contains(1) && r.contains(3) && !r.contains(4));
    }
}

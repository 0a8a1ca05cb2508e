//! Schemas of request fields whose rules serde cannot express in a type (any JSON but null and
//! U+0000; bounded header maps), for the document.

use std::borrow::Cow;

use utoipa::{
    PartialSchema, ToSchema,
    openapi::{
        self, ArrayBuilder, ObjectBuilder, Ref, RefOr, Type,
        schema::{AnyOfBuilder, SchemaType},
    },
};

/// Strings PostgreSQL's `jsonb` can store: no U+0000.
const NO_NUL: &str = "^[^\\u0000]*$";

/// Any JSON value whose strings and keys, however deep, hold no U+0000; `null` too when
/// `null_ok`. Containers refer back to the `JsonValue` component, so the rule holds at every
/// depth.
fn json_value(null_ok: bool) -> openapi::schema::Schema {
    let mut scalars = vec![Type::Number, Type::Boolean];
    if null_ok {
        scalars.push(Type::Null);
    }
    let any = || Ref::from_schema_name(JsonValue::name());
    AnyOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(NO_NUL)),
        )
        .item(ObjectBuilder::new().schema_type(SchemaType::Array(scalars)))
        .item(ArrayBuilder::new().items(any()))
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .property_names(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .pattern(Some(NO_NUL)),
                ))
                .additional_properties(Some(any())),
        )
        .build()
        .into()
}

/// A JSON value inside a message body (see [`json_value`]).
pub(crate) struct JsonValue;

impl PartialSchema for JsonValue {
    fn schema() -> RefOr<openapi::schema::Schema> {
        json_value(true).into()
    }
}

impl ToSchema for JsonValue {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("JsonValue")
    }
}

/// A message body: any JSON value but `null`, with no U+0000 in any string or key (the rules
/// `shared::domain::message::check_form` enforces; its size is the tenant's limit).
pub fn message_body_schema() -> impl Into<RefOr<openapi::schema::Schema>> {
    let mut schema = json_value(false);
    if let openapi::schema::Schema::AnyOf(any) = &mut schema {
        any.description = Some(
            "Any JSON value except null, no U+0000 in any string or key, at most \
             `MESSAGE_MAX_BODY_BYTES` (256 KiB by default) serialised, or the tenant's \
             `max_message_bytes` if smaller"
                .into(),
        );
    }
    schema
}

/// Message headers as the publish routes accept them (see `shared::domain::message`).
pub fn headers_schema() -> impl Into<RefOr<openapi::schema::Schema>> {
    use shared::domain::{
        headers::reserved_description,
        message::{MAX_HEADER_VALUE_LEN, MAX_HEADERS, header_name_pattern},
    };
    let value = ObjectBuilder::new()
        .schema_type(Type::String)
        .max_length(Some(MAX_HEADER_VALUE_LEN))
        .pattern(Some("^[^\\u0000-\\u001f\\u007f-\\u009f]*$"));
    let name = ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(header_name_pattern()));
    ObjectBuilder::new()
        .schema_type(SchemaType::Array(vec![Type::Object, Type::Null]))
        .max_properties(Some(MAX_HEADERS))
        .property_names(Some(name))
        .additional_properties(Some(value))
        .description(Some(format!(
            "Passed to the consumer with the message. Reserved for the service: {}.",
            reserved_description()
        )))
}

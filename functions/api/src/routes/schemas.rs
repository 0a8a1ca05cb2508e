//! Schemas of request fields whose rules serde cannot express in a type (any JSON but null;
//! bounded header maps), for the document.

use utoipa::openapi::{self, ObjectBuilder, RefOr, Type, schema::SchemaType};

/// A message body: any JSON value but `null`.
pub fn message_body_schema() -> impl Into<RefOr<openapi::schema::Schema>> {
    ObjectBuilder::new()
        .schema_type(SchemaType::Array(vec![
            Type::Object,
            Type::Array,
            Type::String,
            Type::Number,
            Type::Integer,
            Type::Boolean,
        ]))
        .description(Some(
            "Any JSON value except null, at most `MESSAGE_MAX_BODY_BYTES` (256 KiB by default) \
             serialised",
        ))
}

/// Message headers as the publish routes accept them (see `shared::domain::message`).
pub fn headers_schema() -> impl Into<RefOr<openapi::schema::Schema>> {
    use shared::domain::message::{MAX_HEADER_NAME_LEN, MAX_HEADER_VALUE_LEN, MAX_HEADERS};
    let value = ObjectBuilder::new()
        .schema_type(Type::String)
        .max_length(Some(MAX_HEADER_VALUE_LEN))
        .pattern(Some("^[^\\u0000-\\u001f\\u007f-\\u009f]*$"));
    let name = ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(format!("^[A-Za-z0-9._-]{{1,{MAX_HEADER_NAME_LEN}}}$")));
    ObjectBuilder::new()
        .schema_type(SchemaType::Array(vec![Type::Object, Type::Null]))
        .max_properties(Some(MAX_HEADERS))
        .property_names(Some(name))
        .additional_properties(Some(value))
        .description(Some(
            "Passed to the consumer with the message. Names starting with `x-msg-` are reserved.",
        ))
}

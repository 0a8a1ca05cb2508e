//! One JSON object per line, as CloudWatch Logs and Lambda's log-level filtering read them:
//! `timestamp` (RFC 3339), `level` (TRACE .. ERROR), the event's fields (`message`, ...),
//! `target`, and `span`: the fields of every span the event is in, outermost first, so a line
//! deep inside a batch still carries the invocation's `request_id` (and the Lambda runtime's
//! `requestId`), plus the innermost span's `name`.
//! Lambda's filtering: <https://docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs-log-level.html>
//! (a JSON line's `level` key; no level counts as INFO).

use std::fmt;

use serde_json::{Map, Value};
use tracing::{
    Event, Subscriber,
    field::{Field, Visit},
};
use tracing_subscriber::{
    fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields, format::Writer},
    registry::LookupSpan,
};

pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut line = Map::new();
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        line.insert("timestamp".into(), now.into());
        line.insert("level".into(), meta.level().as_str().into());
        event.record(&mut Fields(&mut line));
        line.insert("target".into(), meta.target().into());

        let mut span = Map::new();
        if let Some(scope) = ctx.event_scope() {
            let mut innermost = None;
            for s in scope.from_root() {
                // The layer formats span fields with JsonFields: a JSON object per span.
                let parsed = s
                    .extensions()
                    .get::<FormattedFields<N>>()
                    .and_then(|f| serde_json::from_str::<Value>(f).ok());
                if let Some(Value::Object(fields)) = parsed {
                    span.extend(fields);
                }
                innermost = Some(s.name());
            }
            if let Some(name) = innermost {
                span.insert("name".into(), name.into());
                line.insert("span".into(), Value::Object(span));
            }
        }
        writeln!(writer, "{}", Value::Object(line))
    }
}

/// An event's fields as JSON values.
struct Fields<'a>(&'a mut Map<String, Value>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.insert(field.name().into(), value.to_string().into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
}

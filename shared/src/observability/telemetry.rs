//! Tracing set up once per process: JSON lines in Lambda (CloudWatch), text in a terminal. The
//! format and filter come from [`Config`] (Lambda's logging configuration inside Lambda).

use std::io::IsTerminal;

use tracing::{Level, level_filters::LevelFilter};
use tracing_subscriber::{
    EnvFilter, Layer,
    filter::{FilterExt, filter_fn},
    fmt,
    prelude::*,
};

use crate::config::{Config, LogFormat};

pub fn init(config: &Config) {
    let events = EnvFilter::try_new(&config.log_level).unwrap_or_else(|_| EnvFilter::new("info"));
    // Spans at INFO and above are always on, whatever the level: they carry the request id
    // (Lambda's `Lambda runtime invoke` span, ours), which a WARN line needs as much as any.
    let spans = filter_fn(|m| m.is_span() && *m.level() <= Level::INFO)
        .with_max_level_hint(LevelFilter::INFO);
    let filter = events.or(spans);
    let layer = match config.log_format {
        LogFormat::Json => fmt::layer()
            .fmt_fields(fmt::format::JsonFields::new())
            .event_format(super::json_log::JsonLines)
            .with_filter(filter)
            .boxed(),
        // No colour codes where no terminal reads them (CloudWatch, a pipe).
        LogFormat::Text => fmt::layer()
            .with_ansi(std::io::stdout().is_terminal())
            .with_filter(filter)
            .boxed(),
    };
    // Already initialised (tests build several apps in one process).
    let _ = tracing_subscriber::registry().with(layer).try_init();
}

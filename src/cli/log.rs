//! The binary's one `tracing` subscriber: the library's events (rotate's audit, the sidecar's
//! renders) and the command's own warnings, on stderr, as the text lines credseal has always
//! printed or as one JSON object per line for a log pipeline.

use std::fmt;

use clap::ValueEnum;
use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::{Event, Subscriber};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;

use crate::cli::exit::Failure;

/// The target of the command's own events (its warnings, its failure).
pub const CLI: &str = "credseal";

// No doc comments on the variants: clap would then lay out every subcommand's help in its
// long form.
/// `text`: `credseal audit: credential=… step=… outcome=…` and `credseal: …` lines; `json`:
/// one object per line with timestamp (RFC 3339), level, target and the event's fields.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Installs the subscriber for the whole process. Only credseal's own events are written:
/// the dependencies' (kube, hyper) were never shown and are not now.
pub fn init(format: LogFormat) {
    let builder = tracing_subscriber::fmt().with_writer(std::io::stderr);
    let subscriber: Box<dyn Subscriber + Send + Sync> = match format {
        LogFormat::Text => Box::new(builder.event_format(Lines).finish()),
        LogFormat::Json => Box::new(
            builder
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false)
                .finish(),
        ),
    };
    let subscriber = subscriber.with(Targets::new().with_target(CLI, LevelFilter::INFO));
    // Only fails when a subscriber is already set, which only this function does.
    let _ = tracing::subscriber::set_global_default(subscriber);
}

/// The command's failure, the last line it writes (its exit code a field of its own).
pub fn failure(failure: &Failure) {
    tracing::error!(target: CLI, code = failure.exit_code(), "{failure}");
}

/// The text format: the target's prefix, then the event's message or, for an event without
/// one (an audit step), its fields as `name=value`, values unquoted.
struct Lines;

impl<S, N> FormatEvent<S, N> for Lines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let prefix = match event.metadata().target() {
            credseal::log::AUDIT => "credseal audit",
            _ => "credseal",
        };
        let mut text = LineFields::default();
        event.record(&mut text);
        match text.message {
            Some(message) => writeln!(w, "{prefix}: {message}"),
            None => writeln!(w, "{prefix}: {}", text.fields.trim_start()),
        }
    }
}

#[derive(Default)]
struct LineFields {
    message: Option<String>,
    fields: String,
}

impl Visit for LineFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record_debug(field, &format_args!("{value}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        use std::fmt::Write;
        match field.name() {
            "message" => self.message = Some(format!("{value:?}")),
            name => {
                let _ = write!(self.fields, " {name}={value:?}");
            }
        }
    }
}

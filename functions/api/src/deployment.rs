//! Schemas whose bounds are the deployment's configuration: the page size (`API_MAX_PAGE_SIZE`),
//! the workers a queue takes (`CONSUMER_MAX_WORKERS` and the function timeout) and the batch
//! size (`MESSAGE_MAX_BATCH_ITEMS`). Handlers name them through the marker types below;
//! [`Bounds`] writes them from the `Config` the document is built for, in the shapes the
//! domain states (`PageRequest::limit_range`, `Workers::schema`). So the served document states
//! the running deployment's bounds and `docs/openapi.json` the defaults.

use std::borrow::Cow;

use shared::{
    Config,
    domain::{PageRequest, Workers},
};
use utoipa::{
    Modify, PartialSchema, ToSchema,
    openapi::{self, ArrayBuilder, ObjectBuilder, Ref, RefOr, Schema},
};

macro_rules! marker {
    ($name:ident, $doc:literal $(, $item:ty)?) => {
        #[doc = $doc]
        pub struct $name;

        impl PartialSchema for $name {
            /// Replaced by [`Bounds`] in every document; never served as is.
            fn schema() -> RefOr<Schema> {
                ObjectBuilder::new().into()
            }
        }

        impl ToSchema for $name {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed(stringify!($name))
            }

            fn schemas(_schemas: &mut Vec<(String, RefOr<Schema>)>) {
                $(
                    _schemas.push((<$item>::name().into(), <$item>::schema()));
                    <$item>::schemas(_schemas);
                )?
            }
        }
    };
}

marker!(PageLimit, "A page size: 1 to `API_MAX_PAGE_SIZE`.");
marker!(
    WorkerCount,
    "A queue's workers: 0 (paused) or within the deployment's range."
);
marker!(
    MessageBatch,
    "The items of a batch publish: 1 to `MESSAGE_MAX_BATCH_ITEMS`.",
    crate::routes::BatchItem
);

/// Writes the marker schemas from a configuration.
pub struct Bounds<'a>(pub &'a Config);

impl Modify for Bounds<'_> {
    fn modify(&self, doc: &mut openapi::OpenApi) {
        let config = self.0;
        let schemas = &mut doc.components.get_or_insert_with(Default::default).schemas;
        let mut page = PageRequest::limit_range(config.limits.max_page_size).schema();
        page.description = Some(format!(
            "Page size, 1 to {} (`API_MAX_PAGE_SIZE`); 50 when absent",
            config.limits.max_page_size
        ));
        schemas.insert(PageLimit::name().into(), page.into());
        schemas.insert(
            WorkerCount::name().into(),
            Workers::schema(&config.consumer).into(),
        );
        let batch = ArrayBuilder::new()
            .items(Ref::from_schema_name("BatchItem"))
            .min_items(Some(1))
            .max_items(Some(config.limits.max_batch_items))
            .description(Some(format!(
                "1 to {} messages (`MESSAGE_MAX_BATCH_ITEMS`)",
                config.limits.max_batch_items
            )));
        schemas.insert(MessageBatch::name().into(), batch.into());
    }
}

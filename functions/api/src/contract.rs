//! What a route promises, read from its handler's extractors: who may call it (the scope it
//! takes, [`crate::scope`]) and which error statuses it can answer (each extractor adds the
//! ones it produces; a handler adds its own domain errors, such as 409, in its `responses`).
//! [`declare`] writes both into the route's OpenAPI operation when the route is registered, so
//! nothing restates them.

use std::collections::BTreeSet;

use axum::{extract::State, handler::Handler, http::HeaderMap};
use utoipa::openapi::{
    Ref, RefOr,
    path::{Operation, PathItem},
    security::SecurityRequirement,
};
use utoipa_axum::router::UtoipaMethodRouter;

use crate::{
    extract::{JsonBody, PathParams, QueryParams},
    scope::{Access, AdminScope, AdminTenantScope, TenantScope},
    state::ApiState,
};

/// The bearer security scheme's name in the document.
pub const BEARER: &str = "bearer";

/// What one extractor contributes to its route's contract.
pub trait Part {
    const ACCESS: Option<Access> = None;
    const ERRORS: &'static [u16] = &[];
}

/// Any authenticated route reads the database (500 on a fault, 503 while it is unreachable); a
/// route on a tenant answers 404 for an unknown one.
const SCOPED: &[u16] = &[401, 403, 500, 503];
const TENANT_SCOPED: &[u16] = &[400, 401, 403, 404, 500, 503];

impl Part for AdminScope {
    const ACCESS: Option<Access> = Some(Access::Admin);
    const ERRORS: &'static [u16] = SCOPED;
}
impl Part for TenantScope {
    const ACCESS: Option<Access> = Some(Access::Tenant);
    const ERRORS: &'static [u16] = TENANT_SCOPED;
}
impl Part for AdminTenantScope {
    const ACCESS: Option<Access> = Some(Access::Admin);
    const ERRORS: &'static [u16] = TENANT_SCOPED;
}
impl<T> Part for JsonBody<T> {
    const ERRORS: &'static [u16] = &[400, 413];
}
impl<T> Part for QueryParams<T> {
    const ERRORS: &'static [u16] = &[400];
}
impl<T> Part for PathParams<T> {
    const ERRORS: &'static [u16] = &[400];
}
impl Part for State<ApiState> {}
impl Part for HeaderMap {}

/// A handler's arguments, as axum's `Handler` sees them: `(marker, arg1, ..., argN)`.
pub trait Args {
    fn access() -> Access;
    fn errors() -> BTreeSet<u16>;
}

impl Args for ((),) {
    fn access() -> Access {
        Access::Public
    }
    fn errors() -> BTreeSet<u16> {
        BTreeSet::new()
    }
}

macro_rules! args {
    ($($t:ident),+) => {
        impl<M, $($t: Part),+> Args for (M, $($t,)+) {
            fn access() -> Access {
                // The first scope among the arguments decides; none makes the route public.
                [$($t::ACCESS),+].into_iter().flatten().next().unwrap_or(Access::Public)
            }
            fn errors() -> BTreeSet<u16> {
                [$($t::ERRORS),+].into_iter().flatten().copied().collect()
            }
        }
    };
}
args!(T1);
args!(T1, T2);
args!(T1, T2, T3);
args!(T1, T2, T3, T4);
args!(T1, T2, T3, T4, T5);
args!(T1, T2, T3, T4, T5, T6);

/// Writes the handler's access and error responses into its operation (`routes!` of one
/// handler yields one). Register every route through this: `.routes(declare(routes!(h), h))`,
/// or the [`route!`](crate::route) shorthand.
pub fn declare<H, T>(
    (schemas, mut paths, router): UtoipaMethodRouter<ApiState>,
    _handler: H,
) -> UtoipaMethodRouter<ApiState>
where
    H: Handler<T, ApiState>,
    T: Args,
{
    for item in paths.paths.values_mut() {
        for op in operations(item) {
            apply(op, T::access(), T::errors());
        }
    }
    (schemas, paths, router)
}

/// Registers a handler with its contract: `route!(handler)`.
#[macro_export]
macro_rules! route {
    ($handler:ident) => {
        $crate::contract::declare(utoipa_axum::routes!($handler), $handler)
    };
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        item.get.as_mut(),
        item.post.as_mut(),
        item.put.as_mut(),
        item.delete.as_mut(),
        item.patch.as_mut(),
    ]
    .into_iter()
    .flatten()
}

/// Public routes keep their responses as written (`/health` answers 503 with its own body).
/// Others get the bearer requirement, a line saying who may call, and every error status (the
/// extractors' and the handler's own) as a reference to the shared error response.
fn apply(op: &mut Operation, access: Access, mut errors: BTreeSet<u16>) {
    let who = match access {
        Access::Public => return,
        Access::Admin => "**Auth:** admin token.",
        Access::Tenant => "**Auth:** admin token, or a tenant token of `{tenant_id}`.",
    };
    op.security = Some(vec![SecurityRequirement::new(BEARER, Vec::<String>::new())]);
    op.description = Some(match op.description.take() {
        Some(d) if !d.is_empty() => format!("{d}\n\n{who}"),
        _ => who.to_string(),
    });
    // The handler's own error statuses join the extractors'; all point at the shared responses.
    errors.extend(
        op.responses
            .responses
            .keys()
            .filter_map(|s| s.parse::<u16>().ok())
            .filter(|s| *s >= 400),
    );
    for status in errors {
        op.responses.responses.insert(
            status.to_string(),
            RefOr::Ref(Ref::from_response_name(response_name(status))),
        );
    }
}

/// `400` -> `BadRequest`: the name of the shared response for a status.
pub fn response_name(status: u16) -> String {
    axum::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error")
        .split(|c: char| !c.is_ascii_alphanumeric())
        .collect()
}

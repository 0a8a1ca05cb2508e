//! Typed ids, so a tenant id can never be passed where a message id is expected.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Code, Error};

macro_rules! uuid_id {
    ($name:ident, $what:literal, $code:expr) => {
        #[derive(
            Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new time-ordered (v7) id: newer ids sort after older ones, which keyset
            /// pagination relies on.
            pub fn generate() -> Self {
                Self(Uuid::now_v7())
            }

            pub fn as_uuid(&self) -> &Uuid {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self, Error> {
                Uuid::parse_str(s)
                    .map(Self)
                    .map_err(|_| Error::invalid($code, concat!($what, " must be a UUID")))
            }
        }
    };
}

uuid_id!(TenantId, "tenant id", Code::InvalidTenantId);
uuid_id!(MessageId, "message id", Code::InvalidMessageId);

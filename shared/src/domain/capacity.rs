//! A tenant's consumer tier and the account's concurrency budget its capacity is checked
//! against.

use serde::Serialize;

/// Concurrency AWS keeps unreserved in every account and Region: "You can reserve up to the
/// Unreserved account concurrency value that is shown, minus 100 for functions that don't have
/// reserved concurrency" (Lambda Developer Guide, "Configuring reserved concurrency for a
/// function", https://docs.aws.amazon.com/lambda/latest/dg/configuration-concurrency.html).
pub const MIN_UNRESERVED_CONCURRENCY: u32 = 100;

/// AWS's default concurrency limit per account and Region ("Lambda quotas",
/// https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html), the figure used
/// until the provisioner has read the account's own.
pub const DEFAULT_ACCOUNT_CONCURRENCY: u32 = 1000;

/// Where a tenant's queues are consumed.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// No capacity of its own: the queues map to the shared pooled consumer function, which
    /// reserves nothing and draws on the account's unreserved concurrency.
    Pooled,
    /// A capacity of its own: its own consumer function whose reserved concurrency is the
    /// effective capacity.
    Dedicated,
}

impl Tier {
    /// A tenant is dedicated exactly when a capacity was asked for it.
    pub fn of(requested: Option<u32>) -> Self {
        match requested {
            Some(_) => Tier::Dedicated,
            None => Tier::Pooled,
        }
    }
}

/// What can run: "For RabbitMQ, the number of concurrent execution environments is limited to
/// 1 per Amazon MQ event source mapping. Even if you change your function's reserved or
/// provisioned concurrency settings, the Lambda service won't make more execution environments
/// available" (Lambda Developer Guide, "Using Lambda with Amazon MQ",
/// https://docs.aws.amazon.com/lambda/latest/dg/with-mq.html). So a dedicated tenant can use at
/// most as much concurrency as it has enabled, mapped queues.
pub fn effective(requested: u32, enabled_queues: u32) -> u32 {
    requested.min(enabled_queues)
}

/// The figures of a concurrency budget check (the body of `concurrency_budget_exceeded`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ConcurrencyBudget {
    /// The account's concurrency limit in this Region.
    pub account_limit: u32,
    /// `setting` (LAMBDA_ACCOUNT_CONCURRENCY), `aws` (GetAccountSettings, as the provisioner
    /// last read it) or `default` (AWS's default, before the first reading).
    pub account_limit_source: &'static str,
    /// Capacity asked for by the other dedicated tenants.
    pub reserved_by_tenants: u32,
    /// Reserved by the stack's own functions and any other function that is not a tenant's:
    /// STACK_RESERVED_CONCURRENCY, or more when the provisioner's last GetAccountSettings found
    /// more.
    pub reserved_by_stack: u32,
    /// This request's capacity.
    pub requested: u32,
    /// What AWS keeps unreserved in every account.
    pub min_unreserved: u32,
    /// The most this tenant could be given now.
    pub available: u32,
}

impl ConcurrencyBudget {
    pub fn new(
        account_limit: u32,
        account_limit_source: &'static str,
        reserved_by_tenants: u32,
        reserved_by_stack: u32,
        requested: u32,
    ) -> Self {
        let available = (account_limit as u64)
            .saturating_sub(reserved_by_tenants as u64 + reserved_by_stack as u64)
            .saturating_sub(MIN_UNRESERVED_CONCURRENCY as u64) as u32;
        Self {
            account_limit,
            account_limit_source,
            reserved_by_tenants,
            reserved_by_stack,
            requested,
            min_unreserved: MIN_UNRESERVED_CONCURRENCY,
            available,
        }
    }

    pub fn fits(&self) -> bool {
        self.requested <= self.available
    }

    /// What the account keeps unreserved once every dedicated tenant's capacity is reserved:
    /// the pool that pooled tenants share.
    pub fn unreserved(&self) -> u32 {
        (self.account_limit as u64)
            .saturating_sub(self.reserved_by_tenants as u64 + self.reserved_by_stack as u64)
            as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_fits_while_it_leaves_the_minimum_unreserved() {
        let b = ConcurrencyBudget::new(1000, "default", 600, 51, 249);
        assert_eq!(b.available, 249);
        assert!(b.fits());
        let b = ConcurrencyBudget::new(1000, "default", 600, 51, 250);
        assert!(!b.fits());
        // An account below the minimum has nothing to give, without underflow.
        let b = ConcurrencyBudget::new(10, "setting", 0, 51, 0);
        assert_eq!(b.available, 0);
        assert!(b.fits(), "0 reserves nothing");
    }

    #[test]
    fn effective_capacity_is_capped_by_enabled_queues() {
        assert_eq!(effective(5, 2), 2);
        assert_eq!(effective(1, 3), 1);
        assert_eq!(effective(4, 0), 0);
        assert_eq!(Tier::of(None), Tier::Pooled);
        assert_eq!(Tier::of(Some(0)), Tier::Dedicated);
    }
}

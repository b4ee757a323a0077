//! Customer accounts (абоненты), their service users and servicing organisations, served as
//! the Service Manager's external account API (`spec/account-api.md`, `docs/accounts.md`).
//!
//! - [`model`]: roles, who may do what, and the validated values the API takes;
//! - [`store`]: the accounts in the centre's database, every change in one transaction;
//! - [`login`]: a service user's HTTP Basic login (hashed passwords, throttled);
//! - [`envelope`]: the request and answer envelope and the one table of answer codes;
//! - [`methods`]: each API method, as a function of the caller and its parameters;
//! - [`http`]: the routes (`POST …/execute`, the GET and path forms, `…/version`);
//! - [`admin`]: the vendor's side — accounts, servants, tariffs, attached-info definitions.
//!
//! Accounts matter to licensing: a code issued to an account makes licences that belong to it,
//! and those licences carry, signed, the session restrictions of the account's users, which
//! the host enforces (`host::leases`).

pub mod admin;
pub mod envelope;
pub mod http;
pub mod login;
pub mod methods;
pub mod model;
pub mod store;

pub use envelope::AccountError;
pub use model::{Access, AccountId, Login, Role};

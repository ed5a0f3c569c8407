//! Integration tests of the identity context against a real PostgreSQL: tenant
//! isolation at the SQL level, and the PHI vault's encryption and audit.

mod isolation;
mod related_person;
mod support;
mod vault;

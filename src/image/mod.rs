//! OCI images: today the canonical JSON writer every hashed or shipped JSON
//! document goes through; layers, layouts, archives and registries arrive
//! with issue #5. Never runs code.

pub mod json;

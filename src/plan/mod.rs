//! The build plan: the stage graph today (`graph`); derivations and hashing
//! arrive with the store (issue #3). Pure: no filesystem, environment,
//! clock or network.

pub mod graph;

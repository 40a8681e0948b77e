//! Cellgate gateway.

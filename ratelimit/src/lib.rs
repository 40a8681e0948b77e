//! Rate limiting for Cellgate.

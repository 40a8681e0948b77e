//! Cell placement for Cellgate.

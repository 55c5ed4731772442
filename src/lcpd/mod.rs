//! lcpd

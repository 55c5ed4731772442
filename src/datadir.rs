//! datadir

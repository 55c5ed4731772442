//! payd

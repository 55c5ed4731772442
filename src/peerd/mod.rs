//! peerd

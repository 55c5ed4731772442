//! jobd

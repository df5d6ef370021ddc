//! Traffic policies as pure algorithms: rate limiting ([`gcra`]) and outlier detection
//! ([`outlier`]). The data plane keeps the state and passes the time in, as `now`: a
//! [`Duration`](std::time::Duration) since an epoch of its choosing.

pub mod gcra;
pub mod outlier;

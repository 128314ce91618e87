//! The one source of wall-clock time for the shell. The core and the other plain-data parts
//! never read a clock: they take the time from here as an argument.

/// Unix time in milliseconds (0 before 1970, saturating far in the future).
#[must_use]
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Unix time in whole seconds (TURN credential expiry, SPEC section 2).
#[must_use]
pub fn unix_secs() -> u64 {
    unix_ms() / 1000
}

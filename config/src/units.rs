//! Small value types of the schema: port ranges and bitrates.

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

/// An inclusive range of UDP ports for relayed sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub start: u16,
    pub end: u16,
}

impl PortRange {
    /// Number of ports in the range.
    #[must_use]
    pub fn len(&self) -> u32 {
        u32::from(self.end) - u32::from(self.start) + 1
    }

    /// A range always holds at least one port.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        false
    }

    #[must_use]
    pub fn contains(&self, port: u16) -> bool {
        (self.start..=self.end).contains(&port)
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let [start, end] = <[u16; 2]>::deserialize(d)?;
        if start == 0 {
            return Err(serde::de::Error::custom(
                "port 0 is not a usable relay port",
            ));
        }
        if start > end {
            return Err(serde::de::Error::custom(format!(
                "inverted port range: start {start} is above end {end}"
            )));
        }
        Ok(Self { start, end })
    }
}

/// A bitrate in bits per second; zero means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Bitrate(pub u64);

impl Bitrate {
    /// `None` when unlimited.
    #[must_use]
    pub fn bits_per_second(self) -> Option<u64> {
        (self.0 > 0).then_some(self.0)
    }
}

impl fmt::Display for Bitrate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            write!(f, "unlimited")
        } else {
            write!(f, "{}bit/s", self.0)
        }
    }
}

/// Parses `"0"`, `"64kbit"`, `"5mbit"`, `"1gbit"`, `"2.5mbps"`, `"800000"` (bits/s).
///
/// Written by hand: the crates that parse sizes do bytes with binary prefixes, whereas
/// bitrates are bits with decimal prefixes (as in `tc`).
impl FromStr for Bitrate {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim().to_ascii_lowercase();
        let digits_end = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(digits_end);
        let value: f64 = num.parse().map_err(|_| {
            format!("invalid bitrate `{s}`: expected e.g. \"0\", \"500kbit\", \"5mbit\"")
        })?;
        let mult: f64 = match unit.trim() {
            "" | "bit" | "bps" | "bit/s" => 1.0,
            "k" | "kbit" | "kbps" | "kbit/s" => 1e3,
            "m" | "mbit" | "mbps" | "mbit/s" => 1e6,
            "g" | "gbit" | "gbps" | "gbit/s" => 1e9,
            other => {
                return Err(format!(
                    "invalid bitrate unit `{other}` in `{s}`: use bit, kbit, mbit or gbit"
                ));
            }
        };
        let bits = value * mult;
        if !bits.is_finite() || !(0.0..=1e12).contains(&bits) {
            return Err(format!("bitrate `{s}` is out of range"));
        }
        // Truncation is intended: sub-bit precision is meaningless here.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        Ok(Bitrate(bits as u64))
    }
}

impl<'de> Deserialize<'de> for Bitrate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitrate_accepts_decimal_prefixes_like_tc() {
        assert_eq!("0".parse::<Bitrate>(), Ok(Bitrate(0)));
        assert_eq!("5mbit".parse::<Bitrate>(), Ok(Bitrate(5_000_000)));
        assert_eq!("64kbit".parse::<Bitrate>(), Ok(Bitrate(64_000)));
        assert_eq!("2.5Mbps".parse::<Bitrate>(), Ok(Bitrate(2_500_000)));
        assert_eq!("1gbit".parse::<Bitrate>(), Ok(Bitrate(1_000_000_000)));
        assert_eq!(Bitrate(0).bits_per_second(), None);
    }

    #[test]
    fn bitrate_rejects_garbage_and_unknown_units() {
        assert!("fast".parse::<Bitrate>().is_err());
        assert!("5mb".parse::<Bitrate>().is_err());
        assert!("".parse::<Bitrate>().is_err());
        assert!("-3mbit".parse::<Bitrate>().is_err());
    }

    #[test]
    fn port_range_counts_inclusively() {
        let r = PortRange {
            start: 49152,
            end: 65535,
        };
        assert_eq!(r.len(), 16384);
        assert!(r.contains(49152) && r.contains(65535) && !r.contains(49151));
    }
}

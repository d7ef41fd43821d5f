//! IPv4 CIDR ranges, as the cluster's flags and objects spell them (`10.42.0.0/16`): the
//! cluster's pod range, a node's `spec.podCIDR`, a NetworkPolicy's `ipBlock`.

use std::net::Ipv4Addr;

/// An IPv4 network: an address with its host bits cleared, and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv4Cidr {
    network: u32,
    prefix: u8,
}

impl Ipv4Cidr {
    /// The network `address/prefix` with host bits cleared.
    pub fn new(address: Ipv4Addr, prefix: u8) -> Option<Self> {
        (prefix <= 32).then(|| Ipv4Cidr {
            network: u32::from(address) & mask(prefix),
            prefix,
        })
    }

    /// Parses `10.42.0.0/16`, in Go's `net.ParseCIDR` words when it is not one. Host bits
    /// may be set (`10.42.1.7/24` is `10.42.1.0/24`), as Go accepts them.
    pub fn parse(text: &str) -> Result<Self, String> {
        let invalid = || format!("invalid CIDR address: {text}");
        let (address, prefix) = text.split_once('/').ok_or_else(invalid)?;
        let address: Ipv4Addr = address.parse().map_err(|_| invalid())?;
        // Go refuses leading signs and zeros ("+8", "08").
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        let prefix: u8 = prefix.parse().map_err(|_| invalid())?;
        Self::new(address, prefix).ok_or_else(invalid)
    }

    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.network)
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// How many addresses the range holds (network and broadcast included).
    pub fn size(&self) -> u64 {
        1u64 << (32 - self.prefix)
    }

    pub fn contains(&self, address: Ipv4Addr) -> bool {
        u32::from(address) & mask(self.prefix) == self.network
    }

    /// Whether `other` lies wholly inside this range.
    pub fn covers(&self, other: &Ipv4Cidr) -> bool {
        other.prefix >= self.prefix && self.contains(other.network())
    }

    /// The `index`th address of the range (0 is the network address), if it has one.
    pub fn nth(&self, index: u64) -> Option<Ipv4Addr> {
        (index < self.size()).then(|| Ipv4Addr::from(self.network + index as u32))
    }

    /// The `index`th subnet of length `prefix` inside this range, if there is one.
    pub fn subnet(&self, prefix: u8, index: u64) -> Option<Ipv4Cidr> {
        if prefix < self.prefix || prefix > 32 {
            return None;
        }
        let count = 1u64 << (prefix - self.prefix);
        (index < count).then(|| Ipv4Cidr {
            network: self.network + ((index as u32) << (32 - prefix)),
            prefix,
        })
    }

    /// How many subnets of length `prefix` the range splits into (0 if `prefix` is shorter).
    pub fn subnet_count(&self, prefix: u8) -> u64 {
        if prefix < self.prefix || prefix > 32 {
            0
        } else {
            1u64 << (prefix - self.prefix)
        }
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    }
}

impl std::fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network(), self.prefix)
    }
}

impl std::str::FromStr for Ipv4Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        Self::parse(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_like_go() {
        let cidr = Ipv4Cidr::parse("10.42.1.7/24").unwrap();
        assert_eq!(cidr.to_string(), "10.42.1.0/24");
        assert_eq!(cidr.size(), 256);
        for bad in [
            "10.42.0.0",
            "10.42.0.0/33",
            "10.42.0/16",
            "x/8",
            "10.0.0.0/+8",
            "10.0.0.0/",
        ] {
            assert_eq!(
                Ipv4Cidr::parse(bad).unwrap_err(),
                format!("invalid CIDR address: {bad}")
            );
        }
        assert_eq!(Ipv4Cidr::parse("0.0.0.0/0").unwrap().size(), 1 << 32);
    }

    #[test]
    fn splits_into_subnets_and_tells_membership() {
        let cluster = Ipv4Cidr::parse("10.42.0.0/16").unwrap();
        assert_eq!(cluster.subnet_count(24), 256);
        let third = cluster.subnet(24, 2).unwrap();
        assert_eq!(third.to_string(), "10.42.2.0/24");
        assert!(cluster.covers(&third));
        assert!(!third.covers(&cluster));
        assert_eq!(cluster.subnet(24, 256), None);
        assert_eq!(cluster.subnet(8, 0), None);
        assert!(third.contains("10.42.2.255".parse().unwrap()));
        assert!(!third.contains("10.42.3.0".parse().unwrap()));
        assert_eq!(third.nth(1), Some("10.42.2.1".parse().unwrap()));
        assert_eq!(third.nth(256), None);
    }
}

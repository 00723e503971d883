//! IPv4 CIDR arithmetic for the VPC layout: parsing, containment, overlap, carving.

use std::fmt;
use std::net::Ipv4Addr;

/// An IPv4 block, `address/prefix`, with the host bits zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cidr {
    base: u32,
    prefix: u8,
}

impl Cidr {
    /// Parses `10.0.0.0/16`.
    ///
    /// # Errors
    /// A message naming what is wrong: no prefix, not an IPv4 address, a prefix over 32, host
    /// bits set (`10.0.0.1/16`).
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (ip, prefix) = text
            .split_once('/')
            .ok_or_else(|| format!("`{text}` has no `/prefix`"))?;
        let ip: Ipv4Addr = ip
            .parse()
            .map_err(|_| format!("`{text}` does not start with an IPv4 address"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| format!("`{text}` has an invalid prefix length (0 to 32)"))?;
        let base = u32::from(ip);
        let cidr = Cidr { base, prefix };
        if base & !cidr.mask() != 0 {
            return Err(format!(
                "`{text}` has host bits set; the block starts at `{}`",
                Cidr {
                    base: base & cidr.mask(),
                    prefix
                }
            ));
        }
        Ok(cidr)
    }

    fn mask(self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - self.prefix)
        }
    }

    /// The prefix length.
    pub fn prefix(self) -> u8 {
        self.prefix
    }

    /// How many addresses the block has.
    pub fn size(self) -> u64 {
        1u64 << (32 - self.prefix)
    }

    /// How many addresses AWS lets instances use in a subnet of this size (it keeps 5).
    pub fn usable(self) -> u64 {
        self.size().saturating_sub(5)
    }

    fn end(self) -> u64 {
        u64::from(self.base) + self.size()
    }

    /// Whether `other` lies inside this block.
    pub fn contains(self, other: Cidr) -> bool {
        other.prefix >= self.prefix
            && u64::from(other.base) >= u64::from(self.base)
            && other.end() <= self.end()
    }

    /// Whether the two blocks share an address.
    pub fn overlaps(self, other: Cidr) -> bool {
        u64::from(self.base) < other.end() && u64::from(other.base) < self.end()
    }

    /// The `index`-th block of length `prefix` inside this one, if it fits.
    pub fn nth(self, prefix: u8, index: u64) -> Option<Cidr> {
        if prefix < self.prefix || prefix > 32 {
            return None;
        }
        let step = 1u64 << (32 - prefix);
        let base = u64::from(self.base) + step * index;
        let cidr = Cidr {
            base: u32::try_from(base).ok()?,
            prefix,
        };
        (cidr.end() <= self.end()).then_some(cidr)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.base), self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_contains_overlaps_and_carves() {
        let vpc = Cidr::parse("10.0.0.0/16").unwrap();
        assert_eq!(vpc.size(), 65536);
        assert!(
            Cidr::parse("10.0.0.1/16")
                .unwrap_err()
                .contains("10.0.0.0/16")
        );
        assert!(Cidr::parse("10.0.0.0").is_err());
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("2001:db8::/32").unwrap_err().contains("IPv4"));
        let a = Cidr::parse("10.0.32.0/19").unwrap();
        assert!(vpc.contains(a));
        assert!(!a.contains(vpc));
        assert!(!vpc.contains(Cidr::parse("10.1.0.0/24").unwrap()));
        assert!(a.overlaps(Cidr::parse("10.0.40.0/24").unwrap()));
        assert!(!a.overlaps(Cidr::parse("10.0.64.0/24").unwrap()));
        assert_eq!(vpc.nth(19, 1), Some(a));
        assert_eq!(vpc.nth(19, 8), None);
        assert_eq!(Cidr::parse("10.0.0.0/24").unwrap().usable(), 251);
    }
}

//! One IP address per Gateway, from a pool (all-in-one mode serves every Gateway from one
//! process, and several Gateways listen on the same port, so each needs its own IP).
//!
//! Assignments are sticky: a Gateway keeps the address it already reports in
//! `status.addresses` when that address is in the pool (a restarted controller changes
//! nothing), and a new Gateway starts probing at a hash of its namespace/name, so the
//! result does not depend on the order in which Gateways are seen.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 network, `a.b.c.d/len`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Net {
    base: u32,
    len: u8,
}

/// Why a pool string does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not an IPv4 network such as 127.64.0.0/10 (prefix 8 to 30)")]
pub struct BadNetwork(String);

impl FromStr for Ipv4Net {
    type Err = BadNetwork;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadNetwork(s.to_owned());
        let (ip, len) = s.split_once('/').ok_or_else(bad)?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| bad())?;
        let len: u8 = len.parse().map_err(|_| bad())?;
        if !(8..=30).contains(&len) {
            return Err(bad());
        }
        let mask = u32::MAX << (32 - len);
        Ok(Ipv4Net {
            base: u32::from(ip) & mask,
            len,
        })
    }
}

impl Ipv4Net {
    fn size(self) -> u32 {
        1 << (32 - self.len)
    }

    /// Whether `ip` is a usable host address of this network (not the network or
    /// broadcast address).
    pub fn contains(self, ip: Ipv4Addr) -> bool {
        let offset = u32::from(ip).wrapping_sub(self.base);
        offset > 0 && offset < self.size() - 1
    }

    fn host(self, offset: u32) -> Ipv4Addr {
        Ipv4Addr::from(self.base + offset)
    }
}

/// Assigns and remembers addresses.
#[derive(Debug)]
pub struct AddressPool {
    net: Ipv4Net,
    by_gateway: BTreeMap<(String, String), Ipv4Addr>,
    taken: BTreeSet<Ipv4Addr>,
}

impl AddressPool {
    /// An empty pool over `net`.
    pub fn new(net: Ipv4Net) -> Self {
        AddressPool {
            net,
            by_gateway: BTreeMap::new(),
            taken: BTreeSet::new(),
        }
    }

    /// The address of a Gateway, assigning one if it has none. `reported` are the
    /// addresses the Gateway's status already shows; `avoid` are addresses other Gateways
    /// ask for in `spec.addresses`. `None` when the pool is full.
    pub fn assign(
        &mut self,
        namespace: &str,
        name: &str,
        reported: &[Ipv4Addr],
        avoid: &BTreeSet<Ipv4Addr>,
    ) -> Option<Ipv4Addr> {
        let key = (namespace.to_owned(), name.to_owned());
        if let Some(ip) = self.by_gateway.get(&key) {
            return Some(*ip);
        }
        let kept = reported
            .iter()
            .copied()
            .find(|ip| self.net.contains(*ip) && !self.taken.contains(ip) && !avoid.contains(ip));
        let ip = match kept {
            Some(ip) => ip,
            None => {
                let hosts = self.net.size() - 2;
                let start = fnv1a(&format!("{namespace}/{name}")) % u64::from(hosts);
                (0..hosts)
                    .map(|i| self.net.host(1 + ((start as u32 + i) % hosts)))
                    .find(|ip| !self.taken.contains(ip) && !avoid.contains(ip))?
            }
        };
        self.taken.insert(ip);
        self.by_gateway.insert(key, ip);
        Some(ip)
    }

    /// Frees the address of a deleted Gateway.
    pub fn release(&mut self, namespace: &str, name: &str) {
        if let Some(ip) = self
            .by_gateway
            .remove(&(namespace.to_owned(), name.to_owned()))
        {
            self.taken.remove(&ip);
        }
    }
}

/// FNV-1a, 64 bit: a stable hash (std's hasher is randomly keyed per process).
pub(crate) fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none() -> BTreeSet<Ipv4Addr> {
        BTreeSet::new()
    }

    fn pool(net: &str) -> AddressPool {
        AddressPool::new(net.parse().unwrap())
    }

    #[test]
    fn networks_parse_and_bad_ones_are_named() {
        let n: Ipv4Net = "127.64.1.2/10".parse().unwrap();
        assert!(n.contains(Ipv4Addr::new(127, 64, 0, 1)));
        assert!(n.contains(Ipv4Addr::new(127, 127, 255, 254)));
        assert!(!n.contains(Ipv4Addr::new(127, 64, 0, 0)));
        assert!(!n.contains(Ipv4Addr::new(127, 127, 255, 255)));
        assert!(!n.contains(Ipv4Addr::new(127, 0, 0, 1)));
        for bad in ["127.0.0.1", "127.0.0.0/31", "x/10", "127.0.0.0/x", "::1/64"] {
            assert_eq!(bad.parse::<Ipv4Net>(), Err(BadNetwork(bad.into())));
        }
    }

    #[test]
    fn assignment_is_stable_and_independent_of_order() {
        let mut a = pool("127.64.0.0/10");
        let mut b = pool("127.64.0.0/10");
        let x = a.assign("ns", "one", &[], &none()).unwrap();
        let y = a.assign("ns", "two", &[], &none()).unwrap();
        assert_ne!(x, y);
        assert_eq!(b.assign("ns", "two", &[], &none()), Some(y));
        assert_eq!(b.assign("ns", "one", &[], &none()), Some(x));
        assert_eq!(
            a.assign("ns", "one", &[], &none()),
            Some(x),
            "asking again changes nothing"
        );
    }

    #[test]
    fn a_reported_address_in_the_pool_is_kept() {
        let mut p = pool("127.64.0.0/10");
        let old = Ipv4Addr::new(127, 64, 3, 4);
        assert_eq!(p.assign("ns", "gw", &[old], &none()), Some(old));
        // Outside the pool or already taken: a fresh one.
        let other = p
            .assign("ns", "gw2", &[old, Ipv4Addr::LOCALHOST], &none())
            .unwrap();
        assert_ne!(other, old);
        assert!("127.64.0.0/10".parse::<Ipv4Net>().unwrap().contains(other));
    }

    #[test]
    fn collisions_probe_and_a_full_pool_says_so() {
        let mut p = pool("127.0.0.0/30"); // two host addresses
        let a = p.assign("ns", "a", &[], &none()).unwrap();
        let b = p.assign("ns", "b", &[], &none()).unwrap();
        assert_ne!(a, b);
        assert_eq!(p.assign("ns", "c", &[], &none()), None);
        p.release("ns", "a");
        assert_eq!(p.assign("ns", "c", &[], &none()), Some(a));
    }

    #[test]
    fn addresses_other_gateways_ask_for_are_not_handed_out() {
        let mut p = pool("127.0.0.0/30");
        let wanted = Ipv4Addr::new(127, 0, 0, 1);
        let avoid = BTreeSet::from([wanted]);
        assert_eq!(
            p.assign("ns", "a", &[wanted], &avoid),
            Some(Ipv4Addr::new(127, 0, 0, 2))
        );
        assert_eq!(p.assign("ns", "b", &[], &avoid), None);
    }
}

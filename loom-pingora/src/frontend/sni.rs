//! Reading the server name out of a TLS ClientHello without consuming it (TLS passthrough).

/// What peeking at the first bytes of a connection found.
#[derive(Debug, PartialEq, Eq)]
pub enum Peeked {
    /// A complete ClientHello; the server name if it has one.
    Hello(Option<String>),
    /// More bytes are needed (at most this many in total).
    NeedMore(usize),
    /// Not a TLS ClientHello.
    NotTls,
}

/// ClientHellos larger than this are refused (post-quantum key shares make them 1.2–1.8 KB).
pub const MAX_HELLO: usize = 16 * 1024;

/// Parses a ClientHello from the start of a stream. Handles a handshake message split over
/// several records; never panics on any input.
pub fn parse_client_hello(buf: &[u8]) -> Peeked {
    // Reassemble the handshake message from consecutive handshake records.
    let mut hs = Vec::new();
    let mut at = 0;
    loop {
        let Some(header) = buf.get(at..at + 5) else {
            return Peeked::NeedMore((at + 5).min(MAX_HELLO));
        };
        if header[0] != 0x16 || header[1] != 0x03 {
            return Peeked::NotTls;
        }
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        if len == 0 || at + 5 + len > MAX_HELLO {
            return Peeked::NotTls;
        }
        let Some(body) = buf.get(at + 5..at + 5 + len) else {
            return Peeked::NeedMore(at + 5 + len);
        };
        hs.extend_from_slice(body);
        at += 5 + len;
        if hs.len() >= 4 {
            if hs[0] != 0x01 {
                return Peeked::NotTls;
            }
            let msg_len =
                (usize::from(hs[1]) << 16) | (usize::from(hs[2]) << 8) | usize::from(hs[3]);
            if hs.len() >= 4 + msg_len {
                return Peeked::Hello(server_name(&hs[4..4 + msg_len]));
            }
            if 4 + msg_len > MAX_HELLO {
                return Peeked::NotTls;
            }
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<usize> {
        self.take(1).map(|b| usize::from(b[0]))
    }

    fn u16(&mut self) -> Option<usize> {
        self.take(2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
    }
}

fn server_name(hello: &[u8]) -> Option<String> {
    let mut r = Reader(hello);
    r.take(2 + 32)?; // version, random
    let n = r.u8()?;
    r.take(n)?; // session id
    let n = r.u16()?;
    r.take(n)?; // cipher suites
    let n = r.u8()?;
    r.take(n)?; // compression methods
    let n = r.u16()?;
    let mut ext = Reader(r.take(n)?);
    while let (Some(kind), Some(len)) = (ext.u16(), ext.u16()) {
        let data = ext.take(len)?;
        if kind != 0 {
            continue;
        }
        let mut list = Reader(data);
        let n = list.u16()?;
        let mut names = Reader(list.take(n)?);
        while let (Some(name_type), Some(len)) = (names.u8(), names.u16()) {
            let name = names.take(len)?;
            if name_type == 0 {
                return std::str::from_utf8(name).ok().map(str::to_ascii_lowercase);
            }
        }
        return None;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(sni: Option<&str>) -> Vec<u8> {
        let mut exts = vec![];
        if let Some(name) = sni {
            let name = name.as_bytes();
            let mut list = vec![0u8];
            list.extend_from_slice(&(name.len() as u16).to_be_bytes());
            list.extend_from_slice(name);
            let mut data = (list.len() as u16).to_be_bytes().to_vec();
            data.extend_from_slice(&list);
            exts.extend_from_slice(&[0, 0]);
            exts.extend_from_slice(&(data.len() as u16).to_be_bytes());
            exts.extend_from_slice(&data);
        }
        let mut body = vec![3, 3];
        body.extend_from_slice(&[7; 32]);
        body.extend_from_slice(&[0, 0, 2, 0x13, 0x01, 1, 0]);
        body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
        body.extend_from_slice(&exts);
        let mut hs = vec![1, 0, (body.len() >> 8) as u8, body.len() as u8];
        hs.extend_from_slice(&body);
        let mut rec = vec![0x16, 3, 1, (hs.len() >> 8) as u8, hs.len() as u8];
        rec.extend_from_slice(&hs);
        rec
    }

    #[test]
    fn finds_the_server_name() {
        assert_eq!(
            parse_client_hello(&hello(Some("Db.Example.com"))),
            Peeked::Hello(Some("db.example.com".into()))
        );
        assert_eq!(parse_client_hello(&hello(None)), Peeked::Hello(None));
    }

    #[test]
    fn asks_for_more_and_rejects_other_protocols() {
        let h = hello(Some("a.b"));
        assert_eq!(parse_client_hello(&h[..3]), Peeked::NeedMore(5));
        assert_eq!(parse_client_hello(&h[..10]), Peeked::NeedMore(h.len()));
        assert_eq!(parse_client_hello(b"GET / HTTP/1.1\r\n"), Peeked::NotTls);
    }

    #[test]
    fn reassembles_a_hello_split_over_records() {
        let h = hello(Some("split.example.com"));
        let hs = &h[5..];
        let (a, b) = hs.split_at(20);
        let mut two = vec![0x16, 3, 1, 0, a.len() as u8];
        two.extend_from_slice(a);
        two.extend_from_slice(&[0x16, 3, 1, (b.len() >> 8) as u8, b.len() as u8]);
        two.extend_from_slice(b);
        assert_eq!(
            parse_client_hello(&two),
            Peeked::Hello(Some("split.example.com".into()))
        );
    }

    #[test]
    fn never_panics_on_truncations_and_garbage() {
        let h = hello(Some("x.example.com"));
        for i in 0..h.len() {
            let _ = parse_client_hello(&h[..i]);
            let mut bad = h.clone();
            bad[i] ^= 0xff;
            let _ = parse_client_hello(&bad);
        }
    }
}

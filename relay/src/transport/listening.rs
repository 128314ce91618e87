//! The start-up summary of where the relay listens: one list per client transport, so the
//! "Relay listening" log line names UDP, TCP and TLS addresses under their own fields.

use std::net::SocketAddr;

use crate::transport::stream::Transport;

/// The client-facing addresses, by transport, each once and in configuration order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ListeningOn {
    pub udp: Vec<SocketAddr>,
    pub tcp: Vec<SocketAddr>,
    pub tls: Vec<SocketAddr>,
}

impl ListeningOn {
    /// `udp`: the addresses of the UDP sockets (several sockets share one address with
    /// SO_REUSEPORT); `streams`: the TCP and TLS listeners.
    #[must_use]
    pub fn new(
        udp: impl IntoIterator<Item = SocketAddr>,
        streams: impl IntoIterator<Item = (SocketAddr, Transport)>,
    ) -> Self {
        let mut on = Self::default();
        for addr in udp {
            push_once(&mut on.udp, addr);
        }
        for (addr, kind) in streams {
            match kind {
                Transport::Tcp => push_once(&mut on.tcp, addr),
                Transport::Tls => push_once(&mut on.tls, addr),
            }
        }
        on
    }
}

fn push_once(list: &mut Vec<SocketAddr>, addr: SocketAddr) {
    if !list.contains(&addr) {
        list.push(addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn each_transport_gets_its_own_list_and_reuseport_sockets_count_once() {
        let on = ListeningOn::new(
            [a("0.0.0.0:3478"), a("0.0.0.0:3478"), a("[::]:3478")],
            [
                (a("0.0.0.0:3478"), Transport::Tcp),
                (a("0.0.0.0:5349"), Transport::Tls),
                (a("0.0.0.0:443"), Transport::Tls),
            ],
        );
        assert_eq!(on.udp, [a("0.0.0.0:3478"), a("[::]:3478")]);
        assert_eq!(on.tcp, [a("0.0.0.0:3478")]);
        assert_eq!(on.tls, [a("0.0.0.0:5349"), a("0.0.0.0:443")]);
    }

    #[test]
    fn no_stream_listeners_leave_tcp_and_tls_empty() {
        let on = ListeningOn::new([a("127.0.0.1:3478")], []);
        assert_eq!(on.udp, [a("127.0.0.1:3478")]);
        assert!(on.tcp.is_empty() && on.tls.is_empty());
    }
}

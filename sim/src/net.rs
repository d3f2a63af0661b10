//! Meridian's real transports on turmoil's simulated network: node RPC (tonic) dials through
//! turmoil, and each node serves its real axum app (HTTP, etcd gRPC, node RPC) on a turmoil
//! listener.

use futures::FutureExt;
use meridian_transport::{Connector, PeerStream};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

/// The port every simulated node listens on.
pub const PORT: u16 = 7000;

/// Opens node-RPC connections over turmoil.
pub fn connector() -> Connector {
    Arc::new(|authority: String| {
        async move {
            let s = turmoil::net::TcpStream::connect(authority).await?;
            Ok(Box::new(s) as Box<dyn PeerStream>)
        }
        .boxed()
    })
}

/// A turmoil listener that axum can serve.
pub struct Listener(pub turmoil::net::TcpListener);

impl axum::serve::Listener for Listener {
    type Io = turmoil::net::TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok(pair) => return pair,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(5)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

//! Compiles the .proto files with protox (pure Rust), so no `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/meridian/node.proto",
        "proto/meridian/streams.proto",
        "proto/meridian/queue.proto",
        "proto/etcd/etcdserver/etcdserverpb/rpc.proto",
        "proto/etcd/mvcc/mvccpb/kv.proto",
        "proto/etcd/auth/authpb/auth.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // prost's codec, but a message that does not decode is InvalidArgument, not Internal.
        .codec_path("crate::codec::MeridianCodec")
        .compile_fds(fds)?;
    Ok(())
}

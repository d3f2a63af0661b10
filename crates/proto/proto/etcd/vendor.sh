#!/bin/sh
# Re-vendors etcd's v3 API .proto files from Debian's golang-etcd-server-dev package
# (`apt-get install golang-etcd-server-dev`), stripping the gogoproto and grpc-gateway options.
# Run from this directory. See README.md.
set -eu
src=${ETCD_SRC:-/usr/share/gocode/src/go.etcd.io/etcd}
note='// Vendored from etcd (https://github.com/etcd-io/etcd, Apache-2.0, see LICENSE beside this
// folder) by vendor.sh: the imports of gogoproto/gogo.proto and google/api/annotations.proto and
// every (gogoproto.*) and (google.api.http) option were removed. Nothing else changed: packages,
// messages, field numbers, services and methods are etcd'"'"'s, byte for byte on the wire.
'
for f in etcdserver/etcdserverpb/rpc.proto mvcc/mvccpb/kv.proto auth/authpb/auth.proto; do
    mkdir -p "$(dirname "$f")"
    {
        printf '%s' "$note"
        perl -0777 -pe '
            s{^import "gogoproto/gogo\.proto";\n}{}mg;
            s{^// for grpc-gateway\n}{}mg;
            s{^import "google/api/annotations\.proto";\n}{}mg;
            s{^option \(gogoproto\.[a-z_]+\) = [a-z]+;\n}{}mg;
            s{^[ \t]*option \(google\.api\.http\) = \{.*?\};\n}{}smg;
            s{\n{3,}}{\n\n}g;
        ' "$src/$f"
    } >"$f"
done
cp /usr/share/common-licenses/Apache-2.0 LICENSE

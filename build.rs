// SPDX-License-Identifier: MPL-2.0
use std::path::PathBuf;

fn main() {
    gst_plugin_version_helper::info();
    // KServe v2 gRPC: the client for the plugin, the server for the tests'
    // server. No rerun-if-changed: the version helper relies on cargo's
    // default of rerunning when any file of the package changes.
    let fds = protox::compile(["proto/kserve/grpc_predict_v2.proto"], ["proto/kserve"])
        .unwrap_or_else(|e| panic!("proto/kserve/grpc_predict_v2.proto: {e}"));
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    for (dir, client) in [("grpc-client", true), ("grpc-server", false)] {
        let dir = out.join(dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        tonic_prost_build::configure()
            .build_client(client)
            .build_server(!client)
            .build_transport(false)
            .bytes(".inference.ModelInferRequest.raw_input_contents")
            .bytes(".inference.ModelInferResponse.raw_output_contents")
            .out_dir(&dir)
            .compile_fds(fds.clone())
            .unwrap_or_else(|e| panic!("generating the gRPC code: {e}"));
    }
}

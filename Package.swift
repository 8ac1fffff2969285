// swift-tools-version: 6.1
import PackageDescription

let swiftSettings: [SwiftSetting] = []

let package = Package(
  name: "botrt",
  platforms: [.macOS(.v15)],
  products: [
    .executable(name: "botrt-controller", targets: ["botrt-controller"]),
    .executable(name: "botrt-engine", targets: ["botrt-engine"]),
    .executable(name: "botrt-objects", targets: ["botrt-objects"]),
  ],
  dependencies: [
    .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
  ],
  targets: [
    // System libraries, each with typed static-inline shims for variadic or macro APIs.
    .systemLibrary(name: "CCurl", pkgConfig: "libcurl", providers: [.apt(["libcurl4-openssl-dev"])]),
    .systemLibrary(name: "CCrypto", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),
    .systemLibrary(name: "CYAML", pkgConfig: "yaml-0.1", providers: [.apt(["libyaml-dev"])]),
    .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
    // <sys/xattr.h> of the C library (no library to link).
    .systemLibrary(name: "CXattr"),

    // HTTP over libcurl, shared by the Kubernetes client and the engine's storage and KMS clients.
    .target(
      name: "CurlHTTP", dependencies: ["CCurl", .product(name: "Logging", package: "swift-log")],
      swiftSettings: swiftSettings),

    // Kubernetes: core (no I/O) <- client <- runtime.
    .target(name: "KubeCore", dependencies: ["CYAML"], swiftSettings: swiftSettings),
    .target(
      name: "KubeClient",
      dependencies: ["KubeCore", "CurlHTTP", .product(name: "Logging", package: "swift-log")],
      swiftSettings: swiftSettings),
    .target(
      name: "KubeRuntime",
      dependencies: ["KubeCore", "KubeClient", .product(name: "Logging", package: "swift-log")],
      swiftSettings: swiftSettings),

    // The controller-engine contract: the engine's typed arguments, environment names, exit codes, result type and
    // duration grammar. No Kubernetes code, no I/O, no engine code.
    .target(name: "EngineContract", swiftSettings: swiftSettings),

    // The operator: API types, reconcilers, and the controller application.
    .target(name: "DRAPI", dependencies: ["KubeCore", "EngineContract"], swiftSettings: swiftSettings),
    .target(
      name: "Reconcilers",
      dependencies: [
        "DRAPI", "EngineContract", "KubeCore", "KubeClient", "KubeRuntime",
        .product(name: "Logging", package: "swift-log"),
      ],
      swiftSettings: swiftSettings),
    .target(
      name: "ControllerApp",
      dependencies: [
        "Reconcilers", "DRAPI", "KubeCore", "KubeClient", "KubeRuntime",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
        .product(name: "Logging", package: "swift-log"),
      ],
      swiftSettings: swiftSettings),
    .executableTarget(name: "botrt-controller", dependencies: ["ControllerApp"], swiftSettings: swiftSettings),

    // The engine: no Kubernetes code.
    .target(
      name: "BackupEngine",
      dependencies: [
        "CCrypto", "CXattr", "CZstd", "CurlHTTP", "EngineContract", .product(name: "Logging", package: "swift-log"),
      ],
      swiftSettings: swiftSettings),
    .target(
      name: "EngineCLI",
      dependencies: [
        "BackupEngine", "CurlHTTP", "EngineContract",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
        .product(name: "Logging", package: "swift-log"),
      ],
      swiftSettings: swiftSettings),
    .executableTarget(name: "botrt-engine", dependencies: ["EngineCLI"], swiftSettings: swiftSettings),

    // The job image's second executable: exports a namespace's Kubernetes objects to a directory and re-creates them
    // (the engine backs the directory up and restores it). Kubernetes code, so its own targets, never the engine's.
    .target(
      name: "ObjectsCLI",
      dependencies: [
        "KubeCore", "KubeClient", "EngineContract",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
        .product(name: "Logging", package: "swift-log"),
      ],
      swiftSettings: swiftSettings),
    .executableTarget(name: "botrt-objects", dependencies: ["ObjectsCLI"], swiftSettings: swiftSettings),
    // Fuzz targets for the parsers of untrusted bytes, the engine's and the controller's: replays a corpus when
    // built normally; hack/fuzz.sh builds it with libFuzzer. Its own executable, so it may link both sides (the
    // engine still never imports a Kubernetes module).
    .executableTarget(
      name: "botrt-fuzz",
      dependencies: [
        "BackupEngine", "CurlHTTP", "EngineContract", "DRAPI", "KubeCore", "KubeClient", "KubeRuntime", "Reconcilers",
        .product(name: "Logging", package: "swift-log"),
      ],
      swiftSettings: swiftSettings),

    // Tests: one target per module; *IntegrationTests need the services hack/test.sh starts.
    .testTarget(name: "CurlHTTPTests", dependencies: ["CurlHTTP"]),
    .testTarget(name: "KubeCoreTests", dependencies: ["KubeCore"]),
    .testTarget(name: "KubeClientTests", dependencies: ["KubeClient", "KubeCore", "CurlHTTP"]),
    .testTarget(name: "KubeRuntimeTests", dependencies: ["KubeRuntime", "KubeClient", "KubeCore"]),
    .testTarget(name: "KubeIntegrationTests", dependencies: ["KubeRuntime", "KubeClient", "KubeCore"]),
    // Needs the node cluster (a kubelet): hack/test.sh skips it in the main run and runs it after node-up.
    .testTarget(name: "NodeTests", dependencies: ["KubeClient", "KubeCore"]),
    .testTarget(name: "DRAPITests", dependencies: ["DRAPI", "KubeCore"]),
    .testTarget(
      name: "ReconcilersTests",
      dependencies: [
        "Reconcilers", "DRAPI", "KubeCore", "KubeClient", "KubeRuntime", "EngineContract",
        .product(name: "Logging", package: "swift-log"),
      ],
      // The children's JSON as the builders make it (ChildrenGoldenTests reads them by path).
      exclude: ["Fixtures"]),
    .testTarget(
      name: "ControllerIntegrationTests",
      dependencies: ["ControllerApp", "Reconcilers", "DRAPI", "KubeRuntime", "KubeClient", "KubeCore"]),
    .testTarget(name: "BackupEngineTests", dependencies: ["BackupEngine", "EngineContract"]),
    // The retention simulation takes its forget flags from the controller's prune CronJob builder.
    .testTarget(
      name: "EngineIntegrationTests",
      dependencies: [
        "BackupEngine", "CurlHTTP", "EngineCLI", "EngineContract", "Reconcilers", "DRAPI", "KubeCore", "KubeRuntime",
      ]),
    // The objects CLI: the apply transform (pure) and the built botrt-objects against the control plane.
    .testTarget(
      name: "ObjectsCLITests",
      dependencies: ["ObjectsCLI", "EngineContract", "KubeClient", "KubeCore", "botrt-objects"]),
    // Every committed fuzz input (Fuzz/corpus/TARGET) replayed through the built botrt-fuzz.
    .testTarget(name: "FuzzCorpusTests", dependencies: ["botrt-fuzz"]),
    // The controller's Jobs fed to the engine's real parser; the shared duration grammar.
    .testTarget(
      name: "ContractTests",
      dependencies: ["EngineContract", "Reconcilers", "DRAPI", "KubeCore", "EngineCLI", "ObjectsCLI"]),
  ]
)

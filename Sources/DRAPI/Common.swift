import Foundation
import KubeCore

/// The API group and version of BotRT's custom resources.
public enum DRGroup {
  /// The API group.
  public static let group = "dr.botrt.io"
  /// The served and stored version.
  public static let version = "v1alpha1"
  /// "dr.botrt.io/v1alpha1".
  public static let apiVersion = "\(group)/\(version)"
  /// The annotation that triggers an on-demand run when set to a new value.
  public static let runNowAnnotation = "dr.botrt.io/run-now"
}

/// A reference to a Secret (and optionally one key in it) in the resource's namespace.
public struct SecretReference: Codable, Sendable, Hashable {
  /// Name of the Secret.
  public var name: String
  /// Key inside the Secret; nil where the schema has no key or the default applies.
  public var key: String?

  public init(name: String, key: String? = nil) {
    self.name = name
    self.key = key
  }
}

/// A reference to a whole Secret (its keys are fixed by the field, e.g. AWS_ACCESS_KEY_ID) in the same namespace.
public struct SecretNameReference: Codable, Sendable, Hashable {
  /// Name of the Secret.
  public var name: String

  public init(name: String) { self.name = name }
}

/// A reference by name to an object in the same namespace.
public struct LocalObjectReference: Codable, Sendable, Hashable {
  /// Name of the object.
  public var name: String

  public init(name: String) { self.name = name }
}

/// A Secret key selector for environment variables.
public struct SecretKeySelector: Codable, Sendable, Hashable {
  /// Name of the Secret.
  public var name: String
  /// Key inside the Secret.
  public var key: String

  public init(name: String, key: String) {
    self.name = name
    self.key = key
  }
}

/// Where an environment variable's value comes from.
public struct EnvVarSource: Codable, Sendable, Hashable {
  /// A key of a Secret.
  public var secretKeyRef: SecretKeySelector

  public init(secretKeyRef: SecretKeySelector) { self.secretKeyRef = secretKeyRef }
}

/// An environment variable: a literal value or a Secret key.
public struct EnvVar: Codable, Sendable, Hashable {
  /// Variable name.
  public var name: String
  /// Literal value.
  public var value: String?
  /// Secret source.
  public var valueFrom: EnvVarSource?

  public init(name: String, value: String? = nil, valueFrom: EnvVarSource? = nil) {
    self.name = name
    self.value = value
    self.valueFrom = valueFrom
  }
}

/// A container to run: image, command, args and environment; `fileName` names a streamed dump.
public struct ContainerSpec: Codable, Sendable, Hashable {
  /// Container image.
  public var image: String
  /// Entrypoint override.
  public var command: [String]?
  /// Arguments.
  public var args: [String]?
  /// Environment variables.
  public var env: [EnvVar]?
  /// Name of the stream inside the snapshot (dump sources and restore commands only).
  public var fileName: String?

  public init(
    image: String, command: [String]? = nil, args: [String]? = nil, env: [EnvVar]? = nil, fileName: String? = nil
  ) {
    self.image = image
    self.command = command
    self.args = args
    self.env = env
    self.fileName = fileName
  }
}

/// A Kubernetes quantity (e.g. "500m", "2", "512Mi"); accepts JSON numbers and strings, stores the text.
public struct Quantity: Codable, Sendable, Hashable, ExpressibleByStringLiteral, CustomStringConvertible {
  /// The quantity as text.
  public var text: String

  public init(_ text: String) { self.text = text }
  public init(stringLiteral value: String) { text = value }

  public init(from decoder: Decoder) throws {
    let c = try decoder.singleValueContainer()
    do {
      text = try c.decode(String.self)
    } catch DecodingError.typeMismatch {
      // Not a string: the schema allows an integer (or, leniently, a decimal) too.
      do {
        text = String(try c.decode(Int64.self))
      } catch DecodingError.typeMismatch, DecodingError.dataCorrupted {
        text = String(try c.decode(Double.self))
      }
    }
  }

  public func encode(to encoder: Encoder) throws {
    var c = encoder.singleValueContainer()
    try c.encode(text)
  }

  public var description: String { text }
}

/// Compute resources for the engine container.
public struct ResourceRequirements: Codable, Sendable, Hashable {
  /// Minimum resources by name.
  public var requests: [String: Quantity]?
  /// Maximum resources by name.
  public var limits: [String: Quantity]?

  public init(requests: [String: Quantity]? = nil, limits: [String: Quantity]? = nil) {
    self.requests = requests
    self.limits = limits
  }
}

/// Progress of a running backup or restore, as the controller last read it from the engine's progress lines in the
/// run's Pod log (at most every 10 s). Cleared when the run ends: its outcome is then in the kind's last-run fields.
public struct RunProgress: Codable, Sendable, Hashable {
  /// The Job that runs it.
  public var job: String
  /// `backup` or `restore` (the engine's phase), once the engine reported progress.
  public var phase: String?
  /// When the Job started.
  public var startTime: Date?
  /// Bytes read (backup) or written (restore) so far.
  public var bytesDone: Int64
  /// Files read so far (a backup; a restore counts bytes only).
  public var filesDone: Int64?
  /// The bytes the run will process: the engine's own total (a restore knows it), or for a backup the bytes the
  /// previous successful backup read (`totalBytesSource` says which). Absent when unknown or already exceeded.
  public var totalBytes: Int64?
  /// `Engine` (the engine counted it) or `PreviousBackup` (an estimate: what the last successful backup read).
  public var totalBytesSource: String?
  /// bytesDone of totalBytes, 0 to 100 (99 until the run ends), when totalBytes is known.
  public var percent: Int32?
  /// When the run should end at the rate so far, when totalBytes is known.
  public var estimatedCompletion: Date?
  /// When the controller read these values.
  public var updateTime: Date

  public init(job: String, startTime: Date?, updateTime: Date, bytesDone: Int64 = 0) {
    self.job = job
    self.startTime = startTime
    self.updateTime = updateTime
    self.bytesDone = bytesDone
  }
}

import Foundation

/// A spec object whose schema says "exactly one of" its fields (a repository's backend, the key service, a backup's
/// source, ...), seen as an enum.
///
/// The Codable struct keeps its optional fields: the CRD schema is generated from them and pinned (crds/generate.py,
/// CRDFileTests), so the wire format does not change. Code reads the one that is set as a `Choice` (`kind`,
/// `kind(at:)`, or every set one with `setChoices`) and branches with an exhaustive `switch`, no `default:`, so
/// that a new case is a compile error at every site that must handle it.
///
/// Each kind states only what is its own, everything else comes from these protocols' extensions: the enum of its
/// choices and their field names (`SpecChoice` with its `Name: ChoiceField`), the choice's field (`name`, a switch
/// over the cases), and the object's reading of a field (`choice(_:)`, a switch over the names). The chain from a
/// new field: a case of `Choice` breaks `Choice.name` (add the field's `Name`), which breaks `choice(_:)` (read the
/// new field).
public protocol ExactlyOneOf {
  /// The enum of the choices, each with its value.
  associatedtype Choice: SpecChoice
  /// The choices' field names (raw value: the JSON name), in schema order.
  typealias ChoiceName = Choice.Name

  /// The choice `name` when its field is set.
  func choice(_ name: ChoiceName) -> Choice?
}

/// One choice of an `ExactlyOneOf` object: an enum with a case (and its value) per field.
public protocol SpecChoice: Sendable, Hashable {
  /// The fields the choices are set in.
  associatedtype Name: ChoiceField
  /// The field this choice is set in.
  var name: Name { get }
}

/// The field names of an `ExactlyOneOf` object's choices: an enum of strings (the JSON names) in schema order.
public protocol ChoiceField: RawRepresentable, CaseIterable, Sendable, Hashable where RawValue == String {}

extension SpecChoice {
  /// The JSON name of the field this choice is set in.
  public var fieldName: String { name.rawValue }
}

extension ExactlyOneOf {
  /// Every choice's field name, in schema order.
  public static var allChoiceNames: [String] { ChoiceName.allCases.map(\.rawValue) }

  /// The choices that are set, in schema order: one in a valid spec; all of them where every set one counts (the
  /// Secrets a spec names, whatever else is wrong with it).
  public var setChoices: [Choice] { ChoiceName.allCases.compactMap { choice($0) } }

  /// The field names of the choices that are set, in schema order.
  public var setChoiceNames: [String] { ChoiceName.allCases.filter { choice($0) != nil }.map(\.rawValue) }

  /// The choice that is set; nil unless exactly one is.
  public var kind: Choice? {
    let set = setChoices
    return set.count == 1 ? set[0] : nil
  }

  /// The choice that is set, or, when none or several are, validation's error (message and reason) at `field`.
  public func kind(at field: String) throws(SpecError) -> Choice {
    let set = setChoices
    if set.count == 1 { return set[0] }
    throw exactlyOneErrors(at: field)[0]
  }

  /// The choice that is set, nil when none is, or validation's error at `field` when several are (where leaving
  /// all of them out has a meaning of its own, e.g. a drill's restore into an emptyDir).
  public func atMostOne(at field: String) throws(SpecError) -> Choice? {
    let set = setChoices
    if set.count > 1 { throw exactlyOneErrors(at: field)[0] }
    return set.first
  }

  /// Validation's error at `field` when none or several choices are set; empty when exactly one is.
  public func exactlyOneErrors(at field: String) -> [SpecError] {
    SpecValidation.exactlyOne(setChoiceNames, of: Self.allChoiceNames, at: field)
  }
}

// MARK: - Repository

/// The backend of a repository (`RepositorySpec`: exactly one of s3, gcs, azure, local).
public enum RepositoryKind: SpecChoice {
  case s3(S3Repository)
  case gcs(GCSRepository)
  case azure(AzureRepository)
  case local(LocalRepository)

  /// The fields of RepositorySpec.
  public enum Name: String, ChoiceField {
    case s3, gcs, azure, local
  }

  public var name: Name {
    switch self {
    case .s3: .s3
    case .gcs: .gcs
    case .azure: .azure
    case .local: .local
    }
  }

  /// The Secrets the backend names (credentials).
  public var secretNames: [String] {
    switch self {
    case .s3(let s): [s.credentialsSecretRef.name]
    case .gcs(let g): [g.credentialsSecretRef?.name].compactMap { $0 }
    case .azure(let a): [a.credentialsSecretRef.name]
    case .local: []
    }
  }
}

extension RepositorySpec: ExactlyOneOf {
  public func choice(_ name: RepositoryKind.Name) -> RepositoryKind? {
    switch name {
    case .s3: s3.map(RepositoryKind.s3)
    case .gcs: gcs.map(RepositoryKind.gcs)
    case .azure: azure.map(RepositoryKind.azure)
    case .local: local.map(RepositoryKind.local)
    }
  }
}

// MARK: - Key service

/// The key service (`KMSSpec`: exactly one of vaultTransit, awsKms, localKeySecretRef, azureKeyVault, gcpKms).
public enum KMSKind: SpecChoice {
  case vaultTransit(VaultTransitKMS)
  case awsKms(AWSKMS)
  /// A 32-byte key in a Secret (`localKeySecretRef`).
  case localKey(SecretReference)
  case azureKeyVault(AzureKeyVaultKMS)
  case gcpKms(GCPKMS)

  /// The fields of KMSSpec.
  public enum Name: String, ChoiceField {
    case vaultTransit, awsKms, localKeySecretRef, azureKeyVault, gcpKms
  }

  public var name: Name {
    switch self {
    case .vaultTransit: .vaultTransit
    case .awsKms: .awsKms
    case .localKey: .localKeySecretRef
    case .azureKeyVault: .azureKeyVault
    case .gcpKms: .gcpKms
    }
  }

  /// The Secrets the key service names (token, credentials, CA, the key itself).
  public var secretNames: [String] {
    switch self {
    case .vaultTransit(let v): [v.authSecretRef.name, v.caSecretRef?.name].compactMap { $0 }
    case .awsKms(let a): [a.credentialsSecretRef?.name].compactMap { $0 }
    case .localKey(let ref): [ref.name]
    case .azureKeyVault(let a): [a.credentialsSecretRef.name]
    case .gcpKms(let g): [g.credentialsSecretRef?.name].compactMap { $0 }
    }
  }

  /// The key service's URLs that must be https:// unless `allowPlaintextHTTP`: (field under kms, value).
  public var plaintextCheckedURLs: [(field: String, url: String)] {
    let urls: [(String, String?)] =
      switch self {
      case .vaultTransit(let v): [("vaultTransit.address", v.address)]
      case .awsKms(let a): [("awsKms.endpoint", a.endpoint)]
      case .localKey: []
      case .azureKeyVault(let a):
        [("azureKeyVault.vaultURL", a.vaultURL), ("azureKeyVault.authorityHost", a.authorityHost)]
      case .gcpKms(let g): [("gcpKms.endpoint", g.endpoint)]
      }
    return urls.compactMap { f, u in u.map { (f, $0) } }
  }

  /// Where a key rotation's new key-encryption key comes from.
  public enum RotationKeySource: Sendable, Hashable {
    /// An entry of encryption.rotationKeysSecretRef, recorded as status.currentKey (a local key).
    case rotationKeysSecret
    /// A new key the rotation creates in the service, its id recorded as status.currentKey (AWS KMS).
    case newServiceKey
    /// A new version of the same key in the service; status.currentKey stays unset (Vault Transit, Azure Key Vault,
    /// Google Cloud KMS).
    case newKeyVersion
  }

  /// How this key service is rotated.
  public var rotationKeySource: RotationKeySource {
    switch self {
    case .localKey: .rotationKeysSecret
    case .awsKms: .newServiceKey
    case .vaultTransit, .azureKeyVault, .gcpKms: .newKeyVersion
    }
  }
}

extension KMSSpec: ExactlyOneOf {
  public func choice(_ name: KMSKind.Name) -> KMSKind? {
    switch name {
    case .vaultTransit: vaultTransit.map(KMSKind.vaultTransit)
    case .awsKms: awsKms.map(KMSKind.awsKms)
    case .localKeySecretRef: localKeySecretRef.map(KMSKind.localKey)
    case .azureKeyVault: azureKeyVault.map(KMSKind.azureKeyVault)
    case .gcpKms: gcpKms.map(KMSKind.gcpKms)
    }
  }
}

// MARK: - Backup source

/// What a policy backs up (`BackupSource`: exactly one of pvc, command, claims, objects).
public enum BackupSourceKind: SpecChoice {
  case pvc(PVCSource)
  case command(ContainerSpec)
  case claims(ClaimsSource)
  case objects(ObjectsSource)

  /// The fields of BackupSource.
  public enum Name: String, ChoiceField {
    case pvc, command, claims, objects
  }

  public var name: Name {
    switch self {
    case .pvc: .pvc
    case .command: .command
    case .claims: .claims
    case .objects: .objects
    }
  }

  /// The Secrets the source names (the dump command's environment).
  public var secretNames: [String] {
    switch self {
    case .pvc, .claims, .objects: []
    case .command(let c): c.secretNames
    }
  }
}

extension BackupSource: ExactlyOneOf {
  public func choice(_ name: BackupSourceKind.Name) -> BackupSourceKind? {
    switch name {
    case .pvc: pvc.map(BackupSourceKind.pvc)
    case .command: command.map(BackupSourceKind.command)
    case .claims: claims.map(BackupSourceKind.claims)
    case .objects: objects.map(BackupSourceKind.objects)
    }
  }
}

// MARK: - Claims selection

/// How a multi-claim source selects its claims (`ClaimsSource`: exactly one of selector, claimNames).
public enum ClaimsSelectionKind: SpecChoice {
  case selector(ClaimSelector)
  case claimNames([String])

  /// The selecting fields of ClaimsSource.
  public enum Name: String, ChoiceField {
    case selector, claimNames
  }

  public var name: Name {
    switch self {
    case .selector: .selector
    case .claimNames: .claimNames
    }
  }
}

extension ClaimsSource: ExactlyOneOf {
  public func choice(_ name: ClaimsSelectionKind.Name) -> ClaimsSelectionKind? {
    switch name {
    case .selector: selector.map(ClaimsSelectionKind.selector)
    case .claimNames: claimNames.map(ClaimsSelectionKind.claimNames)
    }
  }
}

// MARK: - Restore destination

/// Where restored data goes (`RestoreDestination`: exactly one of pvc, command, objects).
public enum RestoreDestinationKind: SpecChoice {
  case pvc(RestorePVC)
  case command(ContainerSpec)
  case objects(RestoreObjects)

  /// The fields of RestoreDestination.
  public enum Name: String, ChoiceField {
    case pvc, command, objects
  }

  public var name: Name {
    switch self {
    case .pvc: .pvc
    case .command: .command
    case .objects: .objects
    }
  }
}

extension RestoreDestination: ExactlyOneOf {
  public func choice(_ name: RestoreDestinationKind.Name) -> RestoreDestinationKind? {
    switch name {
    case .pvc: pvc.map(RestoreDestinationKind.pvc)
    case .command: command.map(RestoreDestinationKind.command)
    case .objects: objects.map(RestoreDestinationKind.objects)
    }
  }
}

// MARK: - Drill target

/// What a drill rehearses (`DrillTarget`: exactly one of backupPolicyRef, recoveryPlanRef).
public enum DrillTargetKind: SpecChoice {
  case backupPolicy(LocalObjectReference)
  case recoveryPlan(LocalObjectReference)

  /// The fields of DrillTarget.
  public enum Name: String, ChoiceField {
    case backupPolicyRef, recoveryPlanRef
  }

  public var name: Name {
    switch self {
    case .backupPolicy: .backupPolicyRef
    case .recoveryPlan: .recoveryPlanRef
    }
  }
}

extension DrillTarget: ExactlyOneOf {
  public func choice(_ name: DrillTargetKind.Name) -> DrillTargetKind? {
    switch name {
    case .backupPolicyRef: backupPolicyRef.map(DrillTargetKind.backupPolicy)
    case .recoveryPlanRef: recoveryPlanRef.map(DrillTargetKind.recoveryPlan)
    }
  }
}

// MARK: - Referenced Secrets

extension ContainerSpec {
  /// The Secrets the container's environment names.
  public var secretNames: [String] { (env ?? []).compactMap { $0.valueFrom?.secretKeyRef.name } }
}

extension EncryptionSpec {
  /// The Secrets the encryption names: every set key service's, and the rotation keys.
  public var referencedSecretNames: [String] {
    kms.setChoices.flatMap(\.secretNames) + [rotationKeysSecretRef?.name].compactMap { $0 }
  }
}

extension BackupPolicySpec {
  /// Every Secret of the policy's namespace the spec names, in first-mention order without repeats: the repository's
  /// and the key service's (each set choice, valid or not), the rotation keys, the private CAs, the dump command's
  /// environment, and each replica's repository and encryption. A change of any of them wakes the policy.
  public var referencedSecretNames: [String] {
    var names = repository.setChoices.flatMap(\.secretNames) + encryption.referencedSecretNames
    names += [caSecretRef?.name].compactMap { $0 }
    names += source.setChoices.flatMap(\.secretNames)
    for r in replicas ?? [] {
      names += r.repository.setChoices.flatMap(\.secretNames) + (r.encryption?.referencedSecretNames ?? [])
    }
    var seen = Set<String>()
    return names.filter { seen.insert($0).inserted }
  }
}

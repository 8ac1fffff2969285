import Foundation

// The remote backends are written in parallel by another engineer; until their types land these
// functions report the scheme as not yet supported. They will call exactly:
//   S3Store(url:options:), GCSStore(url:options:), AzureBlobStore(url:options:),
//   VaultTransitKeyService(url:options:), AWSKMSKeyService(url:options:).

/// Builds an S3, GCS or Azure store.
func makeRemoteObjectStore(_ c: URLComponents, options: StoreOptions) throws -> any ObjectStore {
  switch c.scheme?.lowercased() {
  case "s3": return try S3Store(url: c, options: options)
  case "gs": return try GCSStore(url: c, options: options)
  case "azblob": return try AzureBlobStore(url: c, options: options)
  default: throw EngineError.usage("repository scheme '\(c.scheme ?? "")' is not yet supported by this build")
  }
}

/// Builds a Vault Transit, AWS KMS, Azure Key Vault or Google Cloud KMS key service.
func makeRemoteKeyService(_ c: URLComponents, options: KMSOptions) throws -> any KeyService {
  switch c.scheme?.lowercased() {
  case "vault-transit": return try VaultTransitKeyService(url: c, options: options)
  case "awskms": return try AWSKMSKeyService(url: c, options: options)
  case "azurekv": return try AzureKeyVaultKeyService(url: c, options: options)
  case "gcpkms": return try GCPKMSKeyService(url: c, options: options)
  default: throw KMSError.invalidConfiguration("KMS scheme '\(c.scheme ?? "")' is not yet supported by this build")
  }
}

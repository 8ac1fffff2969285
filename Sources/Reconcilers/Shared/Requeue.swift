/// The longest requeue delay: a later moment is computed again by the reconcile that runs then.
public let maxRequeueSeconds: Double = 30 * 86_400

/// The requeue delay for a moment `seconds` from now: at least 1 s, at most `maxRequeueSeconds`, so no date in a
/// spec or status (however far, or not finite) traps the conversion to whole milliseconds.
public func requeueDelay(seconds: Double) -> Duration {
  let s = seconds.isNaN ? maxRequeueSeconds : min(max(seconds, 1), maxRequeueSeconds)
  return .milliseconds(Int64(s * 1000))
}

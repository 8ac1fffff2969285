import Foundation

/// JSON coding with the Kubernetes conventions: RFC 3339 dates (fractional seconds accepted, microseconds written).
public enum KubeJSON {
  /// A new encoder writing dates as RFC 3339 with microseconds, which both `Time` and `MicroTime` accept.
  public static func encoder() -> JSONEncoder {
    let e = JSONEncoder()
    e.dateEncodingStrategy = .custom { date, encoder in
      var c = encoder.singleValueContainer()
      try c.encode(formatDate(date))
    }
    e.outputFormatting = [.withoutEscapingSlashes]
    return e
  }

  /// The userInfo key that makes ObjectMeta skip `managedFields` while decoding.
  public static let stripManagedFieldsKey = CodingUserInfoKey(rawValue: "botrt.stripManagedFields")!

  /// A new decoder reading RFC 3339 dates with or without fractional seconds; `stripManagedFields` leaves
  /// `metadata.managedFields` out (several times faster for small objects such as ConfigMaps).
  public static func decoder(stripManagedFields: Bool = false) -> JSONDecoder {
    let d = JSONDecoder()
    if stripManagedFields { d.userInfo[stripManagedFieldsKey] = true }
    d.dateDecodingStrategy = .custom { decoder in
      let c = try decoder.singleValueContainer()
      let s = try c.decode(String.self)
      guard let date = parseDate(s) else {
        throw DecodingError.dataCorruptedError(in: c, debugDescription: "not an RFC 3339 date: \(s)")
      }
      return date
    }
    return d
  }

  /// Formats a date as RFC 3339 in UTC with microseconds, e.g. `2024-01-02T03:04:05.000000Z`.
  public static func formatDate(_ date: Date) -> String {
    let t = date.timeIntervalSince1970
    var seconds = t.rounded(.down)
    var micros = Int(((t - seconds) * 1_000_000).rounded())
    if micros >= 1_000_000 {
      micros -= 1_000_000
      seconds += 1
    }
    var tmv = tm()
    var tt = time_t(seconds)
    gmtime_r(&tt, &tmv)
    return String(
      format: "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", Int(tmv.tm_year) + 1900, Int(tmv.tm_mon) + 1, Int(tmv.tm_mday),
      Int(tmv.tm_hour), Int(tmv.tm_min), Int(tmv.tm_sec), micros)
  }

  /// Parses RFC 3339 (`Z` or a numeric offset, optional fractional seconds).
  public static func parseDate(_ s: String) -> Date? {
    let u = Array(s.utf8)
    func num(_ from: Int, _ len: Int) -> Int? {
      guard from + len <= u.count else { return nil }
      var v = 0
      for i in from..<(from + len) {
        let c = u[i]
        guard c >= 48 && c <= 57 else { return nil }
        v = v * 10 + Int(c - 48)
      }
      return v
    }
    guard u.count >= 20, let year = num(0, 4), u[4] == 45, let month = num(5, 2), u[7] == 45, let day = num(8, 2),
      u[10] == 84 || u[10] == 116 || u[10] == 32, let hour = num(11, 2), u[13] == 58, let minute = num(14, 2),
      u[16] == 58, let second = num(17, 2)
    else { return nil }
    var i = 19
    var fraction = 0.0
    if i < u.count && u[i] == 46 {
      i += 1
      var scale = 0.1
      let start = i
      while i < u.count, u[i] >= 48 && u[i] <= 57 {
        fraction += Double(u[i] - 48) * scale
        scale /= 10
        i += 1
      }
      if i == start { return nil }
    }
    guard i < u.count else { return nil }
    var offset = 0
    if u[i] == 90 || u[i] == 122 {
      i += 1
    } else if u[i] == 43 || u[i] == 45, let oh = num(i + 1, 2), u.count > i + 3, u[i + 3] == 58, let om = num(i + 4, 2)
    {
      offset = (oh * 3600 + om * 60) * (u[i] == 45 ? -1 : 1)
      i += 6
    } else {
      return nil
    }
    guard i == u.count, (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second < 61 else {
      return nil
    }
    // Days from civil (Howard Hinnant's algorithm), so no calendar or locale is involved.
    let y = month <= 2 ? year - 1 : year
    let era = (y >= 0 ? y : y - 399) / 400
    let yoe = y - era * 400
    let mp = (month + 9) % 12
    let doy = (153 * mp + 2) / 5 + day - 1
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
    let days = era * 146097 + doe - 719468
    let secs = Double(days * 86400 + hour * 3600 + minute * 60 + second - offset)
    return Date(timeIntervalSince1970: secs + fraction)
  }
}

import Foundation
import Testing

@testable import DRAPI

/// spec.source.claims (issue 15 §1): exactly one of selector and claimNames, bounded, with errors naming the field;
/// the selector matches as a Kubernetes label selector does.
@Suite struct ClaimsSourceTests {
  func errors(_ c: ClaimsSource) -> [SpecError] {
    var spec = policySpec(tier: .standard)
    spec.source = BackupSource(claims: c)
    return SpecValidation.validate(spec)
  }

  @Test func selectorOrClaimNamesExactlyOne() {
    #expect(errors(ClaimsSource(selector: ClaimSelector(matchLabels: ["a": "b"]))).isEmpty)
    #expect(errors(ClaimsSource(claimNames: ["a", "b"])).isEmpty)
    // {} selects every claim of the namespace: allowed.
    #expect(errors(ClaimsSource(selector: ClaimSelector())).isEmpty)
    let both = errors(ClaimsSource(selector: ClaimSelector(), claimNames: ["a"]))
    #expect(both.map(\.field) == ["spec.source.claims"])
    #expect(both.first?.message.contains("selector, claimNames") == true, "\(both)")
    let neither = errors(ClaimsSource(subPath: "x"))
    #expect(neither.map(\.field) == ["spec.source.claims"])
    #expect(neither.first?.message.contains("none is set") == true)
    // With pvc too: the source names all three kinds.
    var spec = policySpec(tier: .standard)
    spec.source.claims = ClaimsSource(claimNames: ["a"])
    let two = SpecValidation.validate(spec).first { $0.field == "spec.source" }
    #expect(two?.message.contains("pvc, command, claims") == true, "\(String(describing: two))")
  }

  @Test func namesAndExpressionsAreChecked() {
    let many = errors(ClaimsSource(claimNames: (0...ClaimsSource.maxClaims).map { "c\($0)" }))
    #expect(many.map(\.field) == ["spec.source.claims.claimNames"])
    #expect(many.first?.message.contains("at most 64") == true)
    #expect(errors(ClaimsSource(claimNames: [])).map(\.field) == ["spec.source.claims.claimNames"])
    #expect(errors(ClaimsSource(claimNames: ["a", "a"])).map(\.field) == ["spec.source.claims.claimNames[1]"])
    let badOp = errors(
      ClaimsSource(selector: ClaimSelector(matchExpressions: [ClaimSelectorRequirement(key: "k", operator: "Like")])))
    #expect(badOp.map(\.field) == ["spec.source.claims.selector.matchExpressions[0].operator"])
    let noValues = errors(
      ClaimsSource(selector: ClaimSelector(matchExpressions: [ClaimSelectorRequirement(key: "k", operator: "In")])))
    #expect(noValues.map(\.field) == ["spec.source.claims.selector.matchExpressions[0].values"])
    let badExclude = errors(ClaimsSource(claimNames: ["a"], exclude: [""]))
    #expect(badExclude.map(\.field) == ["spec.source.claims.exclude[0]"])
  }

  @Test func selectorMatchesLikeALabelSelector() {
    let l = ["app": "shop", "tier": "db"]
    #expect(ClaimSelector().matches([:]))
    #expect(ClaimSelector(matchLabels: ["app": "shop"]).matches(l))
    #expect(!ClaimSelector(matchLabels: ["app": "blog"]).matches(l))
    func expr(_ op: String, _ v: [String]? = nil, key: String = "tier") -> Bool {
      ClaimSelector(matchExpressions: [ClaimSelectorRequirement(key: key, operator: op, values: v)]).matches(l)
    }
    #expect(expr("In", ["db", "web"]) && !expr("In", ["web"]))
    #expect(expr("NotIn", ["web"]) && !expr("NotIn", ["db"]) && expr("NotIn", ["x"], key: "none"))
    #expect(expr("Exists") && !expr("Exists", key: "none"))
    #expect(expr("DoesNotExist", key: "none") && !expr("DoesNotExist"))
    #expect(!expr("Like"))
  }
}

// botrt-crd-apiserver: the upstream k8s.io/apiextensions-apiserver (Debian's
// golang-k8s-apiextensions-apiserver-dev, 0.36) run standalone, without a core kube-apiserver, so BotRT's CRDs and
// the controller's custom-resource path can be tested against a current Kubernetes API surface (hack/crd-apiserver.sh
// builds and runs it; docs/testing.md). Adapted from the verified recipe in the team's crd-apiserver-1.36 notes.
//   - without --kubeconfig: no core API shared informers and no admission chain (namespaces are not checked);
//     with --kubeconfig (e.g. a 1.20 kube-apiserver): upstream behaviour (NamespaceLifecycle, webhooks)
//   - priority&fairness off (it needs a core API with flowcontrol/v1)
//   - delegated authn/authz kubeconfigs optional: client certs (--client-ca-file) work;
//     group system:masters is always authorized; others are denied unless --insecure-allow-all
//   - standalone: Services lister backed by an empty fake clientset (conversion webhooks: use url:, not service:)
//   - OpenAPI v2+v3 published for CRDs (the upstream standalone binary publishes neither for CRDs), so kubectl's
//     client-side validation and `kubectl explain` work
//   - root discovery /apis re-enabled (upstream disables it because kube-aggregator normally serves it);
//     CRD groups appear in aggregated (v2) discovery and, via addLegacyRootDiscovery, in legacy v1 discovery.
//   - with --kubeconfig, /openapi/v2 leaves out apiextensions.k8s.io's paths, so the server can sit behind that
//     kube-apiserver's aggregator as an APIService (withoutBuiltinOpenAPIPaths).
package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"sort"
	"strings"
	"sync"

	"github.com/spf13/cobra"

	"k8s.io/apiextensions-apiserver/pkg/apihelpers"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apiextensions-apiserver/pkg/apiserver"
	"k8s.io/apiextensions-apiserver/pkg/cmd/server/options"
	generatedopenapi "k8s.io/apiextensions-apiserver/pkg/generated/openapi"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/apiserver/pkg/admission"
	openapinamer "k8s.io/apiserver/pkg/endpoints/openapi"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/apiserver/pkg/util/openapi"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/cache"
	"k8s.io/component-base/cli"
)

var allowAll bool

func main() {
	ctx := genericapiserver.SetupSignalContext()
	o := options.NewCustomResourceDefinitionsServerOptions(os.Stdout, os.Stderr)
	o.RecommendedOptions.Authentication.RemoteKubeConfigFileOptional = true
	o.RecommendedOptions.Authentication.SkipInClusterLookup = true
	o.RecommendedOptions.Authorization.RemoteKubeConfigFileOptional = true
	o.RecommendedOptions.Features.EnablePriorityAndFairness = false
	// apiextensions' Config() needs a Services lister (conversion-webhook service resolution):
	// give it informers over an empty in-memory fake clientset instead of a real core API server.
	o.RecommendedOptions.ExtraAdmissionInitializers = func(c *genericapiserver.RecommendedConfig) ([]admission.PluginInitializer, error) {
		if c.SharedInformerFactory == nil {
			c.SharedInformerFactory = informers.NewSharedInformerFactory(fake.NewSimpleClientset(), 0)
		}
		return nil, nil
	}

	cmd := &cobra.Command{
		Use:   "botrt-crd-apiserver",
		Short: "Standalone apiextensions-apiserver (1.36) for BotRT CRD and controller tests",
		PersistentPreRunE: func(*cobra.Command, []string) error {
			return o.ServerRunOptions.ComponentGlobalsRegistry.Set()
		},
		RunE: func(c *cobra.Command, args []string) error {
			delegated := o.RecommendedOptions.CoreAPI.CoreAPIKubeconfigPath != ""
			if !delegated {
				// standalone: no core API server, so no shared informers over it and no admission chain
				o.RecommendedOptions.CoreAPI = nil
				o.RecommendedOptions.Admission = nil
			}
			if allowAll {
				o.RecommendedOptions.Authorization.WithAlwaysAllowGroups("system:unauthenticated", "system:authenticated")
			}
			if err := o.Complete(); err != nil {
				return err
			}
			if err := o.Validate(); err != nil {
				return err
			}
			config, err := o.Config()
			if err != nil {
				return err
			}
			// Upstream only sets OpenAPI v3 config; the CRD OpenAPI (v2 and v3) controllers only run when the
			// v2 static spec exists, so enable v2 too (kubectl client-side validation / explain need it).
			config.GenericConfig.OpenAPIConfig = genericapiserver.DefaultOpenAPIConfig(
				openapi.GetOpenAPIDefinitionsWithoutDisabledFeatures(generatedopenapi.GetOpenAPIDefinitions),
				openapinamer.NewDefinitionNamer(apiserver.Scheme, scheme.Scheme))
			if delegated {
				inner := config.GenericConfig.BuildHandlerChainFunc
				config.GenericConfig.BuildHandlerChainFunc = func(h http.Handler, c *genericapiserver.Config) http.Handler {
					return withoutBuiltinOpenAPIPaths(inner(h, c))
				}
			}
			completed := config.Complete()
			completed.GenericConfig.EnableDiscovery = true
			server, err := completed.New(genericapiserver.NewEmptyDelegate())
			if err != nil {
				return err
			}
			addLegacyRootDiscovery(server)
			return server.GenericAPIServer.PrepareRun().RunWithContext(c.Context())
		},
	}
	cmd.SetContext(ctx)
	o.AddFlags(cmd.Flags())
	cmd.Flags().BoolVar(&allowAll, "insecure-allow-all", false,
		"TEST ONLY: authorize every request, including anonymous ones and ones with unverifiable bearer tokens (treated as anonymous).")
	os.Exit(cli.Run(cmd))
}

// addLegacyRootDiscovery lists established CRD groups in the legacy (v1 APIGroupList) /apis document,
// which upstream leaves to kube-aggregator's CRD registration controller. Clients that do not use
// aggregated discovery (old client-go, hand-written clients) need it.
func addLegacyRootDiscovery(s *apiserver.CustomResourceDefinitions) {
	gm := s.GenericAPIServer.DiscoveryGroupManager
	inf := s.Informers.Apiextensions().V1().CustomResourceDefinitions()
	var mu sync.Mutex
	added := map[string]bool{}
	resync := func() {
		mu.Lock()
		defer mu.Unlock()
		crds, err := inf.Lister().List(labels.Everything())
		if err != nil {
			return
		}
		groups := map[string]map[string]bool{}
		for _, crd := range crds {
			if !apihelpers.IsCRDConditionTrue(crd, apiextensionsv1.Established) {
				continue
			}
			for _, v := range crd.Spec.Versions {
				if v.Served {
					if groups[crd.Spec.Group] == nil {
						groups[crd.Spec.Group] = map[string]bool{}
					}
					groups[crd.Spec.Group][v.Name] = true
				}
			}
		}
		for g := range added {
			if groups[g] == nil {
				gm.RemoveGroup(g)
				delete(added, g)
			}
		}
		for g, vs := range groups {
			names := make([]string, 0, len(vs))
			for v := range vs {
				names = append(names, v)
			}
			sort.Slice(names, func(i, j int) bool { return version.CompareKubeAwareVersionStrings(names[i], names[j]) > 0 })
			ag := metav1.APIGroup{Name: g}
			for _, v := range names {
				ag.Versions = append(ag.Versions, metav1.GroupVersionForDiscovery{GroupVersion: g + "/" + v, Version: v})
			}
			ag.PreferredVersion = ag.Versions[0]
			gm.AddGroup(ag)
			added[g] = true
		}
	}
	inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(interface{}) { resync() },
		UpdateFunc: func(interface{}, interface{}) { resync() },
		DeleteFunc: func(interface{}) { resync() },
	})
}

// withoutBuiltinOpenAPIPaths serves /openapi/v2 as JSON without the paths of apiextensions.k8s.io. Behind a
// kube-apiserver's aggregator (an APIService for the CRDs' group), the aggregator merges every APIService's /apis/
// paths into its own spec and refuses one it serves itself: a 1.20 kube-apiserver logs "loading OpenAPI spec for
// \"v1alpha1.dr.botrt.io\" failed with: unable to merge: duplicated path
// /apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}" and kubectl explain finds no custom kind.
// The aggregator proxies only the APIService's group to this server, so the dropped paths are not reachable
// through it anyway.
func withoutBuiltinOpenAPIPaths(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.URL.Path != "/openapi/v2" {
			h.ServeHTTP(w, r)
			return
		}
		r = r.Clone(r.Context())
		r.Header.Set("Accept", "application/json")
		r.Header.Del("If-None-Match")
		r.Header.Del("Accept-Encoding") // uncompressed, to edit it
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		body := rec.Body.Bytes()
		if rec.Code == http.StatusOK {
			var spec map[string]json.RawMessage
			var paths map[string]json.RawMessage
			if json.Unmarshal(body, &spec) == nil && json.Unmarshal(spec["paths"], &paths) == nil {
				for p := range paths {
					if strings.HasPrefix(p, "/apis/apiextensions.k8s.io/") {
						delete(paths, p)
					}
				}
				if b, err := json.Marshal(paths); err == nil {
					spec["paths"] = b
					if b, err := json.Marshal(spec); err == nil {
						body = b
					}
				}
			}
		}
		for k, v := range rec.Header() {
			if k != "Etag" && k != "Content-Length" {
				w.Header()[k] = v
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(rec.Code)
		_, _ = w.Write(body)
	})
}
